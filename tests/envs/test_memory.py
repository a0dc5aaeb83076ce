"""Memory tasks: spaces of minigrid / popgym / cue recall, and cue recall's memory gap."""

from __future__ import annotations

import numpy as np
import pytest

from envs import MINIGRID_MEMORY_TASKS, POPGYM_TASKS

# popgym task family -> (observation size after one-hot flattening, number of actions) per level
POPGYM_SIZES = {
    "RepeatFirst": (4, 4),
    "RepeatPrevious": (4, 4),
    "Autoencode": (6, 4),
    "CountRecall": (4, 27),
    "CountRecallMedium": (8, 27),
    "CountRecallHard": (26, 17),
}


def expected_popgym_sizes(task: str) -> tuple[int, int]:
    if task in POPGYM_SIZES:
        return POPGYM_SIZES[task]
    return POPGYM_SIZES[task.removesuffix("Easy").removesuffix("Medium").removesuffix("Hard")]


def step_randomly(env, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Random actions for ``steps`` steps; returns the last obs and the sum of reported episode returns."""
    rng = np.random.default_rng(0)
    obs = env.reset()
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(rng.integers(0, env.num_actions, env.num_envs))
        assert obs.shape == (env.num_envs, *env.observation_shape) and obs.dtype == env.observation_dtype
        assert reward.shape == terminated.shape == truncated.shape == (env.num_envs,)
        assert set(info) >= {"episode_done", "episode_return", "episode_length", "task_id"}
    return obs, info


@pytest.mark.parametrize("task", MINIGRID_MEMORY_TASKS)
def test_minigrid_memory_tasks_step(make_env, task):
    env = make_env(family="minigrid", name=task, num_envs=2)
    assert env.observation_shape == (3, 7, 7) and env.observation_dtype == np.uint8 and env.num_actions == 7
    obs, _ = step_randomly(env, 5)
    assert obs[:, 0].max() > 1  # object-index channel shows walls/objects, not just empty cells


@pytest.mark.parametrize("task", POPGYM_TASKS)
def test_popgym_tasks_step(make_env, task):
    env = make_env(family="popgym", name=task, num_envs=2)
    size, num_actions = expected_popgym_sizes(task)
    assert env.observation_shape == (size,) and env.observation_dtype == np.float32
    assert env.num_actions == num_actions
    obs, _ = step_randomly(env, 5)
    assert set(np.unique(obs)) <= {0.0, 1.0}  # one-hot


def test_popgym_episode_stats_match_the_rewards(make_env):
    env = make_env(family="popgym", name="RepeatPreviousEasy", num_envs=3, clip_rewards=False)
    env.reset()
    running = np.zeros(3)
    ended = 0
    for _ in range(120):
        _, reward, _, _, info = env.step(np.zeros(3, int))
        running += reward
        done = info["episode_done"]
        np.testing.assert_allclose(info["episode_return"][done], running[done])
        assert (info["episode_length"][done] == 51).all()  # RepeatPreviousEasy episodes last 52 obs
        running[done] = 0.0
        ended += done.sum()
    assert ended >= 3


def test_cue_recall_spaces(make_env):
    env = make_env(family="memory", name="CueRecall-L6-K3", num_envs=4)
    assert env.observation_shape == (4,) and env.observation_dtype == np.float32 and env.num_actions == 3
    obs = env.reset()
    assert obs.shape == (4, 4) and obs.dtype == np.float32 and (obs[:, :3].sum(axis=1) == 1).all()


def play_cue_recall(env, policy: str, episodes_per_env: int) -> np.ndarray:
    """Returns every finished episode's return under a ``"memory"`` or ``"constant"`` policy."""
    obs = env.reset()
    remembered = obs[:, :-1].argmax(axis=1)
    returns = []
    while len(returns) < episodes_per_env * env.num_envs:
        cue_shown = obs[:, :-1].sum(axis=1) == 1
        remembered = np.where(cue_shown, obs[:, :-1].argmax(axis=1), remembered)
        actions = remembered if policy == "memory" else np.zeros(env.num_envs, int)
        obs, _, _, _, info = env.step(actions)
        returns.extend(info["episode_return"][info["episode_done"]])
    return np.array(returns)


def test_cue_recall_rewards_memory_only(make_env):
    env = make_env(family="memory", name="CueRecall-L8-K4", num_envs=64, seed=1)
    memory_returns = play_cue_recall(env, "memory", episodes_per_env=5)
    assert (memory_returns == 1.0).all()
    constant_returns = play_cue_recall(env, "constant", episodes_per_env=20)
    assert abs(constant_returns.mean() - 0.25) < 0.04  # 1/K, with 1280 episodes (sd ~0.012)


def test_cue_recall_episode_length_and_seeding(make_env):
    env = make_env(family="memory", name="CueRecall-L5", num_envs=16, seed=3)
    same = make_env(family="memory", name="CueRecall-L5", num_envs=16, seed=3)
    other = make_env(family="memory", name="CueRecall-L5", num_envs=16, seed=4)
    first, first_same, first_other = env.reset(), same.reset(), other.reset()
    np.testing.assert_array_equal(first, first_same)
    assert not np.array_equal(first, first_other)
    assert len({tuple(row) for row in first}) > 1  # envs draw distinct cues
    for t in range(5):
        _, _, terminated, _, info = env.step(np.zeros(16, int))
        assert terminated.all() == (t == 4)
    assert (info["episode_length"] == 5).all()
