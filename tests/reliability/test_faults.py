"""Faults injected into real runs: signals, SIGKILL during checkpoint writes, corrupt checkpoints,
non-finite updates, a full disk, bad run directories, a misbehaving env. Nothing written before a fault
may be lost; every failure is a one-line message."""

from __future__ import annotations

import errno
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import agent.checkpoint
from agent.checkpoint import list_checkpoints, load_checkpoint, load_latest_valid
from agent.learner import VMPOLearner
from agent.train import build_config, main
from agent.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "env.num_envs=4", "algo.unroll_length=8", "algo.n_step=8", "net.d_model=32", "net.num_layers=1",
    "net.num_heads=2", "net.head_dim=16", "net.mlp_dim=32", "net.memory_length=8", "net.torso_out=32",
    "train.progress=false",
]  # fmt: skip
STEPS_PER_UPDATE = 32


def logged_steps(run_dir: Path) -> list[int]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars("loss/total")] if "loss/total" in acc.Tags()["scalars"] else []


def start_run(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    args = [*TINY, f"train.run_dir={tmp_path}", "train.run_name=r", "train.total_steps=100000000", *extra]
    proc = subprocess.Popen([sys.executable, "-m", "agent.train", "--config", "quickstart", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    return proc, tmp_path / "r"


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.1)


def losses_before_fault(run_dir: Path, checkpoint: dict) -> int:
    """Logged steps covered by ``checkpoint`` that are missing from the TensorBoard log."""
    done = checkpoint["counters"]["num_updates"]
    expected = {STEPS_PER_UPDATE * (i + 1) for i in range(done)}
    return len(expected - set(logged_steps(run_dir)))


def sigkill_then_resume(
    tmp_path: Path, *extra: str, delay: float, more_updates: int
) -> tuple[Path, int, int, dict]:
    """Start a run checkpointing every update, SIGKILL it ``delay`` (+ up to 0.3) s after its first
    checkpoint, then resume it in this process for ``more_updates`` updates past the newest valid
    checkpoint. -> (run dir, updates in that checkpoint, logged steps it covers that were lost, the
    resumed ``Trainer.train()``'s result)."""
    proc, run_dir = start_run(tmp_path, "train.checkpoint_interval=1", "train.keep_checkpoints=2", *extra)
    wait_for(lambda: len(list_checkpoints(run_dir)) >= 1, proc)
    time.sleep(delay + random.uniform(0.0, 0.3))
    proc.kill()
    proc.wait()
    _, payload = load_latest_valid(run_dir)
    done = payload["counters"]["num_updates"]
    lost = losses_before_fault(run_dir, payload)
    overrides = [f"train.resume={run_dir}", f"train.total_steps={STEPS_PER_UPDATE * (done + more_updates)}"]
    cfg, resumed, ckpt = build_config("quickstart", overrides)
    return run_dir, done, lost, Trainer(cfg, resumed, ckpt).train()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGTERM, signal.SIGINT])
def test_stop_signal_checkpoints_and_exits_cleanly(tmp_path, reliability, sig):
    proc, run_dir = start_run(tmp_path, "train.checkpoint_interval=100000")
    wait_for(lambda: (run_dir / "config.yaml").exists(), proc)
    time.sleep(random.uniform(1.0, 4.0))
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    ok = code == 0
    _, payload = load_latest_valid(run_dir)
    lost = losses_before_fault(run_dir, payload)
    reliability.record(f"{signal.Signals(sig).name} mid-run", ok and lost == 0, lost)
    assert code == 0, proc.stderr.read().decode()[-2000:]
    assert (
        lost == 0
        and payload["counters"]["global_step"] == STEPS_PER_UPDATE * payload["counters"]["num_updates"]
    )


@pytest.mark.parametrize("delay", [0.0, 0.4, 0.9, 1.7])
def test_sigkill_anywhere_keeps_a_valid_checkpoint_and_resume_continues(tmp_path, reliability, delay):
    """Checkpoints every update, so kills land during checkpoint writes as well as between them."""
    run_dir, done, lost, result = sigkill_then_resume(tmp_path, delay=delay, more_updates=1)
    survived = result["num_updates"] == done + 1 and lost == 0
    reliability.record("SIGKILL (incl. during checkpoint writes)", survived, lost)
    assert survived
    assert not [
        p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("ckpt_") and p.stat().st_size == 0
    ]


