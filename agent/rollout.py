"""Actor: steps the vectorised env with the network's cached memory and records unrolls.

Environments use NEXT_STEP autoreset (envs/base.py): when step t ends an episode, observation t+1 is
that episode's final observation and step t+1 is a *reset step* whose action the env ignores and whose
next observation starts a new episode. The actor therefore

- feeds the final observation through the core with the old episode's memory (so the learner gets
  V(final obs) for truncation bootstraps),
- marks the reset step with ``mask = 0`` (no policy or value loss on it), and
- marks the following observation ``first = True`` so the core drops all earlier memory.

The core state at the start of each unroll is stored with it, so the learner's ``unroll`` sees exactly
the memory the actor had (``initial_state``; the GTrXL memory is carried across unrolls). So are the
logits the actions were sampled from (``behaviour_logits``): when the actor acts one update behind the
learner (``train.overlap``, agent/overlap.py), they are the behaviour policy the learner corrects for.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

State = dict[str, torch.Tensor]
INPUTS = ("obs", "first", "prev_action", "prev_reward", "task_id")  # core inputs, recorded for steps 0..T


@dataclass
class Trajectory:
    """One unroll of T steps for B envs, time-major; entries at index T are the bootstrap inputs."""

    obs: torch.Tensor  # [T+1, B, *obs_shape]
    first: torch.Tensor  # [T+1, B] bool: obs starts a new episode (memory is reset before it)
    prev_action: torch.Tensor  # [T+1, B] long: action taken before obs (core input)
    prev_reward: torch.Tensor  # [T+1, B] float: training reward received before obs (core input)
    task_id: torch.Tensor  # [T+1, B] long
    action: torch.Tensor  # [T, B] long
    reward: torch.Tensor  # [T, B] float: training reward (clipped if the env clips)
    terminated: torch.Tensor  # [T, B] bool
    truncated: torch.Tensor  # [T, B] bool
    mask: torch.Tensor  # [T, B] float: 0 on reset steps (action ignored by the env)
    initial_state: State  # core state before obs[0], batch-first
    behaviour_logits: torch.Tensor | None = None  # [T, B, A] fp32: the logits the actions were drawn from

    @property
    def unroll_length(self) -> int:
        return self.action.shape[0]

    def select(self, env_index: torch.Tensor) -> Trajectory:
        """The sub-trajectory of the envs in ``env_index`` (for minibatches over envs)."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "initial_state":
                values[f.name] = {k: v[env_index] for k, v in value.items()}
            else:
                values[f.name] = None if value is None else value[:, env_index]
        return Trajectory(**values)

    def steps(self) -> Trajectory:
        """The T steps as T*B independent columns [1, T*B] (no bootstrap row), for a memoryless core.

        Column ``t * B + b`` is step ``t`` of env ``b``; the per-step inputs (obs, first, previous action
        and reward) go with it, so a core without state computes exactly what it did in [T, B].
        """
        T = self.unroll_length
        if self.initial_state:
            raise ValueError("Trajectory.steps() splits time: only a memoryless core (empty state) may")

        def columns(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x[:T].reshape(1, -1, *x.shape[2:])

        values = {f.name: columns(getattr(self, f.name)) for f in fields(self) if f.name != "initial_state"}
        return Trajectory(**values, initial_state={})

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, State]:
        """Arguments of ``AgentNet.unroll`` over all T+1 observations."""
        return self.obs, self.prev_action, self.prev_reward, self.first, self.initial_state


@dataclass
class EpisodeStats:
    """Real (unclipped) episodes that ended during an unroll."""

    returns: np.ndarray  # [E] float64, unclipped
    lengths: np.ndarray  # [E] int
    task_ids: np.ndarray  # [E] int


