"""``env.task_sampling=episode``: Atari suite slots draw a new game at each real episode end."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from configs.schema import ConfigError, EnvConfig
from envs.atari import AtariVecEnv
from envs.multitask import TaskResamplingVecEnv

GAMES = ["Pong", "Breakout", "Boxing"]  # mean pixel ~106, ~42, ~126: every frame tells its game
STEPS_PER_EPISODE = 5  # max_episode_frames=20 at frame skip 4: every episode is cut after 5 steps
CYCLE = STEPS_PER_EPISODE + 1  # and the autoreset step that starts the next one


def suite_config(**overrides: object) -> EnvConfig:
    values: dict[str, object] = dict(
        family="atari", name=",".join(GAMES), num_envs=3, seed=3, max_episode_frames=4 * STEPS_PER_EPISODE
    )
    values["task_sampling"] = "episode"
    return EnvConfig(**{**values, **overrides})


def run(cfg: EnvConfig, episodes: int) -> list[tuple]:
    """Make the env, reset, step ``episodes`` episodes with fixed random actions, close; the steps."""
    env = envs.make(cfg)
    actions = np.random.default_rng(0).integers(0, 18, size=(episodes * CYCLE, cfg.num_envs))
    try:
        env.reset()
        return [env.step(a) for a in actions]
    finally:
        env.close()


def tasks(trace: list[tuple]) -> np.ndarray:
    return np.array([info["task_id"] for *_, info in trace])  # [T, N]


@pytest.fixture(scope="module")
def fixed_trace() -> list[tuple]:
    return run(suite_config(task_sampling="fixed"), 1)  # slot k plays game k


@pytest.fixture(scope="module")
def episode_trace() -> list[tuple]:
    return run(suite_config(), 6)


def test_slots_change_game_only_after_an_episode_end_and_task_id_names_the_game_played(
    fixed_trace, episode_trace
):
    brightness = fixed_trace[0][0].mean(axis=(1, 2, 3))  # [game]: the mean pixel tells a frame's game
    task = tasks(episode_trace)
    ended = np.array([info["episode_done"] for *_, info in episode_trace])
    for t, (obs, reward, terminated, truncated, info) in enumerate(episode_trace):
        played = np.abs(obs.mean(axis=(1, 2, 3))[:, None] - brightness).argmin(1)
        np.testing.assert_array_equal(played, info["task_id"], err_msg=f"step {t}")
        if t == 0:
            continue
        changed = task[t] != task[t - 1]
        assert not (changed & ~ended[t - 1]).any(), f"step {t}: a slot changed game mid-episode"
        switched = np.flatnonzero(ended[t - 1])  # the step after an episode end starts the next one
        assert (reward[switched] == 0).all() and not (terminated | truncated)[switched].any()
        assert all((obs[i] == obs[i, :1]).all() for i in switched)  # a reset frame stack
    assert (task[1:] != task[:-1]).sum() >= 6, "slots should have changed game"
    assert all(len(set(task[:, slot])) >= 2 for slot in range(3))
    # Every episode, on a kept, reused or newly made emulator, is cut after exactly 5 applied steps.
    lengths = np.array([info["episode_length"] for *_, info in episode_trace])[ended]
    assert len(lengths) == 18 and (lengths == STEPS_PER_EPISODE).all()


def test_first_episodes_are_those_of_the_fixed_layout(fixed_trace, episode_trace):
    for t, (fixed, episode) in enumerate(zip(fixed_trace[:STEPS_PER_EPISODE], episode_trace)):
        for a, b in zip(fixed[:4], episode[:4]):  # obs, reward, terminated, truncated
            np.testing.assert_array_equal(a, b, err_msg=f"step {t}")
        for key, value in fixed[4].items():
            np.testing.assert_array_equal(value, episode[4][key], err_msg=f"step {t}: {key}")


def test_same_seed_same_games_and_frames(episode_trace):
    again = run(suite_config(), 4)
    for t, (a, b) in enumerate(zip(again, episode_trace)):
        np.testing.assert_array_equal(a[0], b[0], err_msg=f"step {t}")
        np.testing.assert_array_equal(a[4]["task_id"], b[4]["task_id"], err_msg=f"step {t}")
    other_seed = tasks(run(suite_config(seed=4), 2))
    assert not np.array_equal(other_seed, tasks(episode_trace)[: len(other_seed)])


def test_live_emulators_stay_bounded(monkeypatch):
    made, closed = [], []
    make, close = TaskResamplingVecEnv._make, AtariVecEnv.close
    monkeypatch.setattr(TaskResamplingVecEnv, "_make", lambda self, *a: made.append(1) or make(self, *a))
    monkeypatch.setattr(AtariVecEnv, "close", lambda self: closed.append(1) or close(self))
    env = TaskResamplingVecEnv(suite_config(num_envs=2), GAMES, max_idle=1)
    try:
        assert env.max_emulators == 3
        env.reset()
        for t, action in enumerate(np.random.default_rng(0).integers(0, 18, size=(5 * CYCLE, 2))):
            env.step(action)
            assert env.num_emulators <= 3, f"step {t}"
            assert len(made) - len(closed) == env.num_emulators, f"step {t}"
        assert len(closed) >= 2  # idle emulators beyond the bound were closed
    finally:
        env.close()
    assert len(closed) == len(made)


def test_fewer_slots_than_games_and_one_game():
    env = envs.make(suite_config(num_envs=1))
    try:
        assert env.num_envs == 1 and env.task_names == GAMES
        assert (env.max_idle, env.max_emulators) == (1 + 3, 1 + 1 + 3)  # default: num_envs + games idle
    finally:
        env.close()
    single = envs.make(suite_config(name="Pong"))  # one game: nothing to draw
    try:
        assert isinstance(single, AtariVecEnv)
    finally:
        single.close()
    with pytest.raises(ValueError, match=r"env\.task_sampling=episode"):
        envs.make(suite_config(num_envs=1, task_sampling="fixed"))


def test_bad_task_sampling_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"env.task_sampling='game'.*accepted values: fixed, episode$"):
        suite_config(task_sampling="game")
    with pytest.raises(ConfigError, match=r"env.task_sampling='episode' needs env.family='atari'") as err:
        EnvConfig(family="dmlab", name="dmlab30", task_sampling="episode")
    assert "\n" not in str(err.value)
