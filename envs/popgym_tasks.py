"""POPGym memory tasks (Morad et al. 2023), family ``"popgym"``.

Each env is a popgym class by name (``"RepeatPreviousEasy"``); observations (Discrete, Tuple of Discrete or
MultiDiscrete) are one-hot flattened to float32 ``[N, D]`` with gymnasium's ``FlattenObservation``, and
the envs are stepped by gymnasium's ``SyncVectorEnv`` with ``AutoresetMode.NEXT_STEP`` (our protocol).
All supported tasks have Discrete action spaces.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from configs.schema import EnvConfig
from envs.base import EpisodeTracker, StepResult, check_actions, clip_reward, unknown_name_error

# Supported popgym classes: the four memory families, each with its default and Easy/Medium/Hard levels.
POPGYM_TASKS: list[str] = [
    f"{task}{level}"
    for task in ("RepeatFirst", "RepeatPrevious", "Autoencode", "CountRecall")
    for level in ("", "Easy", "Medium", "Hard")
]


def _env_factory(name: str):
    """A zero-argument constructor of one flattened popgym env."""
    import popgym.envs  # imported lazily: popgym pulls in all of its environments

    env_cls = getattr(popgym.envs, name)
    return lambda: gym.wrappers.FlattenObservation(env_cls())


class PopGymVecEnv:
    """``num_envs`` popgym envs behind the :class:`envs.base.VecEnv` protocol (env i seeded with seed + i)."""

    def __init__(self, cfg: EnvConfig) -> None:
        if cfg.name not in POPGYM_TASKS:
            raise unknown_name_error("popgym task", cfg.name, POPGYM_TASKS)
        self._env = gym.vector.SyncVectorEnv(
            [_env_factory(cfg.name) for _ in range(cfg.num_envs)],
            autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
        )
        if not isinstance(self._env.single_action_space, gym.spaces.Discrete):
            raise ValueError(f"popgym task {cfg.name!r} has a non-Discrete action space")
        self.num_envs = cfg.num_envs
        self.observation_shape = tuple(self._env.single_observation_space.shape)
        self.observation_dtype = np.dtype(np.float32)
        self.num_actions = int(self._env.single_action_space.n)
        self.task_names = [cfg.name]
        self._seed = cfg.seed
        self._seeded = False
        self._clip = cfg.clip_rewards
        self._tracker = EpisodeTracker(self.num_envs)
        self._resetting = np.zeros(self.num_envs, bool)

    def reset(self) -> np.ndarray:
        """Reset every env (seeded on the first call only); returns float32 obs ``[N, D]``."""
        seeds = None if self._seeded else [self._seed + i for i in range(self.num_envs)]
        obs, _ = self._env.reset(seed=seeds)
        self._seeded = True
        self._tracker.reset()
        self._resetting[:] = False
        return obs.astype(np.float32)

    def step(self, actions: np.ndarray) -> StepResult:
        """Step all envs (NEXT_STEP autoreset)."""
        actions = check_actions(actions, self.num_envs, self.num_actions)
        obs, raw_reward, terminated, truncated, _ = self._env.step(actions.astype(np.int64))
        terminated, truncated = terminated.astype(bool), truncated.astype(bool)
        done = terminated | truncated
        info = self._tracker.update(raw_reward, ~self._resetting, done)
        info["task_id"] = np.zeros(self.num_envs, np.int64)
        self._resetting = done
        return obs.astype(np.float32), clip_reward(raw_reward, self._clip), terminated, truncated, info

    def close(self) -> None:
        """Close the underlying envs."""
        self._env.close()
