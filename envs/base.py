"""The vectorised-environment protocol every family returns, and the helpers they share.

Autoreset semantics (gymnasium 1.x ``AutoresetMode.NEXT_STEP``, which is also envpool's native behaviour,
checked against envpool 1.2.5 Atari and MiniGrid in ``tests/envs/test_autoreset.py``):

* when ``step()`` returns ``terminated[i] | truncated[i]``, ``obs[i]`` is that episode's *final* observation;
* the *next* ``step()`` call ignores ``actions[i]`` and returns the first observation of a new episode, with
  ``reward[i] == 0`` and ``terminated[i] == truncated[i] == False``.

So a trainer never sees a reset inside a step: every transition ``(obs_t, a_t, r_t, done_t)`` is either a
real transition or an "autoreset" step whose action had no effect (the step right after ``done``).

With Atari's ``episodic_life`` a life loss is a *training* episode end (``terminated``) followed by such an
autoreset step; the game itself continues. ``info`` therefore reports the *real* episode separately:

``info["episode_done"]``   bool    [N]  True exactly at a real episode end (game over or time limit).
``info["episode_return"]`` float64 [N]  unclipped sum of raw rewards of that real episode (0 elsewhere).
``info["episode_length"]`` int64   [N]  agent steps whose action was applied (autoreset steps excluded).
``info["task_id"]``        int64   [N]  index into ``task_names``.
Atari adds ``info["episode_frames"]`` = ``episode_length * frame_skip`` (emulator frames, no-op starts
excluded).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np

Info = dict[str, np.ndarray]
StepResult = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Info]


@runtime_checkable
class VecEnv(Protocol):
    """A batch of ``num_envs`` environments stepped together (see the module docstring for semantics)."""

    num_envs: int
    observation_shape: tuple[int, ...]  # per env: (C, H, W) uint8 images or (D,) float32 vectors
    observation_dtype: np.dtype
    num_actions: int  # Discrete action count
    task_names: list[str]

    def reset(self) -> np.ndarray:
        """Reset every env; returns obs ``[N, *observation_shape]``."""
        ...

    def step(self, actions: np.ndarray) -> StepResult:
        """Step with int actions ``[N]``; returns ``(obs, reward f32, terminated, truncated, info)``."""
        ...

    def close(self) -> None:
        """Release worker threads / processes."""
        ...


# Multi-task envs also offer ``slot_tasks() -> [N] int64``: the task of each slot's current observation
# (right after ``reset``), so that the actor's first step already uses the right value head.


class EpisodeTracker:
    """Accumulates the raw (unclipped) return and length of each env's *real* episode.

    Call :meth:`reset` after ``VecEnv.reset`` and :meth:`update` once per step; ``update`` returns the
    ``episode_*`` entries of ``info`` and starts a new accumulation where ``episode_done``.
    """

    def __init__(self, num_envs: int) -> None:
        self._returns = np.zeros(num_envs, np.float64)
        self._lengths = np.zeros(num_envs, np.int64)

    def reset(self) -> None:
        """Forget the running episodes (all envs were reset)."""
        self._returns[:] = 0.0
        self._lengths[:] = 0

    def update(self, raw_reward: np.ndarray, applied: np.ndarray, episode_done: np.ndarray) -> Info:
        """Add one step.

        Args:
            raw_reward: ``[N]`` unclipped rewards of this step.
            applied: ``[N]`` bool, False on autoreset steps (the action was ignored).
            episode_done: ``[N]`` bool, a real episode ended at this step.
        """
        self._returns += raw_reward
        self._lengths += applied
        done = episode_done.astype(bool)
        info = {
            "episode_done": done,
            "episode_return": np.where(done, self._returns, 0.0),
            "episode_length": np.where(done, self._lengths, 0),
        }
        self._returns[done] = 0.0
        self._lengths[done] = 0
        return info


def clip_reward(reward: np.ndarray, enabled: bool) -> np.ndarray:
    """Training reward: float32, ``clip(reward, -1, 1)`` when ``enabled`` (sign for integer scores)."""
    reward = np.asarray(reward, np.float32)
    return np.clip(reward, -1.0, 1.0) if enabled else reward


def unknown_name_error(kind: str, name: str, choices: Iterable[str]) -> ValueError:
    """One-line ``ValueError`` naming ``name`` and its close matches, e.g. ``unknown atari game 'Pongg'``."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=5, cutoff=0.5)
    hint = f"did you mean: {', '.join(close)}" if close else f"accepted: {', '.join(choices)}"
    return ValueError(f"unknown {kind} {name!r}; {hint}")


def check_actions(actions: np.ndarray, num_envs: int, num_actions: int) -> np.ndarray:
    """Validate and convert actions to int32 ``[N]``; raises ``ValueError`` on a wrong shape or range."""
    actions = np.asarray(actions)
    if actions.shape != (num_envs,):
        raise ValueError(f"actions must have shape ({num_envs},), got {actions.shape}")
    if actions.size and (actions.min() < 0 or actions.max() >= num_actions):
        low, high = actions.min(), actions.max()
        raise ValueError(f"actions must lie in [0, {num_actions}), got values from {low} to {high}")
    return actions.astype(np.int32)
