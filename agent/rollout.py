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

import collections
from dataclasses import dataclass, fields

import numpy as np
import torch

State = dict[str, torch.Tensor]


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
        self.obs = self._checked_obs(env.reset())
        self.first = torch.ones(n, dtype=torch.bool, device=device)
        self.prev_action = torch.zeros(n, dtype=torch.long, device=device)
        self.prev_reward = torch.zeros(n, dtype=torch.float32, device=device)
        tasks = env.slot_tasks() if hasattr(env, "slot_tasks") else np.zeros(n, np.int64)  # multi-task envs
        self.task_id = torch.as_tensor(tasks, dtype=torch.long, device=device)
        self.prev_done = torch.zeros(n, dtype=torch.bool, device=device)  # -> this step is a reset step
        self.state: State = net.initial_state(n, device)

    def _checked_obs(self, obs: np.ndarray) -> torch.Tensor:
        """Observations as a tensor; a shape that contradicts the env's declared one is a clear error."""
        expected = (self.env.num_envs, *self.env.observation_shape)
        if tuple(obs.shape) != expected:
            name = ",".join(self.env.task_names)
            raise ValueError(
                f"env '{name}' returned observations of shape {tuple(obs.shape)}, but declares {expected} "
                "(num_envs, *observation_shape)"
            )
        return torch.as_tensor(obs, device=self.device)

    def refresh(self) -> None:
        """Re-project the cached memory with the network's current parameters (after an update)."""
        self.state = self.net.refresh_cache(self.state)

    def _inputs(self) -> dict[str, torch.Tensor]:
        """The core inputs for the current observation (recorded for steps 0..T)."""
        return {
            "obs": self.obs,
            "first": self.first,
            "prev_action": self.prev_action,
            "prev_reward": self.prev_reward,
            "task_id": self.task_id,
        }

    @torch.no_grad()
    def rollout(self, unroll_length: int) -> tuple[Trajectory, EpisodeStats]:
        """Act for ``unroll_length`` steps -> (trajectory with bootstrap inputs, finished real episodes)."""
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
                # = Categorical(logits=logits).sample() (same multinomial draw), without its validation
                probs = logits.float().softmax(-1)
                action = torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
            obs, reward, terminated, truncated, info = self.env.step(action.cpu().numpy())
            reset_step = self.prev_done  # the env ignored this action and started a new episode
            reward_t = torch.as_tensor(reward, dtype=torch.float32, device=self.device)
            terminated_t = torch.as_tensor(terminated, device=self.device)
            truncated_t = torch.as_tensor(truncated, device=self.device)
            record = {
                **self._inputs(),
                "action": action,
                "reward": reward_t,
                "terminated": terminated_t,
                "truncated": truncated_t,
                "mask": (~reset_step).float(),
                "behaviour_logits": logits.float(),
            }
            for key, value in record.items():
                steps[key].append(value)

            done = info["episode_done"]
            if done.any():
                ep_returns.append(np.asarray(info["episode_return"])[done])
                ep_lengths.append(np.asarray(info["episode_length"])[done])
                ep_tasks.append(np.asarray(info["task_id"])[done])
            self.obs = self._checked_obs(obs)
            self.first = reset_step
            self.prev_done = (terminated_t | truncated_t) & ~reset_step
            self.prev_action = action
            self.prev_reward = reward_t
            self.task_id = torch.as_tensor(np.asarray(info["task_id"]), dtype=torch.long, device=self.device)
        for key, value in self._inputs().items():  # bootstrap inputs at index T
            steps[key].append(value)
        traj = Trajectory(**{k: torch.stack(v) for k, v in steps.items()}, initial_state=initial_state)
        stats = EpisodeStats(
            returns=np.concatenate(ep_returns) if ep_returns else np.zeros(0),
            lengths=np.concatenate(ep_lengths) if ep_lengths else np.zeros(0, dtype=np.int64),
            task_ids=np.concatenate(ep_tasks) if ep_tasks else np.zeros(0, dtype=np.int64),
        )
        return traj, stats
