"""Atari: the 57 games under both protocols, raw vs clipped rewards, real episodes under episodic_life."""

from __future__ import annotations

import re

import numpy as np
import pytest

from envs import ATARI57, PROTOCOLS


def ale_action_counts(game: str) -> dict[str, int]:
    """Independent oracle: the game's minimal and legal (full) action set sizes according to ale-py."""
    import ale_py
    from ale_py import roms

    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.loadROM(roms.get_rom_path(re.sub(r"(?<!^)(?=[A-Z])", "_", game).lower()))
    return {"dqn": len(ale.getMinimalActionSet()), "machado": len(ale.getLegalActionSet())}


def test_suite_is_the_57_distinct_games():
    assert len(ATARI57) == len(set(ATARI57)) == 57


@pytest.mark.parametrize("game", ATARI57)
def test_every_game_constructs_under_both_protocols(make_env, game):
    expected_actions = ale_action_counts(game)
    assert expected_actions["machado"] == (9 if game == "Skiing" else 18)  # Skiing has no FIRE
    for protocol in PROTOCOLS:
        env = make_env(family="atari", name=game, protocol=protocol, num_threads=1)
        obs = env.reset()
        assert env.observation_shape == (4, 84, 84) and env.observation_dtype == np.uint8
        assert obs.shape == (1, 4, 84, 84) and obs.dtype == np.uint8
        assert env.num_actions == expected_actions[protocol], protocol
        assert env.task_names == [game]
        obs, reward, terminated, truncated, info = env.step(np.array([env.num_actions - 1]))
        assert obs.shape == (1, 4, 84, 84) and reward.dtype == np.float32
        assert terminated.dtype == truncated.dtype == bool
        assert info["task_id"].tolist() == [0]
        env.close()


def test_machado_protocol_refuses_episodic_life(make_env):
    with pytest.raises(ValueError, match="episodic_life"):
        make_env(family="atari", name="Pong", protocol="machado", episodic_life=True)


def run_episode(env, actions: np.ndarray):
    """Step one env with ``actions`` until its first real episode end; returns per-step arrays."""
    env.reset()
    rewards, terminated, done, info_at_end = [], [], [], None
    for action in actions:
        _, reward, term, trunc, info = env.step(np.array([action]))
        rewards.append(reward[0])
        terminated.append(term[0] | trunc[0])
        done.append(info["episode_done"][0])
        if info["episode_done"][0]:
            info_at_end = {key: value[0] for key, value in info.items()}
            break
    assert info_at_end is not None, "no real episode end within the action budget"
    return np.array(rewards), np.array(terminated), np.array(done), info_at_end


def test_reported_return_is_unclipped_while_training_reward_is_clipped(make_env):
    actions = np.random.default_rng(0).integers(0, 6, size=5000)
    settings = dict(family="atari", name="SpaceInvaders", seed=3)
    raw, _, _, raw_end = run_episode(make_env(**settings, clip_rewards=False), actions)
    clipped, _, _, clipped_end = run_episode(make_env(**settings, clip_rewards=True), actions)
    assert np.abs(raw).max() > 1  # the game pays more than 1 somewhere, so clipping matters
    np.testing.assert_array_equal(clipped, np.clip(raw, -1, 1))
    assert clipped_end["episode_return"] == raw_end["episode_return"] == raw.sum()
    assert clipped_end["episode_length"] == len(raw)
    assert clipped_end["episode_frames"] == 4 * len(raw)


def test_episodic_life_ends_training_episodes_but_reports_the_whole_game(make_env):
    import envpool

    seed, actions = 5, np.random.default_rng(1).integers(0, 6, size=5000)
    env = make_env(family="atari", name="SpaceInvaders", seed=seed, episodic_life=True)
    rewards, terminated, done, end = run_episode(env, actions)
    # Oracle: envpool itself, same seed and actions, raw rewards, until its own game-over flag.
    oracle = envpool.make("SpaceInvaders-v5", env_type="gymnasium", num_envs=1, seed=seed, episodic_life=True)
    oracle.reset()
    raw_sum, applied = 0.0, 0
    for action in actions[: len(rewards)]:
        _, raw, _, trunc, info = oracle.step(np.array([action]))
        raw_sum += float(raw[0])
        game_over = bool(info["terminated"][0] | trunc[0])
    oracle.close()
    assert game_over
    assert terminated[:-1].sum() >= 2  # life losses ended training episodes before the game over
    assert done.sum() == 1 and done[-1]  # ...but only the game over is a real episode end
    assert np.abs(rewards).max() <= 1 and end["episode_return"] == raw_sum > len(rewards[rewards > 0])
    applied = len(rewards) - terminated[:-1].sum()  # each life loss is followed by an autoreset step
    assert end["episode_length"] == applied


def test_time_limit_truncates_the_real_episode(make_env):
    env = make_env(family="atari", name="Pong", max_episode_frames=400)
    _, _, done, end = run_episode(env, np.zeros(1000, int))
    assert len(done) == 100 and end["episode_length"] == 100 and end["episode_frames"] == 400