def test_sigkill_before_the_first_checkpoint_then_resume_starts_it_from_scratch(
    tmp_path, reliability, capsys
):
    proc, run_dir = start_run(tmp_path, "train.checkpoint_interval=100000")
    wait_for(lambda: (run_dir / "config.yaml").exists(), proc)
    wait_for(lambda: logged_steps(run_dir), proc)  # the killed run's curve is on disk
    time.sleep(random.uniform(0.0, 1.0))
    stale = run_dir / "checkpoints" / ".tmp_k1ll3d.pt"  # as left by a SIGKILL during a checkpoint write
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"half a checkpoint")
    proc.kill()
    proc.wait()
    assert list_checkpoints(run_dir) == [] and (run_dir / "config.yaml").is_file()
    new = [
        "--config",
        "quickstart",
        *TINY,
        f"train.run_dir={tmp_path}",
        "train.run_name=r",
        "train.total_steps=64",
    ]
    assert main(new) == 2  # a new run in its place is refused, pointing at train.resume
    assert f"pass train.resume={run_dir}" in capsys.readouterr().err
    assert main(["--config", "quickstart", f"train.resume={run_dir}", "train.total_steps=64"]) == 0
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"note: '{run_dir}' holds no checkpoint (it stopped before its first); starting it from "
        + ("scratch with its config.yaml")
    )
    payload = load_checkpoint(list_checkpoints(run_dir)[-1])
    assert payload["counters"]["num_updates"] == 2 and payload["config"]["net"]["d_model"] == 32  # TINY's
    assert not stale.exists() and logged_steps(run_dir) == [32, 64]  # the killed run's steps are purged
    reliability.record("SIGKILL before the first checkpoint (resume starts it again)", True, 0)


def test_resume_of_a_run_with_no_config_yet_uses_the_command_line(tmp_path, capsys):
    run_dir = tmp_path / "r"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / ".tmp_x.pt").write_bytes(b"")
    cfg, resumed, checkpoint = build_config("quickstart", [*TINY, f"train.resume={run_dir}"])
    assert checkpoint is None and resumed == run_dir and cfg.net.d_model == 32
    assert "no checkpoint and no config.yaml; starting it from scratch" in capsys.readouterr().err
    assert list((run_dir / "checkpoints").iterdir()) == []


