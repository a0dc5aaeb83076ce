"""net.init=orthogonal (networks/init.py): Huang et al. 2022's scheme on the torso, projection and heads."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from configs import ConfigError
from configs.schema import NetConfig
from networks.agent_net import AgentNet

OBS, ACTIONS = (4, 84, 84), 6


def _net(core: str, init: str, seed: int = 0) -> AgentNet:
    torch.manual_seed(seed)
    cfg = NetConfig(
        torso="nature",
        torso_out=64,
        core=core,
        d_model=32,
        num_layers=1,
        num_heads=2,
        head_dim=16,
        mlp_dim=32,
        memory_length=4,
        lstm_hidden=32,
        init=init,
    )
    return AgentNet(cfg, OBS, ACTIONS)


def _gram(weight: torch.Tensor) -> torch.Tensor:
    """W W^T (or W^T W, the smaller one) of a conv/linear weight flattened to 2-d."""
    w = weight.reshape(weight.shape[0], -1)
    return w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w


def _assert_orthogonal(layer: nn.Module, gain: float) -> None:
    g = _gram(layer.weight.detach())
    torch.testing.assert_close(g, gain**2 * torch.eye(g.shape[0]), atol=1e-4 * max(1.0, gain**2), rtol=0)
    assert torch.equal(layer.bias, torch.zeros_like(layer.bias))


def test_orthogonal_gains_per_layer() -> None:
    net = _net("ff", "orthogonal")
    relu_layers = [m for m in net.torso.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(relu_layers) == 4  # three convs and the dense layer, each before a ReLU
    for layer in [*relu_layers, net.core.layer[0]]:
        _assert_orthogonal(layer, math.sqrt(2.0))
    _assert_orthogonal(net.input_proj, 1.0)
    _assert_orthogonal(net.policy.linear, 0.01)
    _assert_orthogonal(net.popart.linear, 1.0)


def test_torch_init_is_not_orthogonal() -> None:
    """The default keeps PyTorch's layers (the check above would fail on them)."""
    net = _net("ff", "torch")
    with pytest.raises(AssertionError):
        _assert_orthogonal(net.torso.fc, math.sqrt(2.0))


@pytest.mark.parametrize("core", ["gtrxl", "lstm"])
def test_memory_cores_keep_their_own_init(core: str) -> None:
    """Only torso, projection and heads change; the core (GTrXL gate bias included) is the same tensor
    for tensor as with init=torch from the same seed."""
    ortho, plain = _net(core, "orthogonal"), _net(core, "torch")
    for (name, a), (_, b) in zip(
        ortho.core.state_dict().items(), plain.core.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert not torch.equal(ortho.torso.fc.weight, plain.torso.fc.weight)


def test_unknown_init_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"net\.init"):
        NetConfig(init="xavier")
