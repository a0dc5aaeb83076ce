"""Vectorised environments behind one protocol: ``envs.make(cfg.env) -> VecEnv`` (see ``envs/base.py``)."""

from envs.atari import ATARI57, PROTOCOLS, AtariProtocol
from envs.base import VecEnv
from envs.dmlab import (
    DMLAB30_LEVELS,
    DMLAB30_TRAIN_LEVELS,
    DMLAB_ACTION_SET,
    DMLabVecEnv,
)
from envs.memory import MEMORY_TASKS
from envs.minigrid import MINIGRID_MEMORY_TASKS
from envs.popgym_tasks import POPGYM_TASKS
from envs.registry import FAMILIES, make

__all__ = [
    "ATARI57",
    "DMLAB30_LEVELS",
    "DMLAB30_TRAIN_LEVELS",
    "DMLAB_ACTION_SET",
    "FAMILIES",
    "MEMORY_TASKS",
    "MINIGRID_MEMORY_TASKS",
    "POPGYM_TASKS",
    "PROTOCOLS",
    "AtariProtocol",
    "DMLabVecEnv",
    "VecEnv",
    "make",
]
