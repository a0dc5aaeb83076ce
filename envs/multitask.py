"""Multi-task VecEnvs: a whole Atari suite behind one VecEnv, with the game of every step in ``task_id``.

The V-MPO paper's headline setting trains one agent on a whole suite (Atari-57, DMLab-30). Atari games use
the full 18-action space so one policy head serves every game (``envs/atari.py`` maps the actions Skiing
lacks to NOOP). ``info["task_id"][i]`` is the index in ``task_names`` of the game that produced slot ``i``'s
observation, reward and episode statistics at that step. ``env.task_sampling`` chooses the slots' games:

* ``fixed`` (:class:`MultiTaskVecEnv`, the default): envpool runs one game per pool, so the suite is one pool
  per game, concatenated. The slots are grouped by game, game ``k`` getting ``len(range(k, N, G))`` of the
  ``N`` slots (so ``N >= G``), and every slot plays its game for the whole run, as the V-MPO paper's actors
  each play one game. (The DMLab adapter does the same per worker process, round robin.)
* ``episode`` (:class:`TaskResamplingVecEnv`): a slot starts on the same game as in ``fixed`` and, at every
  real episode end (game over or time limit; a life loss under ``episodic_life`` is not one), draws the
  game of its next episode uniformly from the suite (possibly the same one again). Works with fewer slots
  than games; the trainer's per-game returns, HNS and PopArt statistics follow ``task_id`` step by step.

A pool cannot switch game, so ``episode`` backs every slot by its own one-env pool (an *emulator*) and keeps
emulators whose episode ended, per game, for reuse. The step after an episode end (NEXT_STEP autoreset,
``envs/base.py``) then comes from the new game's emulator: an idle emulator autoresets on that step (its last
step ended an episode), a newly made one is reset (:meth:`AtariVecEnv.reset_step`); either way the step
gives the first observation of an episode, reward 0, not done, and ``task_id`` the new game, while the step
that ended the episode (final observation, ``episode_return``) still reports the old one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from configs.schema import EnvConfig
from envs.atari import ATARI57, AtariVecEnv, envpool_task_id
from envs.base import StepResult, VecEnv, check_actions
from envs.references import ATARI10

ATARI_SUITES: dict[str, list[str]] = {"atari57": ATARI57, "atari10": ATARI10}


def atari_suite_games(name: str) -> list[str] | None:
    """``"atari57"`` / ``"atari10"`` / ``"Pong,Breakout"`` -> game names; ``None`` for a single game."""
    if name in ATARI_SUITES:
        return list(ATARI_SUITES[name])
    if "," not in name:
        return None
    games = [envpool_task_id(part.strip()).removesuffix("-v5") for part in name.split(",")]
    if len(set(games)) != len(games):
        raise ValueError(f"env.name={name!r} lists a game twice")
    return games


def slot_counts(num_envs: int, num_games: int) -> list[int]:
    """Slots per game of the grouped layout: game ``k`` gets ``len(range(k, num_envs, num_games))``."""
    return [len(range(k, num_envs, num_games)) for k in range(num_games)]


class MultiTaskVecEnv:
    """Per-task VecEnvs concatenated behind the :class:`envs.base.VecEnv` protocol (``fixed`` sampling).

    ``tasks[k]`` is the index in ``task_names`` of ``envs[k]``'s task (default: ``k``, with ``task_names``
    the envs' own); a shard of a suite holds pools for some of its games only but keeps the whole list.
    """

    def __init__(
        self, envs: list[VecEnv], tasks: list[int] | None = None, task_names: list[str] | None = None
    ) -> None:
        spaces = {(tuple(e.observation_shape), e.num_actions) for e in envs}
        if len(spaces) != 1:
            raise ValueError(f"multi-task envs must share (observation shape, actions), got {sorted(spaces)}")
        self._envs = envs
        self._sizes = [e.num_envs for e in envs]
        self._bounds = np.cumsum([0, *self._sizes])
        self.num_envs = int(self._bounds[-1])
        self.observation_shape = envs[0].observation_shape
        self.observation_dtype = envs[0].observation_dtype
        self.num_actions = envs[0].num_actions
        self.task_names = task_names or [name for e in envs for name in e.task_names]
        tasks = list(range(len(envs))) if tasks is None else tasks
        self._task_of_slot = np.repeat(np.asarray(tasks, np.int64), self._sizes)

    def slot_tasks(self) -> np.ndarray:
        """The task of each slot, ``[N]`` int64 (the ``task_id`` of its observations)."""
        return self._task_of_slot.copy()

    def reset(self) -> np.ndarray:
        return np.concatenate([e.reset() for e in self._envs])

    def step(self, actions: np.ndarray) -> StepResult:
        actions = check_actions(actions, self.num_envs, self.num_actions)
        results = []
        for k, env in enumerate(self._envs):
            part = actions[self._bounds[k] : self._bounds[k + 1]]
            results.append(env.step(part))
        obs, reward, terminated, truncated = (np.concatenate([r[i] for r in results]) for i in range(4))
        infos = [r[4] for r in results]
        info = {key: np.concatenate([i[key] for i in infos]) for key in infos[0] if key != "task_id"}
        info["task_id"] = self._task_of_slot.copy()
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        for env in self._envs:
            env.close()


@dataclasses.dataclass
class _Emulator:
    """A one-env pool and the index of its game in ``task_names``."""

    env: AtariVecEnv
    task: int


class TaskResamplingVecEnv:
    """An Atari suite whose slots draw a new game at every real episode end (``task_sampling=episode``).

    Emulators (one-env envpool pools, one worker thread each) are made lazily. Every slot holds one; an
    emulator whose episode ended and whose slot drew another game goes to the idle list, from which a slot
    that draws that game takes the most recently returned one. At most ``max_idle`` wait there (default
    ``num_envs + len(games)``; the oldest is closed beyond that), so at most ``max_emulators =
    num_envs + max_idle`` are alive at any time (about 2 MB and two threads each). Making one takes envpool
    1.2.5 0.2-0.6 s of one core (measured on our 2-core CPU), so the first episode ends are slower until the
    idle list fills; steps themselves cost about what ``fixed`` costs. ``env.num_threads`` is not used.

    Reproducible from ``cfg.seed``: slot ``i`` starts with an emulator seeded ``cfg.seed + i`` on the game
    it has in ``fixed`` (same first episodes); the game draws and later emulators' seeds come from two
    generators spawned from ``cfg.seed``.
    """

    def __init__(
        self, cfg: EnvConfig, games: list[str], max_idle: int | None = None, slots: range | None = None
    ) -> None:
        if max_idle is not None and max_idle < 0:
            raise ValueError(f"max_idle={max_idle} must be >= 0")
        slots = range(cfg.num_envs) if slots is None else slots  # a torchrun rank's part of the slots
        self._cfg = dataclasses.replace(cfg, num_envs=1, num_threads=1, full_action_space=True)
        self.task_names = list(games)
        self.num_envs = len(slots)
        self.max_idle = self.num_envs + len(games) if max_idle is None else max_idle
        self.max_emulators = self.num_envs + self.max_idle
        entropy = cfg.seed if slots.start == 0 else [cfg.seed, slots.start]  # one stream per shard
        self._game_rng, self._seed_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(entropy).spawn(2)
        )
        first_tasks = np.repeat(np.arange(len(games)), slot_counts(cfg.num_envs, len(games)))[slots]
        self._slots = [self._make(int(task), cfg.seed + i) for i, task in zip(slots, first_tasks)]
        self._idle: list[_Emulator] = []  # oldest first
        self._episode_ended = np.zeros(self.num_envs, bool)  # the slot draws its next game at the next step
        self.observation_shape = self._slots[0].env.observation_shape
        self.observation_dtype = self._slots[0].env.observation_dtype
        self.num_actions = self._slots[0].env.num_actions  # 18 for every game

    @property
    def num_emulators(self) -> int:
        """Emulators alive now: one per slot plus the idle ones (at most ``max_emulators``)."""
        return len(self._slots) + len(self._idle)

    def slot_tasks(self) -> np.ndarray:
        """The game each slot plays now, ``[N]`` int64 (after a reset: the ``task_id`` of its observation)."""
        return np.array([slot.task for slot in self._slots], np.int64)

    def _make(self, task: int, seed: int) -> _Emulator:
        game_cfg = dataclasses.replace(self._cfg, name=self.task_names[task], seed=seed)
        return _Emulator(AtariVecEnv(game_cfg), task)

    def reset(self) -> np.ndarray:
        """Reset every slot's emulator (slots keep their current game); returns obs ``[N, C, H, W]``."""
        self._episode_ended[:] = False
        return np.concatenate([slot.env.reset() for slot in self._slots])

    def _switch_games(self) -> np.ndarray:
        """Draw the next game of every slot whose episode ended; ``[N]`` bool: the slot got a new emulator."""
        made = np.zeros(self.num_envs, bool)
        for i in np.flatnonzero(self._episode_ended):
            task = int(self._game_rng.integers(len(self.task_names)))
            old = self._slots[i]
            if task == old.task:
                continue  # the same emulator autoresets
            reusable = [k for k, emulator in enumerate(self._idle) if emulator.task == task]
            self._idle.append(old)
            if reusable:
                self._slots[i] = self._idle.pop(reusable[-1])
                continue
            if len(self._idle) > self.max_idle:
                self._idle.pop(0).env.close()
            self._slots[i] = self._make(task, int(self._seed_rng.integers(2**31 - 1)))
            made[i] = True
        self._episode_ended[:] = False
        return made

    def step(self, actions: np.ndarray) -> StepResult:
        actions = check_actions(actions, self.num_envs, self.num_actions)
        made = self._switch_games()
        for i, slot in enumerate(self._slots):
            if not made[i]:
                slot.env.step_async(actions[i : i + 1])  # all emulators run in parallel
        results = [
            slot.env.reset_step() if made[i] else slot.env.step_wait() for i, slot in enumerate(self._slots)
        ]
        obs, reward, terminated, truncated = (np.concatenate([r[i] for r in results]) for i in range(4))
        info = {key: np.concatenate([r[4][key] for r in results]) for key in results[0][4]}
        info["task_id"] = self.slot_tasks()
        self._episode_ended = info["episode_done"].copy()
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        for emulator in self._slots + self._idle:
            emulator.env.close()


