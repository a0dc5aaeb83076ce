"""The LLM adapter under torchrun: 2 gloo ranks, tiny random GPT-2, replicas checked every update."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agent.checkpoint import latest_checkpoint, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def test_two_rank_sequence_vmpo_keeps_replicas_identical(tmp_path):
    args = ["--config", "llm_tiny_vmpo", f"train.run_dir={tmp_path}", "train.run_name=d",
            "train.iterations=4", "train.sft_steps=2", "train.eval_interval=2", "train.checkpoint_interval=2",
            "train.sync_check_interval=1", "train.progress=false", "train.torch_threads=1"]  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "llm.train",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "d"
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1, "a rank other than 0 wrote TensorBoard"
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    assert len(acc.Scalars("dist/replicas_in_sync")) == 4
    assert all(abs(e.value) < 1e6 for e in acc.Scalars("train/loss"))
    saved = load_checkpoint(latest_checkpoint(run_dir))
    # 16 prompts x 8 completions per rank and update
    assert saved["counters"]["num_updates"] == 4 and saved["counters"]["samples"] == 4 * 2 * 16 * 8
