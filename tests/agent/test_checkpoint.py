"""Checkpoint files: atomic write, retention, safe loading, clear errors."""

import os
import pickle
import struct
import warnings

import pytest
import torch

import agent.checkpoint
from agent.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_temp_files,
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
    with pytest.raises(CheckpointError, match=r"^checkpoint file '.*nope\.pt' does not exist$"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match=r"^checkpoint file '.*nope\.pt' does not exist$"):
        latest_checkpoint(tmp_path / "nope.pt")  # a file is not called a run directory
    with pytest.raises(
        CheckpointError, match=r"^checkpoint file or run directory '.*runs/x' does not exist$"
    ):
        latest_checkpoint(tmp_path / "runs" / "x")
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


@pytest.mark.parametrize(
    "protocol, reason",
    [
        (2, "(Trying to load unsupported GLOBAL posix.system whose module posix is blocked)"),
        (4, "(Unsupported operand 149)"),
    ],
)
def test_refusal_is_one_line_without_torch_advice_or_warnings(tmp_path, protocol, reason):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 2, "payload": Exploit()}, path, pickle_protocol=protocol)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(CheckpointError) as error:
        warnings.simplefilter("always")
        load_checkpoint(path)  # torch warns of pickle protocol 4 (two lines on stderr): silenced
    message = str(error.value)
    assert caught == [] and "\n" not in message and "\x1b" not in message
    assert f"{reason}" in message and message.endswith("; nothing in it was run")
    assert "weights_only" not in message  # torch's advice to re-run with weights_only=False is not passed on


def test_refusal_reason_is_found_in_torch_text_with_ansi_codes(tmp_path, monkeypatch):
    text = (
        "Weights only load failed. This file can still be loaded, to do so you have two options, \x1b[1mdo "
        "those steps only if you trust the source of the checkpoint\x1b[0m. \n\t(1) Re-running `torch.load` "
        "with `weights_only` set to `False` will likely succeed.\n\t(2) Alternatively, to load with "
        "`weights_only=True` please check the recommended steps.\n\tWeightsUnpickler error: Unsupported "
        "global: GLOBAL os.system was not an allowed global by default.\n\nCheck the documentation of "
        "torch.load to learn more."
    )

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError(text)

    path = save_checkpoint(tmp_path, 1, payload(1), keep=3)
    monkeypatch.setattr(agent.checkpoint.torch, "load", refuse)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "\n" not in message and "\x1b" not in message and "weights_only" not in message
    assert "(Unsupported global: GLOBAL os.system was not an allowed global by default)" in message


@pytest.mark.parametrize(
    "failure",
    [
        TypeError("unhashable type: 'dict'"),
        KeyError(712),
        IndexError("pop from empty list"),
        AttributeError("'str' object has no attribute 'dtype'"),
        UnicodeDecodeError("utf-8", b"\xe4", 0, 1, "invalid continuation byte"),
        struct.error("unpack requires a buffer of 4 bytes"),
        MemoryError(),
        RecursionError("maximum recursion depth exceeded"),
        RuntimeError("[enforce fail at inline_container.cc:340] . file in archive is not in a subdirectory"),
    ],
)
def test_any_failure_of_torch_load_is_a_checkpoint_error(tmp_path, monkeypatch, failure):
    path = save_checkpoint(tmp_path, 1, payload(1), keep=3)

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(agent.checkpoint.torch, "load", fail)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"checkpoint '{path}' is corrupt or truncated ({type(failure).__name__}")
    assert "\n" not in message and "enforce fail" not in message


def test_a_payload_that_breaks_the_digest_is_a_checkpoint_error(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path, 1, payload(1), keep=3)
    odd = {"format_version": 2, "sha256": "0", "w": torch.empty(2, device="meta")}  # has no bytes to hash
    monkeypatch.setattr(agent.checkpoint.torch, "load", lambda *args, **kwargs: odd)
    with pytest.raises(CheckpointError, match=r"ckpt_000000001\.pt' is corrupt \(NotImplementedError: "):
        load_checkpoint(path)


def test_prune_temp_files_removes_only_partial_writes(tmp_path):
    kept = [save_checkpoint(tmp_path, update, payload(update), keep=3) for update in (1, 2)]
    stale = [tmp_path / "checkpoints" / ".tmp_abc123.pt", tmp_path / "checkpoints" / ".tmp_zzz.pt"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    assert prune_temp_files(tmp_path) == stale
    assert sorted((tmp_path / "checkpoints").iterdir()) == kept
    assert prune_temp_files(tmp_path / "no_such_run") == []


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
