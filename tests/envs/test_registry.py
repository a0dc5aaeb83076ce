"""make(): dispatch, unknown-name errors with close matches, deepmind_lab missing, per-env seeds."""

from __future__ import annotations

import numpy as np
import pytest

from configs.schema import EnvConfig
from envs import VecEnv, make


@pytest.mark.parametrize(
    ("family", "name", "message"),
    [
        ("atari", "Pongg", "unknown atari game 'Pongg'; did you mean: Pong"),
        ("atari", "montezuma", "unknown atari game 'montezuma'"),
        ("minigrid", "MemoryS8", "unknown minigrid task 'MemoryS8'; did you mean: MemoryS9"),
        (
            "popgym",
            "RepeatPrevEasy",
            "unknown popgym task 'RepeatPrevEasy'; did you mean: RepeatPreviousEasy",
        ),
        ("memory", "CueRecal-L5", "unknown memory task 'CueRecal-L5'; accepted: CueRecall-L{n}"),
    ],
)
def test_unknown_names_list_close_matches(family, name, message):
    with pytest.raises(ValueError) as error:
        make(EnvConfig(family=family, name=name, num_envs=1))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_dmlab_without_deepmind_lab_is_one_clear_line(monkeypatch):
    import envs.dmlab

    monkeypatch.setattr(envs.dmlab, "LAB_MODULE", "no_such_deepmind_lab")
    with pytest.raises(ModuleNotFoundError, match=r"docs/docker\.md"):
        make(EnvConfig(family="dmlab", name="rooms_watermaze", num_envs=1))


FULL_IDS = [
    ("atari", "Pong-v5", "Pong"),
    ("minigrid", "MiniGrid-MemoryS7-v0", "MemoryS7"),
    ("memory", "CueRecall-L4", "CueRecall-L4-K4"),
]


@pytest.mark.parametrize(("family", "name", "task_name"), FULL_IDS)
def test_full_ids_are_accepted_and_satisfy_the_protocol(make_env, family, name, task_name):
    env = make_env(family=family, name=name)
    assert isinstance(env, VecEnv)
    assert env.task_names == [task_name]


def test_envs_are_seeded_distinctly(make_env):
    env = make_env(family="minigrid", name="MemoryS13Random", num_envs=8, seed=0)
    obs = env.reset()
    assert len({row.tobytes() for row in obs}) > 1
    again = make_env(family="minigrid", name="MemoryS13Random", num_envs=8, seed=0)
    np.testing.assert_array_equal(again.reset(), obs)
