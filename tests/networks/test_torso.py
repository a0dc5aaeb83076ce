"""Torsos: IMPALA ResNet shape/conv count/uint8 input, grid and MLP torsos, make_torso, params CLI."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from configs.schema import NetConfig
from networks.params import count_parameters, main
from networks.torso import GridTorso, ImpalaTorso, MLPTorso, NatureTorso, make_torso


def test_impala_torso() -> None:
    torso = ImpalaTorso((4, 84, 84), 256)
    assert sum(isinstance(m, nn.Conv2d) for m in torso.modules()) == 15
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    out = torso(obs)
    assert out.shape == (2, 256) and out.dtype == torch.float32 and (out >= 0).all()
    torch.testing.assert_close(torso(obs), torso(obs.float()))  # scaled by 1/255 inside
    assert ImpalaTorso((3, 72, 96), 64)(torch.zeros(1, 3, 72, 96, dtype=torch.uint8)).shape == (1, 64)


def test_nature_torso_is_the_dqn_encoder() -> None:
    torso = make_torso(NetConfig(torso="nature", torso_out=512), (4, 84, 84))
    assert isinstance(torso, NatureTorso)
    convs = [m for m in torso.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (8, 8), (4, 4)),
        (64, (4, 4), (2, 2)),
        (64, (3, 3), (1, 1)),
    ]
    assert torso.fc.in_features == 64 * 7 * 7  # 84 -> 20 -> 9 -> 7, as in Mnih et al. (2015)
    # 1.69M parameters, as the DQN network without its output layer (3136 x 512 dense)
    assert count_parameters(torso) == 1_684_128
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    out = torso(obs)
    assert out.shape == (3, 512) and (out >= 0).all()
    torch.testing.assert_close(out, torso(obs.float()))
    with pytest.raises(ValueError, match="at least 36x36"):
        NatureTorso((3, 7, 7), 8)


def test_grid_torso_treats_values_as_categories() -> None:
    torso = GridTorso((3, 7, 7), 32)
    obs = torch.randint(0, 11, (5, 3, 7, 7), dtype=torch.uint8)
    assert torso(obs).shape == (5, 32)
    # channel 0 value 4 and channel 1 value 4 use different embeddings
    assert not torch.equal(torso.embed(torch.tensor(4)), torso.embed(torch.tensor(256 + 4)))


@pytest.mark.parametrize(
    ("obs_shape", "kind"),
    [((4, 84, 84), ImpalaTorso), ((3, 72, 96), ImpalaTorso), ((3, 7, 7), GridTorso), ((10,), MLPTorso)],
)
def test_make_torso_auto(obs_shape: tuple[int, ...], kind: type) -> None:
    assert isinstance(make_torso(NetConfig(torso_out=8), obs_shape), kind)


def test_make_torso_rejects_images_torso_for_vectors() -> None:
    with pytest.raises(ValueError, match=r"net\.torso"):
        make_torso(NetConfig(torso="impala"), (10,))


def test_mlp_torso_accepts_int_one_hot() -> None:
    out = MLPTorso((4,), 8)(torch.nn.functional.one_hot(torch.tensor([0, 3]), 4))
    assert out.shape == (2, 8)


def test_parameter_count_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert count_parameters(nn.Linear(3, 2)) == 8
    main([])
    table = capsys.readouterr().out
    assert table.count("\n") == 5 and "| atari_vmpo | gtrxl | 256 | 8 | 4x32 | 512 |" in table
    assert "| dmlab_vmpo | gtrxl | 256 | 12 | 8x64 |" in table and "| quickstart |" in table
