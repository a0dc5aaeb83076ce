"""Throughput: agent steps/s of the real training iteration, synchronous vs overlapped, fp32 vs bf16.

For each preset, four trainers built as training builds them (``agent.trainer.Trainer``: env shard,
network, learner, actor, TensorBoard writer), one per variant: ``train.overlap`` false/true x
``train.bf16`` off/on. Each variant's ``Trainer.iteration`` (rollout + update + sync + log; overlapped,
the rollout of the next unroll runs on the actor thread during the update, agent/overlap.py) and a raw
env loop (an identical env stepped with random actions for the same T x N steps) are timed in
alternation, ``A B C D R A B C D R ...``, and reported as median ratios:

- overlapped / synchronous agent steps/s, in fp32 and in bf16 (what ``train.overlap`` buys), with the
  synchronous learner at the bench's thread count (``BENCH_THREADS``, 1: the same threads per side) and
  on every core of the process (``agent.builder.usable_cores``: what ``train.torch_threads=0`` gives a
  synchronous run, the fair baseline on a quiet machine);
- bf16 / fp32 agent steps/s, synchronous and overlapped;
- each variant's agent steps/s / raw env steps/s: the fraction of the env's own speed on these cores
  that training reaches (1 is the physical limit of the env alone).

Presets: ``atari_ppo_cpu`` (PPO, Nature CNN, 8 envs x 128 steps, 4 epochs x 4 minibatches, Breakout) and
``atari_cpu`` (V-MPO + GTrXL, Pong). ``--quick``: 4 envs x 16 steps, 2 repetitions. Absolute steps/s
only in the notes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import envs
from agent.builder import usable_cores
from agent.trainer import Trainer
from bench.common import Row, interleaved, main, median_ratio
from bench.end_to_end import bench_train
from configs import load_config

VARIANTS = {
    "sync fp32": ["train.overlap=false", "train.bf16=off"],
    "overlap fp32": ["train.overlap=true", "train.bf16=off"],
    "sync bf16": ["train.overlap=false", "train.bf16=on"],
    "overlap bf16": ["train.overlap=true", "train.bf16=on"],
    "sync fp32 all cores": ["train.overlap=false", "train.bf16=off"],
    "sync bf16 all cores": ["train.overlap=false", "train.bf16=on"],
}
ALL_CORES = ("sync fp32 all cores", "sync bf16 all cores")  # the main thread on every core
PRESETS = (("ppo", "atari_ppo_cpu"), ("vmpo", "atari_cpu"))
QUICK = ["env.num_envs=4", "algo.unroll_length=16", "algo.n_step=16"]
FRAME_SKIP = 4  # Atari, DQN protocol: frames per agent step (notes only)


def measure(preset: str, overrides: list[str], reps: int) -> tuple[dict[str, list[float]], str]:
    """Seconds per call of each variant's ``Trainer.iteration`` and of the raw env loop (key ``raw``),
    timed in alternation after one warm-up round; and a description of the setup."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        trainers: dict[str, Trainer] = {}
        for name, variant in VARIANTS.items():
            cfg = load_config(preset, [*overrides, *variant, *bench_train()])
            trainers[name] = Trainer(cfg, Path(tmp) / name.replace(" ", "_"))
            stack.callback(trainers[name].close)
        cfg = next(iter(trainers.values())).cfg
        threads = torch.get_num_threads()
        fns: dict[str, Callable[[], object]] = {
            name: with_threads(usable_cores() if name in ALL_CORES else threads, tr.iteration)
            for name, tr in trainers.items()
        }
        fns["raw"] = raw_env_loop(cfg, stack)
        times = interleaved(fns, reps, warmup=1)  # warm-up: optimiser state, the first overlapped unroll
        torch.set_num_threads(threads)
    T, N = cfg.algo.unroll_length, cfg.env.num_envs
    desc = f"{cfg.env.name}, {N} envs x T={T}, {cfg.algo.name}, core {cfg.net.core}, torso {cfg.net.torso}"
    return times, desc


def with_threads(threads: int, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with the calling thread's torch intra-op threads set to ``threads`` (per thread)."""

    def call() -> object:
        torch.set_num_threads(threads)
        return fn()

    return call


def raw_env_loop(cfg, stack: contextlib.ExitStack) -> Callable[[], None]:
    """T steps of an env like the trainers' (another seed) with random actions: the env's own speed."""
    env = envs.make(dataclasses.replace(cfg.env, seed=cfg.env.seed + 1))
    stack.callback(env.close)
    env.reset()
    rng = np.random.default_rng(0)
    T, N = cfg.algo.unroll_length, cfg.env.num_envs

    def loop() -> None:
        for _ in range(T):
            env.step(rng.integers(0, env.num_actions, N))

    return loop


def rows_for(label: str, times: dict[str, list[float]], desc: str, steps: int) -> list[Row]:
    """The ratios of one preset; ``steps`` = agent steps per iteration (absolute rates in the notes)."""

    def speedup(slow: str, fast: str) -> float:  # (steps/s of fast) / (steps/s of slow)
        return median_ratio(times[slow], times[fast])

    def rate(name: str) -> float:
        return steps / statistics.median(times[name])

    rows = [
        Row("throughput", f"{label}: overlapped / synchronous steps/s, fp32",
            speedup("sync fp32", "overlap fp32"), "", None, desc),
        Row("throughput", f"{label}: overlapped / synchronous steps/s, bf16",
            speedup("sync bf16", "overlap bf16"), "", None, ""),
        Row("throughput", f"{label}: overlapped / synchronous on every core steps/s, fp32",
            speedup("sync fp32 all cores", "overlap fp32"), "", None, f"{usable_cores()} cores"),
        Row("throughput", f"{label}: overlapped / synchronous on every core steps/s, bf16",
            speedup("sync bf16 all cores", "overlap bf16"), "", None, ""),
        Row("throughput", f"{label}: bf16 / fp32 steps/s, synchronous",
            speedup("sync fp32", "sync bf16"), "", None, ""),
        Row("throughput", f"{label}: bf16 / fp32 steps/s, overlapped",
            speedup("overlap fp32", "overlap bf16"), "", None, ""),
    ]  # fmt: skip
    for name in VARIANTS:
        note = (
            f"{rate(name):.0f} agent steps/s ({FRAME_SKIP * rate(name):.0f} frames/s), raw {rate('raw'):.0f}"
        )
        rows.append(
            Row("throughput", f"{label}: {name} / raw env steps/s", speedup("raw", name), "", None, note)
        )
    return rows


def run(quick: bool) -> list[Row]:
    reps = 2 if quick else 5
    rows = []
    for label, preset in PRESETS:
        overrides = QUICK if quick else []
        times, desc = measure(preset, overrides, reps)
        cfg = load_config(preset, overrides)
        rows += rows_for(label, times, desc, cfg.algo.unroll_length * cfg.env.num_envs)
    return rows


if __name__ == "__main__":
    main(run)