def make_atari_suite(
    cfg: EnvConfig, games: list[str], slots: range | None = None
) -> MultiTaskVecEnv | TaskResamplingVecEnv:
    """``cfg.num_envs`` slots over ``games``: fixed to a game (grouped, at least one each) or re-sampled.

    ``slots``: the global slots this process plays (a torchrun rank's shard); each keeps the game and the
    seed it has in the whole env, so the ranks' shards spread the suite's games over the ranks.
    """
    slots = range(cfg.num_envs) if slots is None else slots
    if cfg.task_sampling == "episode":
        return TaskResamplingVecEnv(cfg, games, slots=slots)
    if cfg.num_envs < len(games):
        raise ValueError(
            f"env.num_envs={cfg.num_envs} is smaller than the {len(games)} games of env.name={cfg.name!r}; "
            f"accepted: env.num_envs >= {len(games)} (or env.task_sampling=episode)"
        )
    layout = np.repeat(np.arange(len(games)), slot_counts(cfg.num_envs, len(games)))  # game of each slot
    envs: list[VecEnv] = []
    tasks: list[int] = []
    for task in np.unique(layout[slots]):  # the grouped layout keeps each game's slots contiguous
        mine = [i for i in slots if layout[i] == task]
        game_cfg = dataclasses.replace(cfg, name=games[task], num_envs=len(mine), seed=cfg.seed + mine[0],
                                       full_action_space=True)  # fmt: skip
        envs.append(AtariVecEnv(game_cfg))
        tasks.append(int(task))
    return MultiTaskVecEnv(envs, tasks, list(games))
