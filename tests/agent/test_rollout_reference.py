"""``Actor.rollout`` (buffers written in place) == the list-and-stack loop it replaced, field by field.

The reference below is the loop as it was before the buffers (commit d5bdfe9), on the same ``Actor``
fields: same env, same seed, several unrolls in a row, so episode ends, reset steps, carried memory and
(in the multi-task wrapper) changing task ids and truncations all fall inside unrolls.
"""

from __future__ import annotations

import collections
from dataclasses import fields

import numpy as np
import pytest
import torch

from agent.rollout import Actor, EpisodeStats, Trajectory
from tests.agent.test_rollout import make_actor


@torch.no_grad()
def reference_rollout(self: Actor, unroll_length: int) -> tuple[Trajectory, EpisodeStats]:
    """The previous ``Actor.rollout``, verbatim but for ``self._inputs()`` inlined as ``inputs`` and the
    observation check (no error case here)."""

    def inputs() -> dict[str, torch.Tensor]:
        return {"obs": self.obs, "first": self.first, "prev_action": self.prev_action,
                "prev_reward": self.prev_reward, "task_id": self.task_id}  # fmt: skip

    steps: dict[str, list[torch.Tensor]] = collections.defaultdict(list)
    initial_state = {k: v.clone() for k, v in self.state.items()}
    ep_returns, ep_lengths, ep_tasks = [], [], []
    for _ in range(unroll_length):
        logits, _, self.state = self.net.step(
            self.obs, self.prev_action, self.prev_reward, self.first, self.state
        )
        if self.greedy:
            action = logits.argmax(-1)
        else:
            probs = logits.float().softmax(-1)
            action = torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
        obs, reward, terminated, truncated, info = self.env.step(action.cpu().numpy())
        reset_step = self.prev_done
        reward_t = torch.as_tensor(reward, dtype=torch.float32, device=self.device)
        terminated_t = torch.as_tensor(terminated, device=self.device)
        truncated_t = torch.as_tensor(truncated, device=self.device)
        record = {**inputs(), "action": action, "reward": reward_t, "terminated": terminated_t,
                  "truncated": truncated_t, "mask": (~reset_step).float(),
                  "behaviour_logits": logits.float()}  # fmt: skip
        for key, value in record.items():
            steps[key].append(value)
        done = info["episode_done"]
        if done.any():
            ep_returns.append(np.asarray(info["episode_return"])[done])
            ep_lengths.append(np.asarray(info["episode_length"])[done])
            ep_tasks.append(np.asarray(info["task_id"])[done])
        self.obs = torch.as_tensor(obs, device=self.device)  # (was _checked_obs, which returned this)
        self.first = reset_step
        self.prev_done = (terminated_t | truncated_t) & ~reset_step
        self.prev_action = action
        self.prev_reward = reward_t
        self.task_id = torch.as_tensor(np.asarray(info["task_id"]), dtype=torch.long, device=self.device)
    for key, value in inputs().items():
        steps[key].append(value)
    traj = Trajectory(**{k: torch.stack(v) for k, v in steps.items()}, initial_state=initial_state)
    stats = EpisodeStats(
        returns=np.concatenate(ep_returns) if ep_returns else np.zeros(0),
        lengths=np.concatenate(ep_lengths) if ep_lengths else np.zeros(0, dtype=np.int64),
        task_ids=np.concatenate(ep_tasks) if ep_tasks else np.zeros(0, dtype=np.int64),
    )
    return traj, stats


class TaskSwitchingEnv:
    """CueRecall with a task id per slot that changes every 5 steps and a truncation every 7th step.

    The network never sees the task id (only the trajectory records it), so made-up ids are fine; the
    truncations exercise ``truncated`` -> reset step without a ``terminated``.
    """

    def __init__(self, env) -> None:
        self.env = env
        self.num_envs, self.num_actions = env.num_envs, env.num_actions
        self.observation_shape, self.observation_dtype = env.observation_shape, env.observation_dtype
        self.task_names = ["a", "b", "c"]
        self.t = 0

    def reset(self) -> np.ndarray:
        return self.env.reset()

    def slot_tasks(self) -> np.ndarray:
        return np.arange(self.num_envs, dtype=np.int64) % 3

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.t += 1
        info["task_id"] = (np.arange(self.num_envs, dtype=np.int64) + self.t // 5) % 3
        truncated = truncated | ((np.arange(self.num_envs) + self.t) % 7 == 0) & ~terminated
        return obs, reward, terminated, truncated, info


def assert_same(new: tuple[Trajectory, EpisodeStats], ref: tuple[Trajectory, EpisodeStats]) -> None:
    (traj, stats), (ref_traj, ref_stats) = new, ref
    for f in fields(Trajectory):
        a, b = getattr(traj, f.name), getattr(ref_traj, f.name)
        pairs = [(f"{f.name}.{k}", a[k], b[k]) for k in b] if f.name == "initial_state" else [(f.name, a, b)]
        if f.name == "initial_state":
            assert a.keys() == b.keys()
        for name, x, y in pairs:
            assert (x.dtype, x.shape, x.device) == (y.dtype, y.shape, y.device), name
            assert torch.equal(x, y), name
    for name in ("returns", "lengths", "task_ids"):
        x, y = getattr(stats, name), getattr(ref_stats, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


def carried(actor: Actor) -> dict[str, torch.Tensor]:
    names = ("obs", "first", "prev_action", "prev_reward", "task_id", "prev_done")
    return {**{n: getattr(actor, n) for n in names}, **{f"state.{k}": v for k, v in actor.state.items()}}


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("core", ["gtrxl", "lstm"])
@pytest.mark.parametrize("greedy", [False, True])
@pytest.mark.parametrize("switching", [False, True])
def test_rollout_equals_the_list_and_stack_reference(core, greedy, switching, device):
    actors = []
    for _ in range(2):  # same seed -> same net, same env
        actor = make_actor(core)
        env = TaskSwitchingEnv(actor.env) if switching else actor.env
        actor = Actor(env, actor.net.to(device), torch.device(device))
        actor.greedy = greedy
        actor.generator = torch.Generator(device=device).manual_seed(3)
        actors.append(actor)
    new, ref = actors
    episodes = 0
    for unroll_length in (13, 6, 1, 9):  # odd lengths: episode ends (period 4) fall anywhere
        out, expected = new.rollout(unroll_length), reference_rollout(ref, unroll_length)
        assert_same(out, expected)
        episodes += len(expected[1].returns)
        now, then = carried(new), carried(ref)
        assert now.keys() == then.keys()
        for key in then:
            assert now[key].dtype == then[key].dtype and torch.equal(now[key], then[key]), key
    assert episodes > 0
    if switching:
        assert out[0].truncated.any() and len(out[0].task_id.unique()) == 3


def test_carried_inputs_do_not_alias_the_trajectory():
    """With train.overlap the learner holds unroll k while the actor starts k+1 from its carried inputs:
    writing into one must not change the other."""
    actor = make_actor()
    traj, _ = actor.rollout(5)
    before = {k: v.clone() for k, v in carried(actor).items()}
    for f in fields(Trajectory):
        if f.name != "initial_state":
            getattr(traj, f.name).zero_()
    for key, value in carried(actor).items():
        assert torch.equal(value, before[key]), key
