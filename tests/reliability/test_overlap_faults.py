"""Faults injected into overlapped runs (train.overlap: the actor collects the next unroll on a thread
during the update): a stop signal finishes the update, joins the actor and checkpoints; a SIGKILL leaves
the newest checkpoint loadable and resumable. The unroll in flight is discarded, never saved."""

from __future__ import annotations

import random
import signal
import time

import pytest

from agent.checkpoint import load_latest_valid
from tests.reliability.test_faults import (
    STEPS_PER_UPDATE,
    losses_before_fault,
    sigkill_then_resume,
    start_run,
    wait_for,
)

OVERLAP = ("train.overlap=true", "train.torch_threads=1")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_with_overlap_checkpoints_trained_data_and_exits_cleanly(tmp_path, reliability, sig):
    proc, run_dir = start_run(tmp_path, *OVERLAP, "train.checkpoint_interval=100000")
    wait_for(lambda: (run_dir / "config.yaml").exists(), proc)
    time.sleep(random.uniform(1.0, 3.0))
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    _, payload = load_latest_valid(run_dir)
    counters = payload["counters"]
    lost = losses_before_fault(run_dir, payload)
    exact = counters["global_step"] == STEPS_PER_UPDATE * counters["num_updates"] > 0
    reliability.record(f"{signal.Signals(sig).name} mid-run with train.overlap", code == 0 and exact, lost)
    assert code == 0, proc.stderr.read().decode()[-2000:]
    assert lost == 0 and exact and payload["learner"]["num_updates"] == counters["num_updates"]


@pytest.mark.parametrize("delay", [0.0, 0.7])
def test_sigkill_with_overlap_keeps_a_loadable_checkpoint_and_resume_continues(tmp_path, reliability, delay):
    run_dir, done, lost, result = sigkill_then_resume(tmp_path, *OVERLAP, delay=delay, more_updates=2)
    _, after = load_latest_valid(run_dir)
    assert after["config"]["train"]["overlap"] is True  # the resumed run overlapped too
    survived = (
        result["num_updates"] == done + 2
        and after["counters"]["global_step"] == STEPS_PER_UPDATE * (done + 2)
        and lost == 0
    )
    reliability.record("SIGKILL with train.overlap (then resume)", survived, lost)
    assert survived
