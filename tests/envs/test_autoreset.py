"""NEXT_STEP autoreset for every family: after a done, the next step ignores its action, returns reward 0,
not done, and the first observation of a new episode."""

from __future__ import annotations

import numpy as np
import pytest

# (EnvConfig overrides, steps enough for every env to finish at least one episode)
FAMILIES = {
    "atari": (dict(family="atari", name="Pong", max_episode_frames=60), 40),
    "atari-episodic-life": (dict(family="atari", name="Breakout", episodic_life=True), 400),
    "minigrid": (dict(family="minigrid", name="MemoryS7"), 300),
    "popgym": (dict(family="popgym", name="RepeatPreviousEasy"), 120),
    "memory": (dict(family="memory", name="CueRecall-L3"), 10),
}


def rollout(env, actions: np.ndarray) -> list[tuple]:
    """Step with ``actions [T, N]``; returns the list of ``(obs, reward, terminated, truncated, info)``."""
    env.reset()
    return [env.step(a) for a in actions]


@pytest.mark.parametrize("family", FAMILIES)
def test_step_after_done_is_a_fresh_episode_and_ignores_the_action(make_env, family):
    overrides, steps = FAMILIES[family]
    twin_a = make_env(**overrides, num_envs=2, seed=7)
    twin_b = make_env(**overrides, num_envs=2, seed=7)
    actions = np.random.default_rng(0).integers(0, twin_a.num_actions, size=(steps, 2))
    # Twin b gets different actions exactly on the steps right after a done of twin a (which it mirrors).
    trace_a = rollout(twin_a, actions)
    done = np.array([term | trunc for _, _, term, trunc, _ in trace_a])
    after_done = np.zeros_like(done)
    after_done[1:] = done[:-1]
    assert after_done.any(), "no episode ended; raise the step budget"
    other = np.where(after_done, (actions + 1) % twin_a.num_actions, actions)
    trace_b = rollout(twin_b, other)
    for t in range(steps):
        obs_a, reward_a, term_a, trunc_a, _ = trace_a[t]
        obs_b, reward_b, *_ = trace_b[t]
        np.testing.assert_array_equal(obs_a, obs_b, err_msg=f"step {t}: the ignored action changed the obs")
        np.testing.assert_array_equal(reward_a, reward_b)
        reset = after_done[t]
        assert (reward_a[reset] == 0).all() and not term_a[reset].any() and not trunc_a[reset].any()


def test_autoreset_obs_starts_an_episode(make_env):
    """Atari: the obs after a done is a reset frame stack (4 equal frames); cue recall: it shows a cue."""
    atari = make_env(family="atari", name="Pong", max_episode_frames=400)
    atari.reset()
    for _ in range(100):
        obs, _, _, truncated, _ = atari.step(np.array([2]))  # paddle up: the frames differ
    assert truncated[0] and not (obs[0] == obs[0, :1]).all()  # the final obs has moved frames
    obs, *_ = atari.step(np.zeros(1, int))
    assert (obs[0] == obs[0, :1]).all()

    cue = make_env(family="memory", name="CueRecall-L2", num_envs=4)
    cue.reset()
    cue.step(np.zeros(4, int))
    final, _, terminated, _, _ = cue.step(np.zeros(4, int))
    assert terminated.all() and (final == 0).all()
    first, reward, terminated, _, _ = cue.step(np.zeros(4, int))
    assert (reward == 0).all() and not terminated.any() and (first[:, :4].sum(axis=1) == 1).all()
