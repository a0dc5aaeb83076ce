"""``make(cfg)``: one entry point from an :class:`EnvConfig` to a :class:`VecEnv`, dispatching on family."""

from __future__ import annotations

from collections.abc import Callable

from configs.schema import EnvConfig
from envs.atari import AtariVecEnv
from envs.base import VecEnv
from envs.dmlab import DMLabVecEnv
from envs.memory import CueRecallVecEnv
from envs.minigrid import MiniGridVecEnv
from envs.multitask import atari_suite_games, make_atari_suite
from envs.popgym_tasks import PopGymVecEnv


def _atari(cfg: EnvConfig) -> VecEnv:
    """One game, or a suite (``atari57``, ``atari10``, ``Pong,Breakout,...``) as a multi-task env whose
    slots keep their game or draw one per episode (``env.task_sampling``, ``envs/multitask.py``)."""
    games = atari_suite_games(cfg.name)
    return AtariVecEnv(cfg) if games is None else make_atari_suite(cfg, games)


FAMILIES: dict[str, Callable[[EnvConfig], VecEnv]] = {
    "atari": _atari,
    "minigrid": MiniGridVecEnv,
    "popgym": PopGymVecEnv,
    "memory": CueRecallVecEnv,
    "dmlab": DMLabVecEnv,
}


def make(cfg: EnvConfig) -> VecEnv:
    """Build the vectorised env ``cfg`` describes (``cfg.num_envs`` envs, env i seeded from ``cfg.seed + i``).

    Raises ``ValueError`` (one line, with close matches) for an unknown game or task name; ``family="dmlab"``
    raises ``ModuleNotFoundError`` where DeepMind Lab is not installed (see ``envs/dmlab.py``).
    """
    if cfg.family not in FAMILIES:
        raise ValueError(f"unknown env.family {cfg.family!r}; accepted: {', '.join(FAMILIES)}")
    return FAMILIES[cfg.family](cfg)
