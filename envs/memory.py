"""Cue recall: a tiny numpy-vectorised memory task for fast CI learning tests (family ``"memory"``).

Name ``"CueRecall-L{n}"`` or ``"CueRecall-L{n}-K{k}"`` (default ``k = 4``). An episode has ``n`` agent
steps. Observation float32 ``[k + 1]``: at ``t = 0`` the one-hot cue ``c`` (uniform over ``k``), then zeros;
at ``t = n - 1`` the last entry (the query flag) is 1. Only the action at the query step is rewarded:
``+1`` if it equals ``c``, else 0; that step terminates the episode (its final obs is all zeros).

A policy with memory earns 1 per episode; a feed-forward policy sees the same observation at the query step
whatever the cue, so it earns at best ``1 / k`` in expectation. (With ``n = 1`` cue and query coincide and
no memory is needed.) All envs share one seeded generator, so their cues are distinct draws.
"""

from __future__ import annotations

import re

import numpy as np

from configs.schema import EnvConfig
from envs.base import EpisodeTracker, StepResult, check_actions, clip_reward

_NAME = re.compile(r"CueRecall-L(?P<length>[1-9]\d*)(?:-K(?P<cues>[1-9]\d*))?")
MEMORY_TASKS: list[str] = ["CueRecall-L{n}", "CueRecall-L{n}-K{k}"]  # name patterns
DEFAULT_NUM_CUES = 4


def parse_name(name: str) -> tuple[int, int]:
    """``"CueRecall-L8-K3"`` -> ``(8, 3)``; raises ``ValueError`` naming the accepted patterns otherwise."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(
            f"unknown memory task {name!r}; accepted: CueRecall-L{{n}} or CueRecall-L{{n}}-K{{k}} "
            "with n, k >= 1, e.g. CueRecall-L8"
        )
    return int(match["length"]), int(match["cues"] or DEFAULT_NUM_CUES)


class CueRecallVecEnv:
    """The cue-recall task behind the :class:`envs.base.VecEnv` protocol, without per-env Python loops."""

    def __init__(self, cfg: EnvConfig) -> None:
        self.length, self.num_cues = parse_name(cfg.name)
        self.num_envs = cfg.num_envs
        self.observation_shape = (self.num_cues + 1,)
        self.observation_dtype = np.dtype(np.float32)
        self.num_actions = self.num_cues
        self.task_names = [f"CueRecall-L{self.length}-K{self.num_cues}"]
        self._clip = cfg.clip_rewards
        self._rng = np.random.default_rng(cfg.seed)
        self._t = np.zeros(self.num_envs, np.int64)  # step index of the obs last returned; n = after the end
        self._cue = np.zeros(self.num_envs, np.int64)
        self._tracker = EpisodeTracker(self.num_envs)

    def _new_episodes(self, mask: np.ndarray) -> None:
        self._t[mask] = 0
        self._cue[mask] = self._rng.integers(self.num_cues, size=int(mask.sum()))

    def _observe(self) -> np.ndarray:
        obs = np.zeros((self.num_envs, self.num_cues + 1), np.float32)
        first = self._t == 0
        obs[first, self._cue[first]] = 1.0
        obs[self._t == self.length - 1, self.num_cues] = 1.0
        return obs

    def reset(self) -> np.ndarray:
        """Start a new episode in every env; returns float32 obs ``[N, K + 1]``."""
        self._new_episodes(np.ones(self.num_envs, bool))
        self._tracker.reset()
        return self._observe()

    def step(self, actions: np.ndarray) -> StepResult:
        """Step all envs; envs whose episode ended at the previous step start a new one (action ignored)."""
        actions = check_actions(actions, self.num_envs, self.num_actions)
        resetting = self._t == self.length
        query = self._t == self.length - 1  # on resetting envs t == n, so query is False there
        raw_reward = (query & (actions == self._cue)).astype(np.float32)
        self._t[~resetting] += 1
        self._new_episodes(resetting)
        info = self._tracker.update(raw_reward, ~resetting, query)
        info["task_id"] = np.zeros(self.num_envs, np.int64)
        truncated = np.zeros(self.num_envs, bool)
        return self._observe(), clip_reward(raw_reward, self._clip), query, truncated, info

    def close(self) -> None:
        """Nothing to release."""