class Actor:
    """Runs ``net.step`` on a VecEnv and records :class:`Trajectory` unrolls of fixed length.

    ``generator`` draws the actions (default: torch's global generator). An actor on its own thread
    (``train.overlap``) gets its own, so that its draws and the learner's minibatch permutations do not
    interleave in an order the thread scheduler picks: a fixed seed then gives the same run.
    """

    def __init__(
        self,
        env,
        net: torch.nn.Module,
        device: torch.device,
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        self.env = env
        self.net = net
        self.device = device
        self.greedy = greedy
        self.generator = generator
        n = env.num_envs
        self.obs = torch.as_tensor(self._checked_obs(env.reset()), device=device)
        self.first = torch.ones(n, dtype=torch.bool, device=device)
        self.prev_action = torch.zeros(n, dtype=torch.long, device=device)
        self.prev_reward = torch.zeros(n, dtype=torch.float32, device=device)
        tasks = env.slot_tasks() if hasattr(env, "slot_tasks") else np.zeros(n, np.int64)  # multi-task envs
        self.task_id = torch.as_tensor(tasks, dtype=torch.long, device=device)
        self.prev_done = torch.zeros(n, dtype=torch.bool, device=device)  # -> this step is a reset step
        self.state: State = net.initial_state(n, device)

    def _checked_obs(self, obs: np.ndarray) -> np.ndarray:
        """``obs`` itself; a shape that contradicts the env's declared one is a clear error (a buffer row
        would broadcast some wrong shapes silently)."""
        expected = (self.env.num_envs, *self.env.observation_shape)
        if tuple(obs.shape) != expected:
            name = ",".join(self.env.task_names)
            raise ValueError(
                f"env '{name}' returned observations of shape {tuple(obs.shape)}, but declares {expected} "
                "(num_envs, *observation_shape)"
            )
        return obs

    def refresh(self) -> None:
        """Re-project the cached memory with the network's current parameters (after an update)."""
        self.state = self.net.refresh_cache(self.state)

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        """Actions ``[B]`` (long): the argmax when greedy, else one draw from ``softmax(logits)``."""
        if self.greedy:
            return logits.argmax(-1)
        # = Categorical(logits=logits).sample() (same multinomial draw), without its validation
        probs = logits.float().softmax(-1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)

    def _inputs_at(self, buffers: _Buffers, t: int) -> None:
        """Make row ``t`` of the buffers the current core inputs (views on a CPU actor, copies on CUDA)."""
        self.obs, self.first, self.prev_action, self.prev_reward, self.task_id = (
            buffers.tensors[name][t].to(self.device) for name in INPUTS
        )

    @torch.no_grad()
    def rollout(self, unroll_length: int) -> tuple[Trajectory, EpisodeStats]:
        """Act for ``unroll_length`` steps -> (trajectory with bootstrap inputs, finished real episodes).

        Step ``t`` is written into row ``t`` of CPU buffers through numpy views, straight from the
        env's arrays: no per-step tensors for the env's outputs, no lists, no ``torch.stack`` at the end
        (docs/performance.md, collector). The core reads its inputs from the rows the step before wrote.
        """
        T = unroll_length
        initial_state = {k: v.clone() for k, v in self.state.items()}
        buffers = _Buffers(T, self.env.num_envs, self.obs, self.env.num_actions)
        for name in INPUTS:  # row 0: the inputs carried over from the previous unroll
            buffers.tensors[name][0] = getattr(self, name)
        reset_step = self.prev_done.cpu().numpy()  # [B] the env ignores this step's action, starts anew
        episodes = _EpisodeLog()
        for t in range(T):
            logits, _, self.state = self.net.step(
                self.obs, self.prev_action, self.prev_reward, self.first, self.state
            )
            action = self._sample(logits).cpu().numpy()
            obs, reward, terminated, truncated, info = self.env.step(action)
            buffers.record_step(t, action, logits, reset_step, reward, terminated, truncated)
            # the obs after a reset step starts an episode: first[t + 1] = reset_step
            buffers.record_inputs(t + 1, self._checked_obs(obs), reset_step, action, reward, info["task_id"])
            reset_step = (terminated | truncated) & ~reset_step
            episodes.add(info)
            self._inputs_at(buffers, t + 1)
        # the actor's carried inputs are row T's values, but must not alias the trajectory it hands out
        for name in INPUTS:
            setattr(self, name, getattr(self, name).clone())
        self.prev_done = torch.as_tensor(reset_step, dtype=torch.bool).to(self.device)
        traj = Trajectory(
            **{k: v.to(self.device) for k, v in buffers.tensors.items()}, initial_state=initial_state
        )
        return traj, episodes.stats()


class _Buffers:
    """One unroll's ``[T+1, B, ...]`` / ``[T, B, ...]`` trajectory tensors on the CPU, and numpy views of
    the same memory (``arrays``) through which the actor writes each step.

    A numpy row write costs ~0.2 us where a torch index-assign costs ~1.6 us and a ``torch.as_tensor`` of
    the env's array ~1.5 us; the values are the same (same casts). Dtypes as ``Trajectory`` documents; the
    observations keep the env's dtype.
    """

    def __init__(self, unroll_length: int, num_envs: int, obs: torch.Tensor, num_actions: int) -> None:
        T, n = unroll_length, num_envs

        def rows(length: int, dtype: torch.dtype, *shape: int) -> torch.Tensor:
            return torch.empty((length, n, *shape), dtype=dtype)

        self.tensors = {
            "obs": rows(T + 1, obs.dtype, *obs.shape[1:]),
            "first": rows(T + 1, torch.bool),
            "prev_action": rows(T + 1, torch.long),
            "prev_reward": rows(T + 1, torch.float32),
            "task_id": rows(T + 1, torch.long),
            "action": rows(T, torch.long),
            "reward": rows(T, torch.float32),
            "terminated": rows(T, torch.bool),
            "truncated": rows(T, torch.bool),
            "mask": rows(T, torch.float32),
            "behaviour_logits": rows(T, torch.float32, num_actions),
        }
        self.arrays = {name: tensor.numpy() for name, tensor in self.tensors.items()}

    def record_step(
        self,
        t: int,
        action: np.ndarray,
        logits: torch.Tensor,
        reset_step: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        """Row ``t`` of the per-step fields; ``reset_step`` [B] bool: the env ignored ``action`` there."""
        rows = self.arrays
        rows["action"][t] = action
        rows["behaviour_logits"][t] = logits.float().cpu().numpy()
        rows["mask"][t] = ~reset_step  # 1.0, or 0.0 on reset steps
        rows["reward"][t] = reward  # float32 by the write, as torch.as_tensor(reward, dtype=float32)
        rows["terminated"][t] = terminated
        rows["truncated"][t] = truncated

    def record_inputs(
        self,
        t: int,
        obs: np.ndarray,
        first: np.ndarray,
        prev_action: np.ndarray,
        prev_reward: np.ndarray,
        task_id: np.ndarray,
    ) -> None:
        """Row ``t`` of the core inputs (``INPUTS``)."""
        rows = self.arrays
        rows["obs"][t] = obs
        rows["first"][t] = first
        rows["prev_action"][t] = prev_action
        rows["prev_reward"][t] = prev_reward
        rows["task_id"][t] = task_id


class _EpisodeLog:
    """Collects the real episodes that end during one unroll (numpy only, and only on steps where one
    ends: most steps end none)."""

    def __init__(self) -> None:
        self.returns: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self.task_ids: list[np.ndarray] = []

    def add(self, info: dict[str, np.ndarray]) -> None:
        done = info["episode_done"]
        if done.any():
            self.returns.append(np.asarray(info["episode_return"])[done])
            self.lengths.append(np.asarray(info["episode_length"])[done])
            self.task_ids.append(np.asarray(info["task_id"])[done])

    def stats(self) -> EpisodeStats:
        return EpisodeStats(
            returns=np.concatenate(self.returns) if self.returns else np.zeros(0),
            lengths=np.concatenate(self.lengths) if self.lengths else np.zeros(0, dtype=np.int64),
            task_ids=np.concatenate(self.task_ids) if self.task_ids else np.zeros(0, dtype=np.int64),
        )
