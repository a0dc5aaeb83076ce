"""``make(cfg)``: one entry point from an :class:`EnvConfig` to a :class:`VecEnv`, dispatching on family."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from configs.schema import EnvConfig
from envs.atari import AtariVecEnv
from envs.base import VecEnv
from envs.dmlab import DMLabVecEnv
from envs.memory import CueRecallVecEnv
from envs.minigrid import MiniGridVecEnv
from envs.multitask import atari_suite_games, make_atari_suite
from envs.popgym_tasks import PopGymVecEnv


def _atari(cfg: EnvConfig, slots: range) -> VecEnv:
    """One game, or a suite (``atari57``, ``atari10``, ``Pong,Breakout,...``) as a multi-task env whose
    slots keep their game or draw one per episode (``env.task_sampling``, ``envs/multitask.py``)."""
    games = atari_suite_games(cfg.name)
    return _single(AtariVecEnv)(cfg, slots) if games is None else make_atari_suite(cfg, games, slots)


def _single(env_class: Callable[[EnvConfig], VecEnv]) -> Callable[[EnvConfig, range], VecEnv]:
    """A one-task family: its slots are ``len(slots)`` envs seeded from ``cfg.seed + slots.start``."""

    def build(cfg: EnvConfig, slots: range) -> VecEnv:
        if slots == range(cfg.num_envs):
            return env_class(cfg)
        return env_class(dataclasses.replace(cfg, num_envs=len(slots), seed=cfg.seed + slots.start))

    return build


FAMILIES: dict[str, Callable[[EnvConfig, range], VecEnv]] = {
    "atari": _atari,
    "minigrid": _single(MiniGridVecEnv),
    "popgym": _single(PopGymVecEnv),
    "memory": _single(CueRecallVecEnv),
    "dmlab": lambda cfg, slots: DMLabVecEnv(cfg, slots=slots),
}


def make(cfg: EnvConfig, slots: range | None = None) -> VecEnv:
    """Build the vectorised env ``cfg`` describes (``cfg.num_envs`` envs, env i seeded from ``cfg.seed + i``).

    ``slots``: the part of the ``cfg.num_envs`` global env slots this process plays (one torchrun rank's
    shard, ``agent/distributed.py``), default all of them. In a suite slot ``i`` keeps the game or level
    it has in the whole env, and every task's envs are seeded from ``cfg.seed + slots.start``; where a
    family seeds env ``i`` with ``cfg.seed + i`` (envpool Atari, DMLab) the shards of all ranks together
    step exactly like the whole env (tested).

    Raises ``ValueError`` (one line, with close matches) for an unknown game or task name; ``family="dmlab"``
    raises ``ModuleNotFoundError`` where DeepMind Lab is not installed (see ``envs/dmlab.py``).
    """
    if cfg.family not in FAMILIES:
        raise ValueError(f"unknown env.family {cfg.family!r}; accepted: {', '.join(FAMILIES)}")
    slots = range(cfg.num_envs) if slots is None else slots
    if slots.step != 1 or not slots or slots.start < 0 or slots.stop > cfg.num_envs:
        raise ValueError(f"env slots {slots} are not a non-empty part of range({cfg.num_envs})")
    return FAMILIES[cfg.family](cfg, slots)
