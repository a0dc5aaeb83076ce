"""MiniGrid through envpool (family ``"minigrid"``), the Memory tasks in particular.

Observation: the agent's egocentric 7x7 view, uint8 ``[N, 3, 7, 7]`` = envpool's ``image`` ``[7, 7, 3]``
(object index, colour index, state) moved channels-first; the spatial axes keep envpool's order. The
``direction`` and ``mission`` entries are dropped (the view is egocentric; the Memory missions are fixed).
Actions: Discrete(7) (left, right, forward, pickup, drop, toggle, done). Reward ``1 - 0.9 * t / T`` on
success, else 0; episodes are capped at envpool's per-task ``max_episode_steps``.
"""

from __future__ import annotations

import numpy as np

from configs.schema import EnvConfig
from envs.base import EpisodeTracker, StepResult, check_actions, clip_reward, unknown_name_error

# The MiniGrid memory tasks registered in envpool 1.2.5 (Chevalier-Boisvert et al. 2018).
MINIGRID_MEMORY_TASKS: list[str] = [
    "MemoryS7", "MemoryS9", "MemoryS11", "MemoryS13", "MemoryS13Random", "MemoryS17Random",
]  # fmt: skip


def minigrid_task_ids() -> list[str]:
    """All MiniGrid task ids that envpool registers, e.g. ``"MiniGrid-MemoryS7-v0"``."""
    import envpool

    return [task for task in envpool.list_all_envs() if task.startswith("MiniGrid-")]


def envpool_task_id(name: str) -> str:
    """``"MemoryS7"`` or ``"MiniGrid-MemoryS7-v0"`` -> ``"MiniGrid-MemoryS7-v0"``; else ``ValueError``."""
    known = minigrid_task_ids()
    for candidate in (name, f"MiniGrid-{name}-v0"):
        if candidate in known:
            return candidate
    short = [task.removeprefix("MiniGrid-").removesuffix("-v0") for task in known]
    raise unknown_name_error("minigrid task", name, short)


class MiniGridVecEnv:
    """envpool MiniGrid behind the :class:`envs.base.VecEnv` protocol."""

    def __init__(self, cfg: EnvConfig) -> None:
        import envpool

        task_id = envpool_task_id(cfg.name)
        self._env = envpool.make(
            task_id, env_type="gymnasium", num_envs=cfg.num_envs, num_threads=cfg.num_threads, seed=cfg.seed
        )
        height, width, channels = self._env.observation_space["image"].shape
        self.num_envs = cfg.num_envs
        self.observation_shape = (channels, height, width)
        self.observation_dtype = np.dtype(np.uint8)
        self.num_actions = int(self._env.action_space.n)
        self.task_names = [task_id.removeprefix("MiniGrid-").removesuffix("-v0")]
        self._clip = cfg.clip_rewards
        self._tracker = EpisodeTracker(self.num_envs)
        self._resetting = np.zeros(self.num_envs, bool)

    @staticmethod
    def _image(obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(obs["image"], -1, 1))

    def reset(self) -> np.ndarray:
        """Reset every env; returns uint8 obs ``[N, 3, 7, 7]``."""
        obs, _ = self._env.reset()
        self._tracker.reset()
        self._resetting[:] = False
        return self._image(obs)

    def step(self, actions: np.ndarray) -> StepResult:
        """Step all envs (NEXT_STEP autoreset, envpool's native behaviour)."""
        actions = check_actions(actions, self.num_envs, self.num_actions)
        obs, raw_reward, terminated, truncated, _ = self._env.step(actions)
        terminated, truncated = terminated.astype(bool), truncated.astype(bool)
        done = terminated | truncated
        info = self._tracker.update(raw_reward, ~self._resetting, done)
        info["task_id"] = np.zeros(self.num_envs, np.int64)
        self._resetting = done
        return self._image(obs), clip_reward(raw_reward, self._clip), terminated, truncated, info

    def close(self) -> None:
        """Stop envpool's worker threads."""
        self._env.close()
