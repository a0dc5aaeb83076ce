"""Checkpoint files: atomic write, retention, safe loading, clear errors."""

import os

import pytest
import torch

from agent.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def payload(x: float) -> dict:
    return {"weights": torch.full((3,), x), "counters": {"num_updates": int(x)}, "name": "run"}


def test_save_keeps_last_k_and_loads_back(tmp_path):
    for update in range(1, 6):
        save_checkpoint(tmp_path, update, payload(update), keep=3)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["ckpt_000000003.pt", "ckpt_000000004.pt", "ckpt_000000005.pt"]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    loaded = load_checkpoint(latest_checkpoint(tmp_path))
    assert torch.equal(loaded["weights"], torch.full((3,), 5.0)) and loaded["counters"]["num_updates"] == 5


def test_failed_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, payload(1), keep=3)

    def boom(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path, 2, payload(2), keep=3)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["ckpt_000000001.pt"]
    assert load_checkpoint(latest_checkpoint(tmp_path))["counters"]["num_updates"] == 1


def test_truncated_and_missing_files_give_clear_errors(tmp_path):
    path = save_checkpoint(tmp_path, 1, payload(1), keep=3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"ckpt_000000001.pt' is corrupt or truncated"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        latest_checkpoint(tmp_path / "empty")


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_malicious_pickle_is_refused(tmp_path, reliability):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 2, "payload": Exploit()}, path, pickle_protocol=2)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned.txt").exists() and not os.path.exists("pwned.txt")
    reliability.record("malicious pickle payload in a checkpoint (refused, not run)", True, 0)


def test_wrong_format_version(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format_version": 0}, path)
    with pytest.raises(CheckpointError, match="format version 0"):
        load_checkpoint(path)


def test_tampered_content_fails_the_digest(tmp_path, reliability):
    path = save_checkpoint(tmp_path, 1, payload(1), keep=3)
    raw = torch.load(path, weights_only=True)
    raw["weights"][0] = 123.0  # silent corruption that still unpickles
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="does not match its SHA-256 digest"):
        load_checkpoint(path)
    reliability.record("checkpoint tensor silently altered (digest mismatch)", True, 0)


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7, 0.9])
def test_flipped_bytes_are_detected(tmp_path, where, reliability):
    path = save_checkpoint(tmp_path, 1, {"weights": torch.arange(4096.0)}, keep=3)
    data = bytearray(path.read_bytes())
    index = int(len(data) * where)
    data[index] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"ckpt_000000001\.pt"):
        load_checkpoint(path)
    reliability.record("checkpoint byte flipped on disk (detected)", True, 0)
