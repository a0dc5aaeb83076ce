"""Checkpoints: atomic writes, last-K retention, loading without arbitrary code execution.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings, lists and dicts, so
it loads with ``torch.load(weights_only=True)`` (no pickled code is ever run). It carries a format
version and a SHA-256 digest of its content, checked on load, so a truncated or bit-flipped file is
reported by name instead of resuming from garbage. Writes go to a temp file in the same folder, are
fsynced, then renamed over the final name, so a crash or SIGKILL during a write leaves the previous
checkpoints intact.

Layout: ``<run_dir>/checkpoints/ckpt_<update:09d>.pt``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 2
_NAME = re.compile(r"^ckpt_(\d{9})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or of the wrong format. The message names the file."""


def checkpoint_path(run_dir: str | Path, update: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"ckpt_{update:09d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def save_checkpoint(run_dir: str | Path, update: int, payload: dict[str, Any], keep: int) -> Path:
    """Write ``payload`` atomically as the checkpoint of ``update``; keep the newest ``keep``."""
    path = checkpoint_path(run_dir, update)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, **payload}
    payload["sha256"] = content_digest(payload)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".pt", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def content_digest(payload: dict[str, Any]) -> str:
    """SHA-256 over every key, number, string and tensor byte of ``payload`` (except its own digest)."""
    digest = hashlib.sha256()

    def visit(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous().reshape(-1)
            digest.update(f"T{obj.dtype}{tuple(obj.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(obj, dict):
            keys = sorted(obj, key=repr)
            digest.update(f"D{len(keys)}".encode())
            for key in keys:
                digest.update(repr(key).encode())
                visit(obj[key])
        elif isinstance(obj, (list, tuple)):
            digest.update(f"L{len(obj)}".encode())
            for item in obj:
                visit(item)
        else:
            digest.update(repr(obj).encode())

    visit({k: v for k, v in payload.items() if k != "sha256"})
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file safely (weights_only); clear one-line errors on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint '{path}' refused: not a plain-data checkpoint ({first})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint '{path}' is corrupt or truncated ({first})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        version = payload.get("format_version") if isinstance(payload, dict) else None
        raise CheckpointError(
            f"checkpoint '{path}' has format version {version!r}; this package reads version {FORMAT_VERSION}"
        )
    if payload.get("sha256") != content_digest(payload):
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt: its content does not match its SHA-256 digest"
        )
    return payload


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest checkpoint of a run directory (or the path itself if it is a checkpoint file)."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return run_dir
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory '{run_dir}' does not exist")
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"run directory '{run_dir}' holds no checkpoint under '{CHECKPOINT_DIR}/'")
    return found[-1]
