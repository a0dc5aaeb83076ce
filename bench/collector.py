"""Collector overhead: the trainer's rollout loop (``Actor.rollout``) with a trivial policy vs raw envpool.

Same envs, same envpool threads (Atari Pong, DQN protocol, 16 envs): raw = ``envpool.step`` with
random actions in a bare loop; ours = ``Actor.rollout`` around the VecEnv with a policy that returns
uniform logits, so what is measured is the loop's own bookkeeping (recording the trajectory, episode
statistics) and the VecEnv wrapper's (action checks, episode tracking).

The loop's own cost is ~2% of an envpool step, so the first ratio mostly measures how the OS schedules
the main thread against envpool's threads. The second row isolates the loop: ``Actor.rollout`` on a
:class:`ReplayEnv` (no env work at all) against the same raw envpool steps, in alternation.
"""

from __future__ import annotations

import statistics

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


class ReplayEnv:
    """Replays one recorded step of ``env``, with a distinct observation array per step (envpool returns
    fresh arrays, and the actor copies each into its trajectory): the rollout loop without env work."""

    def __init__(self, env, copies: int = 8) -> None:
        self.num_envs, self.num_actions = env.num_envs, env.num_actions
        self.observation_shape, self.task_names = env.observation_shape, env.task_names
        self._first = env.reset()
        self._step = env.step(np.zeros(env.num_envs, np.int64))
        self._obs = [self._step[0].copy() for _ in range(copies)]
        self._t = 0

    def reset(self) -> np.ndarray:
        return self._first

    def step(self, actions: np.ndarray):
        self._t += 1
        _, reward, terminated, truncated, info = self._step
        return self._obs[self._t % len(self._obs)], reward, terminated, truncated, dict(info)


def run(quick: bool) -> list[Row]:
    num_envs, T = (8, 16) if quick else (16, 64)
    env = envs.make(EnvConfig(family="atari", name="Pong", num_envs=num_envs, num_threads=2))
    replay = Actor(ReplayEnv(env), TrivialPolicy(env.num_actions), torch.device("cpu"))
    actor = Actor(env, TrivialPolicy(env.num_actions), torch.device("cpu"))  # resets env after ReplayEnv
    raw = env._env  # the envpool instance under the VecEnv
    rng = np.random.default_rng(0)

    def raw_loop():
        for _ in range(T):
            raw.step(rng.integers(0, env.num_actions, num_envs))

    fns = {"raw": raw_loop, "ours": lambda: actor.rollout(T), "loop": lambda: replay.rollout(T)}
    times = interleaved(fns, 3 if quick else 7)
    env.close()
    ratio = median_ratio(times["raw"], times["ours"])  # (steps/s ours) / (steps/s raw)
    loop = median_ratio(times["loop"], times["raw"])  # (loop time alone) / (raw env time)
    note = f"Pong, {num_envs} envs, 2 envpool threads, trivial policy, T={T}"
    return [Row("collector", "rollout loop / raw envpool steps/s", ratio, ">= 0.9", check(ratio, 0.9), note),
            Row("collector", "loop alone (replayed env) / raw envpool step time", loop, "", None,
                f"{1e6 * statistics.median(times['loop']) / T:.0f} us per step of the loop")]  # fmt: skip


if __name__ == "__main__":
    main(run)
