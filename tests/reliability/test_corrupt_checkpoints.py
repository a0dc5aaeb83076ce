"""Single-byte flips of a real training checkpoint: every load gives the saved content back or a one-line
CheckpointError, and resuming (training or evaluation) falls back to the older checkpoint."""

from __future__ import annotations

import collections
import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from agent.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, load_latest_valid
from agent.train import build_config, main
from eval.loading import load_agent

FLIPS = 500
# The smallest real run: a memoryless core, so a load takes ~15 ms and 500 of them a few seconds.
TINY_FF = [
    "env.num_envs=2", "algo.unroll_length=4", "algo.n_step=4", "algo.vmpo.update_epochs=1", "net.core=ff",
    "net.d_model=8", "net.num_layers=1", "net.torso_out=8", "train.progress=false", "train.run_name=r",
    "train.total_steps=16", "train.checkpoint_interval=1", "train.keep_checkpoints=2",
]  # fmt: skip
# What torch.load raised, by name, where the pickle was damaged rather than the zip or the tensor bytes.
PICKLE_ERRORS = {"KeyError", "TypeError", "IndexError", "AttributeError", "UnicodeDecodeError", "ValueError"}


@dataclass
class Flip:
    index: int
    data: bytes
    error: str | None  # the CheckpointError's message, None when the load succeeded


def same(a: object, b: object) -> bool:
    """Equal structure, types and tensor contents (dtype, shape, values)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished run with two checkpoints (updates 1 and 2)."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["--config", "quickstart", *TINY_FF, f"train.run_dir={root}"]) == 0
    assert [p.name for p in list_checkpoints(root / "r")] == ["ckpt_000000001.pt", "ckpt_000000002.pt"]
    return root / "r"


@pytest.fixture(scope="module")
def flips(run_dir, tmp_path_factory) -> tuple[dict, list[Flip]]:
    """The newest checkpoint's content, and ``FLIPS`` loads of it, each with one random byte changed."""
    original = load_checkpoint(list_checkpoints(run_dir)[-1])
    data = list_checkpoints(run_dir)[-1].read_bytes()
    target = tmp_path_factory.mktemp("flips") / "ckpt_000000002.pt"
    rng = random.Random(0)
    found = []
    for index in sorted(rng.sample(range(len(data)), FLIPS)):
        damaged = bytearray(data)
        damaged[index] ^= rng.randrange(1, 256)
        target.write_bytes(damaged)
        try:
            loaded = load_checkpoint(target)
        except CheckpointError as err:
            found.append(Flip(index, bytes(damaged), str(err)))
        else:
            assert same(loaded, original), (
                f"byte {index} flipped: loaded without error but with other content"
            )
            found.append(Flip(index, bytes(damaged), None))
    return original, found


def test_every_flip_loads_identically_or_raises_checkpoint_error(flips, reliability):
    _, found = flips
    for flip in found:
        ok = flip.error is None or ("\n" not in flip.error and "ckpt_000000002.pt" in flip.error)
        reliability.record(f"single byte flipped in a real checkpoint ({FLIPS} random bytes)", ok, 0)
        assert ok, flip.error
        assert flip.error is None or "\x1b" not in flip.error
    kinds = collections.Counter(
        m.group(1) for f in found if f.error and (m := re.search(r"corrupt or truncated \((\w+):", f.error))
    )
    # the flips reach the pickle's odd failures (the ones that used to escape as tracebacks) ...
    assert set(kinds) & PICKLE_ERRORS, kinds
    # ... and every kind of damage: zip structure, refused pickle opcodes, tensor bytes (digest)
    assert kinds["RuntimeError"] and any("refused" in (f.error or "") for f in found)
    assert any("SHA-256" in (f.error or "") for f in found)


@pytest.fixture
def damaged_run(run_dir, flips, tmp_path) -> Path:
    """A copy of the run whose newest checkpoint has a flipped pickle byte that used to raise KeyError etc."""
    _, found = flips
    hard = next(f for f in found if f.error and re.search(rf"\(({'|'.join(PICKLE_ERRORS)}):", f.error))
    copy = tmp_path / "r"
    (copy / "checkpoints").mkdir(parents=True)
    for path in list_checkpoints(run_dir):
        (copy / "checkpoints" / path.name).write_bytes(path.read_bytes())
    (copy / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    list_checkpoints(copy)[-1].write_bytes(hard.data)
    return copy


def test_resume_falls_back_past_a_pickle_flip(damaged_run, reliability, capsys):
    path, payload = load_latest_valid(damaged_run)
    assert path == list_checkpoints(damaged_run)[0] and payload["counters"]["num_updates"] == 1
    cfg, _, checkpoint = build_config("quickstart", [f"train.resume={damaged_run}", "train.total_steps=24"])
    assert checkpoint["counters"]["num_updates"] == 1 and cfg.train.total_steps == 24
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert captured.out == "" and len(warnings) == 2 and warnings[0] == warnings[1]
    assert warnings[0].startswith("warning: checkpoint '") and "ckpt_000000002.pt' is corrupt" in warnings[0]
    assert warnings[0].endswith("using the older checkpoint '" + str(list_checkpoints(damaged_run)[0]) + "'")
    assert main(["--config", "quickstart", f"train.resume={damaged_run}"]) == 0  # to its total_steps=16
    resumed = load_checkpoint(list_checkpoints(damaged_run)[-1])
    assert resumed["counters"]["num_updates"] == 2 and resumed["counters"]["global_step"] == 16
    reliability.record("flipped pickle byte in the newest checkpoint on resume (falls back)", True, 0)


def test_evaluation_falls_back_past_a_pickle_flip(damaged_run, reliability, capsys):
    agent = load_agent(damaged_run)
    assert agent.path == list_checkpoints(damaged_run)[0] and agent.global_step == 8
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "ckpt_000000002.pt' is corrupt" in err and "using the older checkpoint" in err
    with pytest.raises(CheckpointError, match=r"ckpt_000000002\.pt' is corrupt"):
        load_agent(list_checkpoints(damaged_run)[-1])  # a file named on purpose is not swapped for another
    reliability.record("flipped pickle byte in the newest checkpoint on evaluation (falls back)", True, 0)


def test_no_loadable_checkpoint_is_one_line_without_a_fallback_warning(damaged_run, capsys):
    list_checkpoints(damaged_run)[0].write_bytes(b"garbage")
    with pytest.raises(CheckpointError) as error:
        load_latest_valid(damaged_run)
    message = str(error.value)
    assert "\n" not in message and "holds no loadable checkpoint" in message
    assert "ckpt_000000001.pt" in message and "ckpt_000000002.pt" in message
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""  # no "trying an older checkpoint" when none is left