def test_resuming_a_finished_run_says_so(tmp_path, capsys):
    args = [*TINY, f"train.run_dir={tmp_path}", "train.run_name=r", "train.total_steps=32"]
    assert main(["--config", "quickstart", *args]) == 0
    capsys.readouterr()
    events = sorted((tmp_path / "r").glob("events.out.tfevents.*"))
    assert main(["--config", "quickstart", f"train.resume={tmp_path / 'r'}"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"run {tmp_path / 'r'} is already complete: 32 env steps of train.total_steps=32; " + (
        "pass a larger train.total_steps to continue it"
    )
    assert sorted((tmp_path / "r").glob("events.out.tfevents.*")) == events  # nothing started


def test_resume_falls_back_from_a_corrupt_newest_checkpoint(tmp_path, reliability):
    args = [*TINY, f"train.run_dir={tmp_path}", "train.run_name=r", "train.total_steps=96",
            "train.checkpoint_interval=1", "train.keep_checkpoints=3"]  # fmt: skip
    assert main(["--config", "quickstart", *args]) == 0
    run_dir = tmp_path / "r"
    newest = list_checkpoints(run_dir)[-1]
    newest.write_bytes(newest.read_bytes()[:100])
    path, payload = load_latest_valid(run_dir)
    assert path == list_checkpoints(run_dir)[-2] and payload["counters"]["num_updates"] == 2
    assert main(["--config", "quickstart", f"train.resume={run_dir}", "train.total_steps=128"]) == 0
    reliability.record("truncated newest checkpoint on resume", True, 0)


def test_non_finite_updates_are_skipped_then_the_run_stops(tmp_path, reliability, monkeypatch, capsys):
    original = VMPOLearner.forward
    calls = {"n": 0}

    def poisoned(self, batch):
        out = original(self, batch)
        calls["n"] += 1
        return out._replace(loss=out.loss * float("nan")) if calls["n"] > 2 else out

    monkeypatch.setattr(VMPOLearner, "forward", poisoned)
    args = [*TINY, f"train.run_dir={tmp_path}", "train.run_name=r", "train.total_steps=100000",
            "algo.vmpo.update_epochs=1", "train.max_consecutive_skips=3",
            "train.checkpoint_interval=1"]  # fmt: skip
    assert main(["--config", "quickstart", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "3 consecutive updates had a non-finite loss" in err
    payload = load_checkpoint(list_checkpoints(tmp_path / "r")[-1])
    params = [v for k, v in payload["learner"]["module"].items() if v.is_floating_point()]
    assert payload["counters"]["num_updates"] == 5 and all(torch.isfinite(p).all() for p in params)
    eta, alpha = payload["learner"]["module"]["eta.raw"], payload["learner"]["module"]["alpha.raw"]
    assert torch.isfinite(eta) and torch.isfinite(alpha)
    reliability.record("non-finite loss (NaN) every update", True, 0)


def test_full_disk_on_checkpoint_write_is_a_clear_error(tmp_path, reliability, monkeypatch, capsys):
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(agent.checkpoint.torch, "save", failing_save)
    args = [*TINY, f"train.run_dir={tmp_path}", "train.run_name=r", "train.total_steps=100000",
            "train.checkpoint_interval=1"]  # fmt: skip
    assert main(["--config", "quickstart", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert "No space left on device" in err and "earlier checkpoints are intact" in err and "\n" not in err
    checkpoints = list_checkpoints(tmp_path / "r")
    assert [p.name for p in checkpoints] == ["ckpt_000000001.pt"]
    assert load_checkpoint(checkpoints[0])["counters"]["num_updates"] == 1
    assert not [p for p in (tmp_path / "r" / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    reliability.record("disk full during checkpoint write", True, 0)


def test_run_directories_missing_or_unusable(tmp_path, reliability, capsys):
    deep = tmp_path / "no" / "such" / "runs"
    assert main(["--config", "quickstart", *TINY, f"train.run_dir={deep}", "train.run_name=r",
                 "train.total_steps=32"]) == 0  # fmt: skip
    assert list_checkpoints(deep / "r")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["--config", "quickstart", *TINY, f"train.run_dir={blocker}", "train.total_steps=32"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and str(blocker) in err
    assert blocker.read_text() == "not a directory"
    reliability.record("missing runs/ directory (created)", True, 0)
    reliability.record("run directory under a regular file", True, 0)


def test_env_with_wrong_observation_shape_is_a_clear_error(tmp_path, reliability, monkeypatch, capsys):
    import envs

    real_make = envs.make

    def bad_make(cfg, *slots):
        env = real_make(cfg, *slots)
        real_step = env.step

        def step(actions):
            obs, *rest = real_step(actions)
            return (np.zeros((obs.shape[0], obs.shape[1] + 1), obs.dtype), *rest)

        env.step = step
        return env

    monkeypatch.setattr(envs, "make", bad_make)
    args = [*TINY, f"train.run_dir={tmp_path}", "train.run_name=r", "train.total_steps=64"]
    with pytest.raises(ValueError, match=r"returned observations of shape \(4, 6\), but declares \(4, 5\)"):
        main(["--config", "quickstart", *args])
    reliability.record("custom env returns wrong observation shape", True, 0)


def test_no_shell_true_anywhere(reliability):
    offenders = []
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        if "shell=True" in path.read_text():
            offenders.append(str(path))
    assert offenders == []
    reliability.record("source scan: shell=True with user strings", True, 0)


def test_read_only_output_directory_is_a_clear_error(tmp_path, reliability, monkeypatch, capsys):
    """Root ignores file permissions here, so the read-only file system is simulated at mkdir/write."""
    import pathlib

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system", str(tmp_path / "ro"))

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    monkeypatch.setattr(pathlib.Path, "write_text", read_only)
    code = main(["--config", "quickstart", *TINY, f"train.run_dir={tmp_path / 'ro'}", "train.total_steps=32"])
    err = capsys.readouterr().err.strip()
    ok = code == 2 and "Read-only file system" in err and "\n" not in err
    reliability.record("read-only output directory (simulated)", ok, 0)
    assert ok, err
