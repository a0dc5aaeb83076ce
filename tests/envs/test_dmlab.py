"""DMLab adapter against the fake ``deepmind_lab`` in ``tests/envs/fake_deepmind_lab``: data, protocol,
action repeat and mapping, NEXT_STEP autoreset, instructions, multi-task, bad level, worker crash."""

from __future__ import annotations

import numpy as np
import pytest

import envs.dmlab as dmlab
from configs.schema import EnvConfig
from envs import VecEnv, make
from envs.dmlab import (
    DMLAB30_LEVELS,
    DMLAB30_TRAIN_LEVELS,
    DMLAB_ACTION_SET,
    DMLabVecEnv,
    DMLabWorkerError,
    instruction_tokens,
)
from tests.envs import fake_deepmind_lab as fake

FORWARD, BACKWARD, FIRE = 0, 1, 14


@pytest.fixture(autouse=True)
def fake_lab(monkeypatch):
    monkeypatch.setattr(dmlab, "LAB_MODULE", "tests.envs.fake_deepmind_lab")


@pytest.fixture
def dmlab_env(make_env):
    """``make_env`` for family dmlab; extra DMLab settings are set as ``EnvConfig`` attributes."""

    def factory(name: str = "rooms_watermaze", num_envs: int = 1, **settings: object) -> VecEnv:
        if not settings:
            return make_env(family="dmlab", name=name, num_envs=num_envs, clip_rewards=False)
        cfg = EnvConfig(family="dmlab", name=name, num_envs=num_envs, clip_rewards=False)
        for key, value in settings.items():
            setattr(cfg, key, value)
        env = DMLabVecEnv(cfg)
        made.append(env)
        return env

    made: list[DMLabVecEnv] = []
    yield factory
    for env in made:
        env.close()


def test_dmlab30_level_lists_are_complete():
    assert len(DMLAB30_LEVELS) == len(set(DMLAB30_LEVELS)) == len(DMLAB30_TRAIN_LEVELS) == 30
    assert [t for t in DMLAB30_TRAIN_LEVELS if t not in DMLAB30_LEVELS] == [
        "rooms_collect_good_objects_train", "rooms_exploit_deferred_effects_train",
    ]  # fmt: skip
    assert DMLAB30_TRAIN_LEVELS[0] == "rooms_collect_good_objects_train"


def test_action_set_is_fifteen_distinct_seven_int_vectors():
    assert len(DMLAB_ACTION_SET) == 15 and len(set(DMLAB_ACTION_SET)) == 15
    assert all(len(action) == 7 and all(isinstance(x, int) for x in action) for action in DMLAB_ACTION_SET)
    assert DMLAB_ACTION_SET[FORWARD][3] == 1 and DMLAB_ACTION_SET[FIRE][4] == 1


def test_protocol_shapes_and_default_72x96_frames(dmlab_env):
    env = dmlab_env(num_envs=2)
    assert isinstance(env, VecEnv)
    assert env.observation_shape == (3, 72, 96) and env.observation_dtype == np.uint8
    assert env.num_actions == 15 and env.task_names == ["rooms_watermaze"]
    obs = env.reset()
    assert obs.shape == (2, 3, 72, 96) and obs.dtype == np.uint8
    assert obs[0, 0, 0, 0] != obs[1, 0, 0, 0]  # env i seeded from seed + i


def test_frame_size_is_configurable(dmlab_env):
    env = dmlab_env(dmlab_width=64, dmlab_height=48)
    assert env.reset().shape == (1, 3, 48, 64)


def test_action_repeat_and_action_mapping(dmlab_env):
    env = dmlab_env(num_envs=3)
    env.reset()
    obs, reward, *_ = env.step(np.array([FORWARD, BACKWARD, FIRE]))
    np.testing.assert_array_equal(reward, [4.0, -4.0, 2.0])  # summed over 4 repeated frames
    np.testing.assert_array_equal(obs[:, 1, 0, 0], [4, 4, 4])  # 4 frames played
    env2 = dmlab_env(action_repeat=2)
    env2.reset()
    assert env2.step(np.array([FORWARD]))[1][0] == 2.0


def test_episode_end_then_next_step_autoreset_with_unclipped_return(dmlab_env):
    env = dmlab_env(name="tests/short_episode", num_envs=2)  # 12 frames = 3 agent steps
    first = env.reset()
    for _ in range(2):
        obs, reward, terminated, truncated, info = env.step(np.array([FORWARD, FIRE]))
        assert not terminated.any() and not info["episode_done"].any()
    obs, reward, terminated, truncated, info = env.step(np.array([FORWARD, FIRE]))
    assert terminated.all() and not truncated.any()
    np.testing.assert_array_equal(info["episode_return"], [12.0, 6.0])
    np.testing.assert_array_equal(info["episode_length"], [3, 3])
    np.testing.assert_array_equal(info["episode_frames"], [12, 12])
    np.testing.assert_array_equal(obs[:, 1, 0, 0], [8, 8])  # final obs: the last frame rendered
    obs, reward, terminated, truncated, info = env.step(np.array([FORWARD, FIRE]))  # autoreset step
    assert not terminated.any() and (reward == 0).all() and not info["episode_done"].any()
    np.testing.assert_array_equal(obs[:, 1, 0, 0], [0, 0])
    np.testing.assert_array_equal(obs[:, 2, 0, 0], first[:, 2, 0, 0] + 1)  # a new episode
    assert (obs[:, 0, 0, 0] != first[:, 0, 0, 0]).any()  # with a fresh seed


