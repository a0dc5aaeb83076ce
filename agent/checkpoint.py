"""Checkpoints: atomic writes, last-K retention, loading without arbitrary code execution.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings, lists and dicts, so
it loads with ``torch.load(weights_only=True)`` (no pickled code is ever run). It carries a format
version and a SHA-256 digest of its content, checked on load, so a truncated or bit-flipped file is
reported by name instead of resuming from garbage. Writes go to a temp file in the same folder, are
fsynced, then renamed over the final name, so a crash or SIGKILL during a write leaves the previous
checkpoints intact.

Layout: ``<run_dir>/checkpoints/ckpt_<update:09d>.pt``. A ``.tmp_*`` file left by a process killed
mid-write is removed when the run resumes (:func:`prune_temp_files`). Any failure to load a file is a
:class:`CheckpointError`, so :func:`load_latest_valid` can skip a corrupt newest checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_DIR = "checkpoints"
FORMAT_VERSION = 2
_NAME = re.compile(r"^ckpt_(\d{9})\.pt$")
TEMP_PREFIX = ".tmp_"  # a checkpoint being written; renamed to its final name once complete


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
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".pt", dir=path.parent)
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
    """Load a checkpoint file safely (weights_only); any failure is a one-line :class:`CheckpointError`.

    A damaged file can make ``torch.load`` raise almost anything (``KeyError``, ``TypeError``,
    ``UnicodeDecodeError``, ... from a flipped byte in its pickle), so every exception is caught here and
    reported by name; a load that succeeds is then checked against the file's own SHA-256 digest.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file '{path}' does not exist")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says enough
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint '{path}' refused: it is corrupt or holds objects other than plain data "
            f"({_refusal_reason(err)}); nothing in it was run"
        ) from None
    except Exception as err:  # a corrupt pickle raises any type; all mean the same here
        raise CheckpointError(f"checkpoint '{path}' is corrupt or truncated ({_first_line(err)})") from None
    try:
        _check_payload(path, payload)
    except CheckpointError:
        raise
    except Exception as err:  # a damaged payload can break the digest (odd dtypes)
        raise CheckpointError(f"checkpoint '{path}' is corrupt ({_first_line(err)})") from None
    return payload


def _check_payload(path: Path, payload: Any) -> None:
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        version = payload.get("format_version") if isinstance(payload, dict) else None
        raise CheckpointError(
            f"checkpoint '{path}' has format version {version!r}; this package reads version {FORMAT_VERSION}"
        )
    if payload.get("sha256") != content_digest(payload):
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt: its content does not match its SHA-256 digest"
        )


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ENFORCE = re.compile(r"^\[enforce fail at [^\]]*\][\s.]*")  # c10's prefix on torch's C++ errors
# torch's weights_only refusal wraps the reason in advice (re-run with weights_only=False) we must not give
_BOILERPLATE = ("weights only load failed", "please file an issue", "check the documentation", "(1)", "(2)")


def _first_line(err: BaseException) -> str:
    """``TypeName: first sentence`` of an exception, without ANSI codes or torch's C++ prefix."""
    lines = [line.strip() for line in _ANSI.sub("", str(err)).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    sentence = re.split(r"(?<=\.)\s", _ENFORCE.sub("", lines[0]), maxsplit=1)[0]
    return f"{type(err).__name__}: {sentence}"


def _refusal_reason(err: BaseException) -> str:
    """The one line of torch's weights_only refusal that says what was refused."""
    for line in _ANSI.sub("", str(err)).splitlines():
        line = line.replace("WeightsUnpickler error:", "").strip()
        if line and not line.lower().startswith(_BOILERPLATE) and "weights_only" not in line:
            return line.rstrip(".")
    return "not a plain-data pickle"


def load_latest_valid(
    run_dir: str | Path, warn: Callable[[str], None] | None = None
) -> tuple[Path, dict[str, Any]]:
    """Newest checkpoint of ``run_dir`` that loads; corrupt newer ones are skipped.

    When one was skipped, ``warn`` (default: print to stderr) gets one line naming them and the
    checkpoint used instead; when none loads, the :class:`CheckpointError` names every problem.
    """
    problems = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            payload = load_checkpoint(path)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if problems:
            message = f"warning: {'; '.join(problems)}; using the older checkpoint '{path}'"
            (warn or _print_stderr)(message)
        return path, payload
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise CheckpointError(f"run directory '{run_dir}' holds no loadable checkpoint{detail}")


def _print_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def prune_temp_files(run_dir: str | Path) -> list[Path]:
    """Remove the ``.tmp_*`` files a process killed while writing a checkpoint left behind.

    Only call it when no other process writes checkpoints into ``run_dir`` (at the start of a run).
    """
    folder = Path(run_dir) / CHECKPOINT_DIR
    stale = sorted(folder.glob(f"{TEMP_PREFIX}*")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest checkpoint of a run directory (or the path itself if it is a checkpoint file)."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return run_dir
    if not run_dir.is_dir():
        kind = "checkpoint file" if run_dir.suffix == ".pt" else "checkpoint file or run directory"
        raise CheckpointError(f"{kind} '{run_dir}' does not exist")
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"run directory '{run_dir}' holds no checkpoint under '{CHECKPOINT_DIR}/'")
    return found[-1]
