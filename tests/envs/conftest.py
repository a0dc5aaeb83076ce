"""Shared fixture for the envs tests: ``make_env(**overrides)`` builds envs that are closed after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from configs.schema import EnvConfig
from envs import VecEnv, make


@pytest.fixture
def make_env() -> Iterator[Callable[..., VecEnv]]:
    """``make(EnvConfig(**overrides))`` with ``num_envs=1`` unless given; every env is closed at teardown."""
    made: list[VecEnv] = []

    def factory(**overrides: object) -> VecEnv:
        overrides.setdefault("num_envs", 1)
        env = make(EnvConfig(**overrides))
        made.append(env)
        return env

    yield factory
    for env in made:
        env.close()
