"""End to end: the trainer's iteration (rollout -> update -> refresh -> log -> checkpoint) and its time split.

Drives ``agent.rollout.Actor`` and ``agent.learner.make_learner`` as ``Trainer._iteration`` does, with
timers around ``env.step`` (env), ``net.step`` (actor inference), ``learner.update`` (learner forward +
backward + optimiser), and a TensorBoard write + checkpoint (logging). Reported:

- agent steps/s of the iteration over raw env steps/s of an identical env stepped with random actions
  (the two timed in alternation, ``A B A B``); absolute frames/s only in the note;
- the share of each part in the iteration (fractions of the same timed iterations: ratios).

The checkpoint is written every iteration here and its share divided by ``train.checkpoint_interval``
(what training pays); the TensorBoard write happens every iteration as in training.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

import envs
from agent.checkpoint import save_checkpoint
from agent.learner import make_learner
from agent.rollout import Actor
from bench.common import Row, main
from configs import load_config
from networks.agent_net import AgentNet
from networks.precision import resolve_bf16

PARTS = ("env", "actor", "learner", "logging", "other")  # other: rollout bookkeeping, refresh


class Timed:
    """Accumulates the seconds spent in ``fn`` (a wrapper installed on an instance attribute)."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def measure(preset: str, overrides: list[str], reps: int, frame_skip: int) -> tuple[dict[str, float], str]:
    cfg = load_config(preset, overrides)
    env = envs.make(cfg.env)
    raw_env = envs.make(dataclasses.replace(cfg.env, seed=cfg.env.seed + 1))
    if cfg.net.num_tasks != len(env.task_names):
        cfg = dataclasses.replace(cfg, net=dataclasses.replace(cfg.net, num_tasks=len(env.task_names)))
    net = AgentNet(cfg.net, tuple(env.observation_shape), env.num_actions)
    net.bf16 = resolve_bf16(cfg.train.bf16, torch.device("cpu"))
    learner = make_learner(net, cfg.algo)
    learner.build_optimizer()
    actor = Actor(env, net, torch.device("cpu"))
    env_step, net_step = Timed(env.step), Timed(net.step)
    env.step, net.step = env_step, net_step  # instance attributes shadow the methods
    T, N = cfg.algo.unroll_length, env.num_envs
    rng = np.random.default_rng(0)
    raw_env.reset()
    split: dict[str, list[float]] = {p: [] for p in PARTS}
    iters, raws = [], []
    with tempfile.TemporaryDirectory() as tmp:
        writer = SummaryWriter(tmp)

        def iteration() -> dict[str, float]:
            env_step.seconds = net_step.seconds = 0.0
            t0 = time.perf_counter()
            net.eval()
            traj, _ = actor.rollout(T)
            net.train()
            t1 = time.perf_counter()
            metrics = learner.update(traj)
            actor.refresh()
            t2 = time.perf_counter()
            for k, v in metrics.items():
                writer.add_scalar(k, v, learner.num_updates)
            writer.flush()
            t3 = time.perf_counter()
            save_checkpoint(Path(tmp), learner.num_updates, {"learner": learner.training_state()}, 1)
            t4 = time.perf_counter()
            ckpt = (t4 - t3) / cfg.train.checkpoint_interval  # amortised as in training
            return {"env": env_step.seconds, "actor": net_step.seconds, "learner": t2 - t1,
                    "logging": (t3 - t2) + ckpt, "total": (t3 - t0) + ckpt}  # fmt: skip

        def raw_loop() -> None:
            for _ in range(T):
                raw_env.step(rng.integers(0, env.num_actions, N))

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
        writer.close()
    env.close()
    raw_env.close()
    out = {p: statistics.median(v) for p, v in split.items()}
    out["agent/raw"] = statistics.median(r / i for r, i in zip(raws, iters, strict=True))
    fps = frame_skip * T * N / statistics.median(iters)
    desc = f"{N} envs, T={T}, {fps:.0f} frames/s (frame skip {frame_skip}), bf16={net.bf16}"
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