def test_rewards_are_clipped_for_training_only(make_env):
    env = make_env(family="dmlab", name="tests/short_episode", num_envs=1, clip_rewards=True)
    env.reset()
    for _ in range(3):
        _, reward, _, _, info = env.step(np.array([FORWARD]))
        assert reward[0] == 1.0
    assert info["episode_return"][0] == 12.0


def test_instructions_as_tokens_or_ignored(dmlab_env):
    env = dmlab_env(
        name="language_select_described_object,rooms_watermaze", num_envs=2, instructions="tokens"
    )
    env.reset()
    info = env.step(np.zeros(2, np.int64))[4]
    expected = instruction_tokens(fake.INSTRUCTION, 16, 1000)
    np.testing.assert_array_equal(info["instr"][0], expected)
    assert (expected[:4] > 0).all() and (expected[4:] == 0).all() and not info["instr"][1].any()
    ignored = dmlab_env(name="language_select_described_object")
    ignored.reset()
    assert "instr" not in ignored.step(np.zeros(1, np.int64))[4]


def test_instruction_tokens_are_stable_and_bounded():
    tokens = instruction_tokens(b"Go to the RED ball", length=3, vocab=5)
    np.testing.assert_array_equal(tokens, instruction_tokens("go to the red ball", 3, 5))
    assert tokens.shape == (3,) and ((tokens >= 1) & (tokens < 5)).all()


def test_dmlab30_assigns_levels_round_robin_with_task_ids(dmlab_env):
    env = dmlab_env(name="dmlab30", num_envs=3)
    assert env.task_names == DMLAB30_TRAIN_LEVELS and env.levels == DMLAB30_TRAIN_LEVELS[:3]
    env.reset()
    np.testing.assert_array_equal(env.step(np.zeros(3, np.int64))[4]["task_id"], [0, 1, 2])
    test_env = dmlab_env(name="dmlab30_test")  # hold-out variants load (allowHoldOutLevels is set)
    assert test_env.levels == ["rooms_collect_good_objects_test"]


def test_bad_level_name_is_one_clear_line(dmlab_env):
    with pytest.raises(DMLabWorkerError) as error:
        dmlab_env(name="no_such_level")
    message = str(error.value)
    assert "\n" not in message and "could not load level 'no_such_level'" in message
    assert "accepted: rooms_collect_good_objects_test" in message


def test_level_typo_is_refused_before_the_module_is_looked_up(monkeypatch):
    monkeypatch.setattr(dmlab, "LAB_MODULE", "no_such_deepmind_lab")  # DeepMind Lab not installed
    with pytest.raises(ValueError) as error:
        make(EnvConfig(family="dmlab", name="rooms_watermaze,rooms_watermaz", num_envs=1))
    message = str(error.value)
    assert "\n" not in message and message.startswith("unknown dmlab level 'rooms_watermaz'")
    assert "did you mean: rooms_watermaze" in message
    with pytest.raises(ModuleNotFoundError):  # a name that may be DeepMind Lab's own level passes the check
        make(EnvConfig(family="dmlab", name="seekavoid_arena_01", num_envs=1))


def test_worker_crash_raises_and_shuts_down_the_others(dmlab_env):
    env = dmlab_env(name="rooms_watermaze,tests/crash_on_step_3,rooms_watermaze", num_envs=3)
    env.reset()
    env.step(np.zeros(3, np.int64))
    env.step(np.zeros(3, np.int64))
    with pytest.raises(DMLabWorkerError) as error:
        env.step(np.zeros(3, np.int64))
    message = str(error.value)
    assert "\n" not in message
    assert "worker 1 (level 'tests/crash_on_step_3') failed: died (exit code 3)" in message
    assert not any(proc.is_alive() for proc in env._procs)
    with pytest.raises(RuntimeError, match="after close"):
        env.step(np.zeros(3, np.int64))


def test_bad_settings_and_missing_module_are_one_line(dmlab_env, monkeypatch):
    with pytest.raises(
        ValueError, match=r"^env.instructions='words' is not valid; accepted: ignore, tokens$"
    ):
        dmlab_env(instructions="words")
    monkeypatch.setattr(dmlab, "LAB_MODULE", "no_such_deepmind_lab")
    with pytest.raises(ModuleNotFoundError, match=r"docs/docker\.md"):
        make(EnvConfig(family="dmlab", name="rooms_watermaze", num_envs=1))
