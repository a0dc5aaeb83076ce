"""Collector overhead: the trainer's rollout loop (``Actor.rollout``) with a trivial policy vs raw envpool.

Same envs, same envpool threads (Atari Pong, DQN protocol, 16 envs): raw = ``envpool.step`` with
random actions in a bare loop; ours = ``Actor.rollout`` around the VecEnv with a policy that returns
uniform logits, so what is measured is the loop's own bookkeeping (tensor conversions, recording,
episode statistics, stacking the trajectory).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import envs
from agent.rollout import Actor
from bench.common import Row, check, interleaved, main, median_ratio
from configs.schema import EnvConfig


class TrivialPolicy(nn.Module):
    """Uniform logits, no state: the cheapest thing ``Actor`` can call."""

    def __init__(self, num_actions: int):
        super().__init__()
        self.num_actions = num_actions

    def initial_state(self, batch_size: int, device=None) -> dict:
        return {}

    def step(self, obs, prev_action, prev_reward, first, state):
        return torch.zeros(obs.shape[0], self.num_actions), torch.zeros(obs.shape[0], 1), state


def run(quick: bool) -> list[Row]:
    num_envs, T = (8, 16) if quick else (16, 64)
    env = envs.make(EnvConfig(family="atari", name="Pong", num_envs=num_envs, num_threads=2))
    actor = Actor(env, TrivialPolicy(env.num_actions), torch.device("cpu"))
    raw = env._env  # the envpool instance under the VecEnv
    rng = np.random.default_rng(0)

    def raw_loop():
        for _ in range(T):
            raw.step(rng.integers(0, env.num_actions, num_envs))

    times = interleaved({"raw": raw_loop, "ours": lambda: actor.rollout(T)}, 3 if quick else 7)
    env.close()
    ratio = median_ratio(times["raw"], times["ours"])  # (steps/s ours) / (steps/s raw)
    return [Row("collector", "rollout loop / raw envpool steps/s", ratio, ">= 0.9", check(ratio, 0.9),
                f"Pong, {num_envs} envs, 2 envpool threads, trivial policy, T={T}")]  # fmt: skip


if __name__ == "__main__":
    main(run)
