"""End to end: the trainer's iteration (rollout -> update -> refresh -> log) plus its checkpoint, time split.

Runs ``agent.trainer.Trainer.iteration`` itself (the agent built by ``agent.builder``, as training
builds it), with timers installed on ``env.step`` (env), ``net.step`` (actor inference),
``learner.update`` (learner forward + backward + optimiser + the actor's cache refresh) and the trainer's
TensorBoard write and checkpoint (logging). Reported:

- agent steps/s of the iteration over raw env steps/s of an identical env stepped with random actions
  (the two timed in alternation, ``A B A B``); absolute frames/s only in the note;
- the share of each part in the iteration (fractions of the same timed iterations: ratios).

The checkpoint (``Trainer.save``, which also flushes TensorBoard) is written every iteration here and its
share divided by ``train.checkpoint_interval`` (what training pays); the TensorBoard scalars are written
every ``train.log_interval`` updates, as in training.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from agent.trainer import Trainer
from bench.common import Row, main
from configs import load_config

PARTS = ("env", "actor", "learner", "logging", "other")  # other: rollout bookkeeping, counters


def bench_train() -> list[str]:
    """CPU, the bench's own thread count (``bench.common.setup_threads``, read now) for the learner and
    the actor thread, envpool's default, no progress bar (``train.torch_threads=0`` would split the cores
    instead)."""
    n = torch.get_num_threads()
    threads = [f"train.torch_threads={n}", f"train.actor_threads={n}"]
    return ["train.device=cpu", *threads, "train.progress=false"]


class Timed:
    """Accumulates the seconds spent in ``fn`` (a wrapper installed on an instance attribute)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def timed(obj: object, name: str) -> Timed:
    """Install a :class:`Timed` wrapper of ``obj.name`` as an instance attribute (shadows the method)."""
    wrapper = Timed(getattr(obj, name))
    setattr(obj, name, wrapper)
    return wrapper


def measure(preset: str, overrides: list[str], reps: int, frame_skip: int) -> tuple[dict[str, float], str]:
    cfg = load_config(preset, [*overrides, *bench_train()])
    split: dict[str, list[float]] = {p: [] for p in PARTS}
    iters, raws = [], []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run")
        raw_env = envs.make(dataclasses.replace(trainer.cfg.env, seed=cfg.env.seed + 1))
        timers = {
            "env": timed(trainer.env, "step"),
            "actor": timed(trainer.net, "step"),
            "learner": timed(trainer.learner, "update"),
            "logging": timed(trainer, "_log"),
        }
        T, N = cfg.algo.unroll_length, trainer.env.num_envs
        rng = np.random.default_rng(0)
        raw_env.reset()

        def iteration() -> dict[str, float]:
            for timer in timers.values():
                timer.seconds = 0.0
            t0 = time.perf_counter()
            trainer.iteration()
            t1 = time.perf_counter()
            trainer.save()
            ckpt = (time.perf_counter() - t1) / cfg.train.checkpoint_interval  # amortised as in training
            parts = {name: timer.seconds for name, timer in timers.items()}
            parts["logging"] += ckpt
            parts["total"] = (t1 - t0) + ckpt
            return parts

        def raw_loop() -> None:
            for _ in range(T):
                raw_env.step(rng.integers(0, trainer.env.num_actions, N))

        iteration()  # warm-up (first update allocates optimiser state, first checkpoint creates dirs)
        raw_loop()
        for _ in range(reps):
            t0 = time.perf_counter()
            raw_loop()
            raws.append(time.perf_counter() - t0)
            parts = iteration()
            iters.append(parts["total"])
            parts["other"] = parts["total"] - sum(parts[p] for p in PARTS[:-1])
            for p in PARTS:
                split[p].append(parts[p] / parts["total"])
        trainer.close()
        raw_env.close()
        bf16 = trainer.net.bf16
    out = {p: statistics.median(v) for p, v in split.items()}
    out["agent/raw"] = statistics.median(r / i for r, i in zip(raws, iters, strict=True))
    fps = frame_skip * T * N / statistics.median(iters)
    desc = f"{N} envs, T={T}, {fps:.0f} frames/s (frame skip {frame_skip}), bf16={bf16}"
    return out, desc


def run(quick: bool) -> list[Row]:
    reps = 2 if quick else 5
    # The paper config (128 envs, T=63, 8 x 256 GTrXL, IMPALA torso) scaled down for a CPU.
    paper_envs, paper_T = (2, 4) if quick else (8, 16)
    setups = [
        ("quickstart", "quickstart", ["algo.unroll_length=8", "algo.n_step=8"] if quick else [], 1),
        ("paper", "atari_vmpo", [f"env.num_envs={paper_envs}", f"algo.unroll_length={paper_T}",
                                 f"algo.n_step={paper_T}", "env.num_threads=2"], 4),
    ]  # fmt: skip
    rows = []
    for label, preset, overrides, skip in setups:
        out, desc = measure(preset, overrides, reps, skip)
        metric = f"{label}: agent steps/s / raw env steps/s"
        rows.append(Row("end_to_end", metric, out["agent/raw"], "", None, desc))
        for p in PARTS:
            rows.append(Row("end_to_end", f"{label}: {p} share of iteration", out[p], "", None, ""))
    return rows


if __name__ == "__main__":
    main(run)
