"""Env slots split over torchrun ranks (``envs.make(cfg, slots)``): the shards together are the whole env."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import envs
import envs.dmlab as dmlab
from agent.rollout import Actor
from configs.schema import EnvConfig

SUITE = EnvConfig(
    family="atari", name="Pong,Breakout,Boxing", num_envs=6, num_threads=1, max_episode_frames=200
)


def test_suite_shards_step_exactly_like_the_whole_suite():
    whole = envs.make(SUITE)
    shards = [envs.make(SUITE, range(0, 4)), envs.make(SUITE, range(4, 6))]
    try:
        assert [s.task_names for s in shards] == [whole.task_names] * 2  # every rank keeps the full task list
        assert np.array_equal(np.concatenate([s.slot_tasks() for s in shards]), whole.slot_tasks())
        assert np.array_equal(np.concatenate([s.reset() for s in shards]), whole.reset())
        rng = np.random.default_rng(0)
        for _ in range(70):  # 200 frames = 50 steps: the episodes end and autoreset on the way
            actions = rng.integers(0, 18, 6)
            want = whole.step(actions)
            got = [shards[0].step(actions[:4]), shards[1].step(actions[4:])]
            for k in range(4):
                assert np.array_equal(np.concatenate([g[k] for g in got]), want[k])
            for key in ("task_id", "episode_done", "episode_return"):
                assert np.array_equal(np.concatenate([g[4][key] for g in got]), want[4][key]), key
    finally:
        for env in [whole, *shards]:
            env.close()


def test_resampling_shards_draw_independent_game_streams():
    cfg = EnvConfig(family="atari", name="Pong,Breakout,Boxing", num_envs=4, task_sampling="episode")
    a, b = envs.make(cfg, range(0, 2)), envs.make(cfg, range(2, 4))
    try:
        assert list(a.slot_tasks()) == [0, 0] and list(b.slot_tasks()) == [1, 2]  # the grouped layout
        draws = [int(s._game_rng.integers(1 << 30)) for s in (a, b)]
        assert draws[0] != draws[1], "two ranks would draw the same sequence of games"
    finally:
        a.close()
        b.close()


def test_dmlab_levels_are_spread_over_the_ranks(monkeypatch):
    monkeypatch.setattr(dmlab, "LAB_MODULE", "tests.envs.fake_deepmind_lab")
    levels = "rooms_watermaze,explore_goal_locations_small,lasertag_one_opponent_small"
    cfg = EnvConfig(family="dmlab", name=levels, num_envs=4)
    shard = envs.make(cfg, range(2, 4))
    try:
        # global workers 2 and 3: level i mod 3
        assert shard.levels == ["lasertag_one_opponent_small", "rooms_watermaze"]
        assert list(shard.slot_tasks()) == [2, 0] and len(shard.task_names) == 3
    finally:
        shard.close()


def test_one_task_shards_get_distinct_seeds_and_bad_slots_are_one_line_errors():
    cfg = EnvConfig(family="memory", name="CueRecall-L8", num_envs=4)
    a, b = envs.make(cfg, range(0, 2)), envs.make(cfg, range(2, 4))
    assert a.num_envs == b.num_envs == 2
    assert not np.array_equal(
        np.stack([a.reset() for _ in range(4)]), np.stack([b.reset() for _ in range(4)])
    )
    with pytest.raises(ValueError, match=r"env slots range\(2, 6\) are not a non-empty part of range\(4\)"):
        envs.make(cfg, range(2, 6))


def test_the_actor_starts_each_slot_with_its_own_task():
    env = envs.make(SUITE, range(2, 6))

    class Net(torch.nn.Module):
        def initial_state(self, n, device=None):
            return {}

    try:
        assert Actor(env, Net(), torch.device("cpu")).task_id.tolist() == [1, 1, 2, 2]
    finally:
        env.close()
