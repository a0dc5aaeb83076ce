"""Evaluation loop: runs a loaded agent (memory carried across each episode) on one game with envpool.

The stepping is :class:`agent.rollout.Actor`'s (NEXT_STEP autoreset, memory reset on episode starts,
previous action and reward as inputs). A thin env wrapper records what evaluation needs on top:
finished episodes per env (unclipped return, length, frames) and, for the video, the frames of env 0.

Unbiased episode sampling: with ``N`` episodes on ``n = min(N, num_envs)`` envs, env ``i`` contributes its
first ``N // n (+1 for i < N % n)`` episodes, so long episodes are not under-represented (taking the first
``N`` episodes to finish would favour short ones). Episodes are numbered env by env, so episode 0 is env 0's
first episode, the one a video shows.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import envs
from agent.rollout import Actor
from envs.base import VecEnv, clip_reward
from eval.loading import LoadedAgent
from eval.scores import Episode
from eval.video import EpisodeVideo

UNROLL = 32  # agent steps per Actor.rollout call
SEED_STRIDE = 10_000  # env i of evaluation seed s is seeded with s * SEED_STRIDE + i
FULL_ACTION_HINT = (
    "train with env.full_action_space=true (18 actions in every game) to evaluate one agent on several games"
)


@dataclass(frozen=True)
class RunSpec:
    """One (game, seed) evaluation."""

    game: str
    seed: int
    episodes: int
    protocol: str  # Atari protocol preset; ignored by other families
    greedy: bool = False  # argmax instead of sampling the policy
    max_frames: int = 108_000  # per-episode emulator-frame cap (Atari)
    num_envs: int = 16


def require_backend(family: str) -> None:
    """Fail early with one line when a family's simulator is not installed (DMLab needs deepmind_lab)."""
    if family == "dmlab" and importlib.util.find_spec("deepmind_lab") is None:
        raise RuntimeError(
            "DMLab evaluation needs the deepmind_lab Python module, which is not importable here; "
            "build DeepMind Lab (see envs/dmlab.py and its Docker image) and run again"
        )


def env_config(agent: LoadedAgent, spec: RunSpec, num_envs: int):
    """The checkpoint's env config, set up for evaluation of ``spec`` (no life loss, raw rewards)."""
    return dataclasses.replace(
        agent.cfg.env,
        name=spec.game,
        protocol=spec.protocol,
        num_envs=num_envs,
        seed=spec.seed * SEED_STRIDE,
        clip_rewards=False,  # the wrapper clips what the network sees, as in training
        episodic_life=False,
        max_episode_frames=spec.max_frames,
        # a multi-task checkpoint was trained with one 18-action head for every game
        full_action_space=agent.cfg.env.full_action_space or len(agent.own_games) > 1,
    )


def check_compatible(agent: LoadedAgent, env: VecEnv, game: str, protocol: str) -> None:
    """Raise ``ValueError`` (one line) if ``env``'s observations or actions differ from the checkpoint's."""
    trained = ", ".join(agent.own_games)
    if tuple(env.observation_shape) != agent.obs_shape:
        raise ValueError(
            f"game {game!r} gives observations of shape {tuple(env.observation_shape)} but the checkpoint "
            f"(trained on {trained}) expects {agent.obs_shape}"
        )
    if env.num_actions != agent.num_actions:
        hint = f"; {FULL_ACTION_HINT}" if agent.cfg.env.family == "atari" else ""
        raise ValueError(
            f"action-space mismatch: game {game!r} has {env.num_actions} actions under protocol "
            f"{protocol!r} but the checkpoint (trained on {trained}, protocol {agent.cfg.env.protocol!r}) "
            f"has {agent.num_actions}{hint}"
        )


def precheck(agent: LoadedAgent, games: list[str], protocol: str, max_frames: int) -> None:
    """Check every game against the checkpoint before any evaluation starts (one 1-env env each)."""
    require_backend(agent.cfg.env.family)
    for game in games:
        spec = RunSpec(game=game, seed=0, episodes=1, protocol=protocol, max_frames=max_frames)
        env = envs.make(env_config(agent, spec, num_envs=1))
        try:
            check_compatible(agent, env, game, protocol)
        finally:
            env.close()


class _RecordingEnv:
    """VecEnv wrapper: clips rewards for the network as training did, records finished episodes and
    streams env 0's first episode to ``video``."""

    def __init__(self, env: VecEnv, clip: bool, video: EpisodeVideo | None) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.observation_shape = env.observation_shape
        self.observation_dtype = env.observation_dtype
        self.num_actions = env.num_actions
        self.task_names = env.task_names
        self._clip = clip
        self._video = video
        self._video_return = 0.0
        self.finished: list[tuple[int, float, int, int]] = []  # (env index, return, length, frames)

    def reset(self) -> np.ndarray:
        obs = self.env.reset()
        if self._video is not None:
            self._video.add(obs[0], 0.0)
        return obs

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        done = np.asarray(info["episode_done"], bool)
        frames = info.get("episode_frames", info["episode_length"])
        for i in np.flatnonzero(done):
            self.finished.append(
                (int(i), float(info["episode_return"][i]), int(info["episode_length"][i]), int(frames[i]))
            )
        if self._video is not None:
            self._video_return += float(reward[0])
            self._video.add(obs[0], self._video_return)
            if done[0]:
                self._video.close()
                self._video = None
        return obs, clip_reward(reward, self._clip), terminated, truncated, info

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
        self.env.close()


def run_game(
    agent: LoadedAgent,
    spec: RunSpec,
    video: EpisodeVideo | None = None,
    on_episode: Callable[[], None] | None = None,
) -> list[Episode]:
    """Evaluate ``agent`` on ``spec.episodes`` episodes of ``spec.game``; ``on_episode`` ticks progress.

    ``video`` (optional) receives env 0's first episode, frame by frame. Raises ``ValueError`` on an
    observation or action-space mismatch.
    """
    if spec.episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {spec.episodes}")
    n = min(spec.num_envs, spec.episodes)
    quotas = [spec.episodes // n + (i < spec.episodes % n) for i in range(n)]
    env = envs.make(env_config(agent, spec, n))
    try:
        check_compatible(agent, env, spec.game, spec.protocol)
        recorder = _RecordingEnv(env, agent.cfg.env.clip_rewards, video)
        torch.manual_seed(spec.seed)
        device = next(agent.net.parameters()).device
        actor = Actor(recorder, agent.net, device, greedy=spec.greedy)
        per_env: list[list[tuple[float, int, int]]] = [[] for _ in range(n)]
        while any(len(per_env[i]) < quotas[i] for i in range(n)):
            actor.rollout(UNROLL)
            for i, ret, length, frames in recorder.finished:
                if len(per_env[i]) < quotas[i]:
                    per_env[i].append((ret, length, frames))
                    if on_episode is not None:
                        on_episode()
            recorder.finished.clear()
    finally:
        if video is not None:
            video.close()
        env.close()
    protocol = spec.protocol if agent.cfg.env.family == "atari" else "n/a"
    rows = [row for env_rows in per_env for row in env_rows]
    return [
        Episode(spec.game, k, ret, length, frames, protocol, spec.seed)
        for k, (ret, length, frames) in enumerate(rows)
    ]
