"""Atari 2600 through envpool: the Atari-57 suite and the two evaluation protocols as data.

Observations are uint8 ``[N, frame_stack, image_size, image_size]`` grey frames (max-pooled over the last two
frames of each skip, as in DQN). Rewards and episode ends are taken *raw* from envpool (its ``reward_clip``
and time limit are driven by us), so ``info["episode_return"]`` is the unclipped game score of a real game
over, whatever ``clip_rewards`` and ``episodic_life`` do to the training signal.

envpool 1.2.5 behaviour this module relies on (checked in the tests):
* ``info["terminated"]`` is 1 only at a real game over, even when ``episodic_life`` makes a life loss
  ``terminated``; the step after a life loss is an autoreset step (reward 0, action ignored) that does not
  restart the game.
* ``truncated`` is set when the agent-step counter reaches ``max_episode_steps``; the counter runs across
  life losses, so the cap applies to the real episode.
* the autoreset step after a life loss replays the protocol's no-op start (and FIRE) without restarting
  the game; rewards earned during those no-ops are not reported (envpool discards them).
* the "full" action set is ALE's legal set: 18 actions for every game except Skiing (9, no FIRE button).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from configs.schema import EnvConfig
from envs.base import EpisodeTracker, Info, StepResult, check_actions, clip_reward, unknown_name_error

# The 57 games of the Atari-57 suite (Bellemare et al. 2013; Mnih et al. 2015; Badia et al. 2020).
ATARI57: list[str] = [
    "Alien", "Amidar", "Assault", "Asterix", "Asteroids", "Atlantis", "BankHeist", "BattleZone",
    "BeamRider", "Berzerk", "Bowling", "Boxing", "Breakout", "Centipede", "ChopperCommand", "CrazyClimber",
    "Defender", "DemonAttack", "DoubleDunk", "Enduro", "FishingDerby", "Freeway", "Frostbite", "Gopher",
    "Gravitar", "Hero", "IceHockey", "Jamesbond", "Kangaroo", "Krull", "KungFuMaster", "MontezumaRevenge",
    "MsPacman", "NameThisGame", "Phoenix", "Pitfall", "Pong", "PrivateEye", "Qbert", "Riverraid",
    "RoadRunner", "Robotank", "Seaquest", "Skiing", "Solaris", "SpaceInvaders", "StarGunner", "Surround",
    "Tennis", "TimePilot", "Tutankham", "UpNDown", "Venture", "VideoPinball", "WizardOfWor", "YarsRevenge",
    "Zaxxon",
]  # fmt: skip


@dataclass(frozen=True)
class AtariProtocol:
    """An evaluation protocol: the envpool settings that define it.

    The episode cap (108k emulator frames = 30 minutes), frame size and stack come from ``EnvConfig``
    (``max_episode_frames``, ``image_size``, ``frame_stack``), whose defaults are the values both protocols
    use; ``clip_rewards`` and ``episodic_life`` are training-time choices, also from ``EnvConfig``.
    """

    noop_max: int  # up to this many no-op actions after each reset (random starts)
    frame_skip: int  # emulator frames per agent step (action repeat, max-pool of the last two)
    repeat_action_probability: float  # sticky actions
    full_action_space: bool  # 18 actions instead of the game's minimal set
    use_fire_reset: bool  # press FIRE after reset in games that need it
    allows_episodic_life: bool  # False: the protocol forbids life-loss signals

    def envpool_kwargs(self) -> dict[str, Any]:
        """The envpool ``make`` keyword arguments of this protocol."""
        kwargs = asdict(self)
        del kwargs["allows_episodic_life"]
        return kwargs


PROTOCOLS: dict[str, AtariProtocol] = {
    # Mnih et al. 2015 (Nature DQN): up to 30 no-op starts, action repeat 4, minimal action set.
    "dqn": AtariProtocol(
        noop_max=30,
        frame_skip=4,
        repeat_action_probability=0.0,
        full_action_space=False,
        use_fire_reset=True,
        allows_episodic_life=True,
    ),
    # Machado et al. 2018: sticky actions (0.25), full 18-action set, no no-op starts, no life signal.
    # Frame skip 4 as in ALE v5 / Dopamine (the paper's own experiments used 5).
    "machado": AtariProtocol(
        noop_max=1,  # envpool's minimum: 1 means no random no-ops
        frame_skip=4,
        repeat_action_probability=0.25,
        full_action_space=True,
        use_fire_reset=False,
        allows_episodic_life=False,
    ),
}


def envpool_task_id(name: str) -> str:
    """``"Pong"`` or ``"Pong-v5"`` -> ``"Pong-v5"``; raises ``ValueError`` with close matches otherwise."""
    game = name.removesuffix("-v5")
    if game not in ATARI57:
        raise unknown_name_error("atari game", name, ATARI57)
    return f"{game}-v5"


class AtariVecEnv:
    """envpool Atari behind the :class:`envs.base.VecEnv` protocol (see the module docstring)."""

    def __init__(self, cfg: EnvConfig) -> None:
        import envpool  # heavy import (registers ~1600 tasks); only when an Atari env is made

        protocol = PROTOCOLS[cfg.protocol]
        if cfg.full_action_space:  # 18 actions whatever the protocol (multi-task training)
            protocol = dataclasses.replace(protocol, full_action_space=True)
        if cfg.episodic_life and not protocol.allows_episodic_life:
            raise ValueError(
                f"env.episodic_life=True conflicts with env.protocol={cfg.protocol!r} "
                "(no life-loss signal in that protocol); set env.episodic_life=false"
            )
        task_id = envpool_task_id(cfg.name)
        self._frame_skip = protocol.frame_skip
        self._clip = cfg.clip_rewards
        self._env = envpool.make(
            task_id,
            env_type="gymnasium",
            num_envs=cfg.num_envs,
            num_threads=cfg.num_threads,
            seed=cfg.seed,  # env i is seeded with seed + i
            episodic_life=cfg.episodic_life,
            reward_clip=False,  # we clip ourselves and keep the raw reward for the episode return
            max_episode_steps=max(1, cfg.max_episode_frames // protocol.frame_skip),
            img_height=cfg.image_size,
            img_width=cfg.image_size,
            stack_num=cfg.frame_stack,
            gray_scale=True,
            **protocol.envpool_kwargs(),
        )
        self.num_envs = cfg.num_envs
        self.observation_shape = tuple(self._env.observation_space.shape)
        self.observation_dtype = np.dtype(np.uint8)
        # With the full action set every game has 18 actions but Skiing (9 legal ones): it takes 18 too and
        # maps the actions it lacks to NOOP (0), so one policy head serves every game.
        self._legal_actions = int(self._env.action_space.n)
        self.num_actions = 18 if cfg.full_action_space else self._legal_actions
        self.task_names = [task_id.removesuffix("-v5")]
        self._tracker = EpisodeTracker(self.num_envs)
        self._resetting = np.zeros(self.num_envs, bool)  # this step is an autoreset step

    def reset(self) -> np.ndarray:
        """Reset every env (with the protocol's no-op starts); returns uint8 obs ``[N, C, H, W]``."""
        obs, _ = self._env.reset()
        self._tracker.reset()
        self._resetting[:] = False
        return obs

    def step(self, actions: np.ndarray) -> StepResult:
        """Step all envs; the reward is clipped if ``clip_rewards``, ``info`` holds the raw episode stats."""
        self.step_async(actions)  # envpool's own step() is this send + recv
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        """Hand ``actions`` to envpool's worker threads and return at once; :meth:`step_wait` collects.

        Lets a caller with many pools (``envs/multitask.py``) run them in parallel.
        """
        actions = check_actions(actions, self.num_envs, self.num_actions)
        self._env.send(np.where(actions < self._legal_actions, actions, 0))

    def step_wait(self) -> StepResult:
        """The step started by :meth:`step_async` (same result as :meth:`step`)."""
        obs, raw_reward, terminated, truncated, env_info = self._env.recv()
        terminated, truncated = terminated.astype(bool), truncated.astype(bool)
        game_over = env_info["terminated"].astype(bool) | truncated
        info = self._info(raw_reward, ~self._resetting, game_over)
        self._resetting = terminated | truncated
        return obs, clip_reward(raw_reward, self._clip), terminated, truncated, info

    def reset_step(self) -> StepResult:
        """Reset every env and report it as an autoreset step: first obs, reward 0, not done, no episode.

        A pool made mid-run (``envs/multitask.py``) starts its first episode with this instead of a step.
        """
        obs = self.reset()
        zeros = np.zeros(self.num_envs, bool)
        info = self._info(np.zeros(self.num_envs), zeros, zeros)
        return obs, clip_reward(np.zeros(self.num_envs), self._clip), zeros, zeros.copy(), info

    def _info(self, raw_reward: np.ndarray, applied: np.ndarray, game_over: np.ndarray) -> Info:
        """The ``episode_*`` entries (see ``envs/base.py``) after one step, and ``task_id`` 0."""
        info = self._tracker.update(raw_reward, applied, game_over)
        info["episode_frames"] = info["episode_length"] * self._frame_skip
        info["task_id"] = np.zeros(self.num_envs, np.int64)
        return info

    def close(self) -> None:
        """Stop envpool's worker threads."""
        self._env.close()
