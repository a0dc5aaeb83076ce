"""Multi-task VecEnv: one vectorised env per task, concatenated, with a task id per env slot.

The V-MPO paper's headline setting trains one agent on a whole suite (Atari-57, DMLab-30). envpool runs
one game per pool, so a suite is a list of pools, one per game: env slot ``i`` plays game ``i mod G``
for the whole run (slots are fixed to a game; the DMLab adapter samples levels per worker itself).
Atari games use the full 18-action space so one policy head serves every game (``envs/atari.py`` maps
the actions Skiing lacks to NOOP); all tasks must share one observation shape and action count.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from configs.schema import EnvConfig
from envs.atari import ATARI57, AtariVecEnv, envpool_task_id
from envs.base import StepResult, VecEnv, check_actions
from envs.references import ATARI10

ATARI_SUITES: dict[str, list[str]] = {"atari57": ATARI57, "atari10": ATARI10}


def atari_suite_games(name: str) -> list[str] | None:
    """``"atari57"`` / ``"atari10"`` / ``"Pong,Breakout"`` -> game names; ``None`` for a single game."""
    if name in ATARI_SUITES:
        return list(ATARI_SUITES[name])
    if "," not in name:
        return None
    games = [envpool_task_id(part.strip()).removesuffix("-v5") for part in name.split(",")]
    if len(set(games)) != len(games):
        raise ValueError(f"env.name={name!r} lists a game twice")
    return games


class MultiTaskVecEnv:
    """Concatenates per-task VecEnvs behind the :class:`envs.base.VecEnv` protocol."""

    def __init__(self, envs: list[VecEnv]) -> None:
        spaces = {(tuple(e.observation_shape), e.num_actions) for e in envs}
        if len(spaces) != 1:
            raise ValueError(f"multi-task envs must share (observation shape, actions), got {sorted(spaces)}")
        self._envs = envs
        self._sizes = [e.num_envs for e in envs]
        self._bounds = np.cumsum([0, *self._sizes])
        self.num_envs = int(self._bounds[-1])
        self.observation_shape = envs[0].observation_shape
        self.observation_dtype = envs[0].observation_dtype
        self.num_actions = envs[0].num_actions
        self.task_names = [name for e in envs for name in e.task_names]
        self._task_of_slot = np.repeat(np.arange(len(envs)), self._sizes)

    def reset(self) -> np.ndarray:
        return np.concatenate([e.reset() for e in self._envs])

    def step(self, actions: np.ndarray) -> StepResult:
        actions = check_actions(actions, self.num_envs, self.num_actions)
        results = []
        for k, env in enumerate(self._envs):
            part = actions[self._bounds[k] : self._bounds[k + 1]]
            results.append(env.step(part))
        obs, reward, terminated, truncated = (np.concatenate([r[i] for r in results]) for i in range(4))
        infos = [r[4] for r in results]
        info = {key: np.concatenate([i[key] for i in infos]) for key in infos[0] if key != "task_id"}
        info["task_id"] = self._task_of_slot.copy()
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        for env in self._envs:
            env.close()


def make_atari_suite(cfg: EnvConfig, games: list[str]) -> MultiTaskVecEnv:
    """``cfg.num_envs`` slots spread round-robin over ``games`` (at least one slot per game)."""
    if cfg.num_envs < len(games):
        raise ValueError(
            f"env.num_envs={cfg.num_envs} is smaller than the {len(games)} games of env.name={cfg.name!r}; "
            f"accepted: env.num_envs >= {len(games)}"
        )
    counts = [len(range(k, cfg.num_envs, len(games))) for k in range(len(games))]
    envs: list[VecEnv] = []
    seed = cfg.seed
    for game, count in zip(games, counts):
        game_cfg = dataclasses.replace(cfg, name=game, num_envs=count, seed=seed, full_action_space=True)
        envs.append(AtariVecEnv(game_cfg))
        seed += count
    return MultiTaskVecEnv(envs)
