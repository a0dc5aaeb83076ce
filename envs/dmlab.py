"""DeepMind Lab through its documented Python API, one level per worker process (family ``"dmlab"``).

Each worker owns one ``deepmind_lab.Lab(level, observations, config, renderer)``; the parent drives them over
pipes and reads their frames from one shared-memory buffer, so :class:`DMLabVecEnv` satisfies the same
:class:`envs.base.VecEnv` protocol (NEXT_STEP autoreset, unclipped ``episode_*`` in ``info``) as envpool.

* Observations: ``RGB_INTERLEAVED`` ``[H, W, 3]`` -> uint8 ``[N, 3, H, W]``, 72x96 by default
  (IMPALA, V-MPO). DMLab has no observation once ``is_running()`` is False, so the *final* observation of
  an episode repeats the last frame rendered before the end.
* Actions: 15 discrete actions (:data:`DMLAB_ACTION_SET`), each mapped to DMLab's 7-int action vector and
  repeated ``action_repeat`` (4) frames by ``Lab.step(action, num_steps=4)``; the reward is their sum.
* Episode end: DMLab levels end on their own time limit; that is reported as ``terminated`` (as IMPALA
  does), ``truncated`` is always False, and ``cfg.max_episode_frames`` is not used.
* ``info``: ``episode_done``, ``episode_return`` (unclipped), ``episode_length`` (agent steps),
  ``episode_frames`` (= length x action repeat), ``task_id``; with ``instructions="tokens"`` also
  ``instr`` int64 ``[N, instr_length]``: the ``INSTR`` text as hashed word ids (0 = padding), as the IMPALA
  agent embeds it (words hashed into ``instr_vocab`` buckets).
* Names: a DMLab-30 level (``rooms_watermaze``, loaded as ``contributed/dmlab30/rooms_watermaze``), any
  level path containing ``/``, a comma-separated list of those, ``dmlab30`` (the 30 training levels) or
  ``dmlab30_test`` (the 30 evaluation levels). With several levels, worker ``i`` runs level ``i mod L``
  (round robin, so ``num_envs`` a multiple of 30 trains every level equally) and ``task_names`` lists them.
  A bare name close to a DMLab-30 name (a typo) is refused before ``deepmind_lab`` is imported.

DMLab settings are ``EnvConfig`` fields (:class:`DMLabSettings`): ``dmlab_width``, ``dmlab_height``,
``action_repeat``, ``dmlab_renderer``, ``instructions``, ``instr_length``, ``instr_vocab``,
``dmlab_dataset_path``.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import multiprocessing as mp
import zlib
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, NoReturn

import numpy as np

from configs.schema import EnvConfig
from envs.base import EpisodeTracker, StepResult, check_actions, clip_reward, unknown_name_error

# ----------------------------------------------------------------------------------------------- data
# DMLab-30 (Beattie et al. 2016; Espeholt et al. 2018, IMPALA) level names, transcribed from DeepMind's
# scalable_agent ``dmlab30.py`` (LEVEL_MAPPING). Two levels train on a ``_train`` variant and are scored
# on its ``_test`` variant. Their human / random reference scores live with the other score tables in
# ``envs/references.py``.

# Evaluation names (the keys of the score tables), in scalable_agent's order.
DMLAB30_LEVELS: list[str] = [
    "rooms_collect_good_objects_test", "rooms_exploit_deferred_effects_test",
    "rooms_select_nonmatching_object", "rooms_watermaze", "rooms_keys_doors_puzzle",
    "language_select_described_object", "language_select_located_object", "language_execute_random_task",
    "language_answer_quantitative_question", "lasertag_one_opponent_small", "lasertag_three_opponents_small",
    "lasertag_one_opponent_large", "lasertag_three_opponents_large", "natlab_fixed_large_map",
    "natlab_varying_map_regrowth", "natlab_varying_map_randomized", "skymaze_irreversible_path_hard",
    "skymaze_irreversible_path_varied", "psychlab_arbitrary_visuomotor_mapping",
    "psychlab_continuous_recognition", "psychlab_sequential_comparison", "psychlab_visual_search",
    "explore_object_locations_small", "explore_object_locations_large", "explore_obstructed_goals_small",
    "explore_obstructed_goals_large", "explore_goal_locations_small", "explore_goal_locations_large",
    "explore_object_rewards_few", "explore_object_rewards_many",
]  # fmt: skip

# Training name -> evaluation name where they differ (scalable_agent LEVEL_MAPPING).
DMLAB30_TEST_LEVEL: dict[str, str] = {
    "rooms_collect_good_objects_train": "rooms_collect_good_objects_test",
    "rooms_exploit_deferred_effects_train": "rooms_exploit_deferred_effects_test",
}
_TRAIN_LEVEL = {test: train for train, test in DMLAB30_TEST_LEVEL.items()}
# Training names, aligned with DMLAB30_LEVELS.
DMLAB30_TRAIN_LEVELS: list[str] = [_TRAIN_LEVEL.get(level, level) for level in DMLAB30_LEVELS]


# The 15-action discretisation used for DMLab-30 by the IMPALA-based multi-task agents (Hessel et al. 2019,
# "Multi-task Deep RL with PopArt"; also R2D2, V-MPO and GTrXL), over DMLab's 7-int action vector
# (LOOK_LEFT_RIGHT_PIXELS_PER_FRAME, LOOK_DOWN_UP_PIXELS_PER_FRAME, STRAFE_LEFT_RIGHT, MOVE_BACK_FORWARD,
# FIRE, JUMP, CROUCH), see DeepMind Lab's docs/users/actions.md.
DMLAB_ACTION_SET: tuple[tuple[int, ...], ...] = (
    (0, 0, 0, 1, 0, 0, 0),  # forward
    (0, 0, 0, -1, 0, 0, 0),  # backward
    (0, 0, -1, 0, 0, 0, 0),  # strafe left
    (0, 0, 1, 0, 0, 0, 0),  # strafe right
    (-10, 0, 0, 0, 0, 0, 0),  # small look left
    (10, 0, 0, 0, 0, 0, 0),  # small look right
    (-60, 0, 0, 0, 0, 0, 0),  # large look left
    (60, 0, 0, 0, 0, 0, 0),  # large look right
    (0, 10, 0, 0, 0, 0, 0),  # look down
    (0, -10, 0, 0, 0, 0, 0),  # look up
    (-10, 0, 0, 1, 0, 0, 0),  # forward + small look left
    (10, 0, 0, 1, 0, 0, 0),  # forward + small look right
    (-60, 0, 0, 1, 0, 0, 0),  # forward + large look left
    (60, 0, 0, 1, 0, 0, 0),  # forward + large look right
    (0, 0, 0, 0, 1, 0, 0),  # fire
)

LEVEL_PREFIX = "contributed/dmlab30/"
LAB_MODULE = "deepmind_lab"  # the module that provides ``Lab``; the tests point this at a fake
START_METHOD = "forkserver"  # workers never inherit the trainer's threads (torch) or GL state
INSTRUCTION_MODES = ("ignore", "tokens")
TYPO_CUTOFF = 0.8  # difflib ratio above which a bare level name is taken as a typo of a DMLab-30 name
RENDERERS = ("software", "hardware")


class DMLabWorkerError(RuntimeError):
    """A DMLab worker failed or died; every worker of the env has been shut down."""


# --------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class DMLabSettings:
    """The DMLab-specific settings of an ``EnvConfig`` (defaults and docs: ``configs/schema.py``).

    ``EnvConfig`` validates them already; the checks below also cover configs changed after construction.
    """

    width: int
    height: int
    action_repeat: int
    renderer: str  # software: OSMesa, headless; hardware: EGL, needs a GPU
    instructions: str  # ignore | tokens
    instr_length: int  # tokens kept per instruction (longer ones are cut)
    instr_vocab: int  # hash buckets of the word ids, 0 reserved for padding
    dataset_path: str  # DMLab's datasetPath (the psychlab levels' image dataset), "" = unset

    @classmethod
    def from_config(cls, cfg: EnvConfig) -> DMLabSettings:
        return cls(
            width=cfg.dmlab_width,
            height=cfg.dmlab_height,
            action_repeat=cfg.action_repeat,
            renderer=cfg.dmlab_renderer,
            instructions=cfg.instructions,
            instr_length=cfg.instr_length,
            instr_vocab=cfg.instr_vocab,
            dataset_path=cfg.dmlab_dataset_path,
        )

    def __post_init__(self) -> None:
        for key, value, low in (
            ("dmlab_width", self.width, 8),
            ("dmlab_height", self.height, 8),
            ("action_repeat", self.action_repeat, 1),
            ("instr_length", self.instr_length, 1),
            ("instr_vocab", self.instr_vocab, 2),
        ):
            if value < low:
                raise ValueError(f"env.{key}={value!r} is out of range; accepted values: [{low}, inf]")
        if self.renderer not in RENDERERS:
            raise ValueError(
                f"env.dmlab_renderer={self.renderer!r} is not valid; accepted: software, hardware"
            )
        if self.instructions not in INSTRUCTION_MODES:
            raise ValueError(f"env.instructions={self.instructions!r} is not valid; accepted: ignore, tokens")

    def lab_config(self, level: str) -> dict[str, str]:
        """The ``config`` argument of ``deepmind_lab.Lab`` (all values strings, as DMLab requires)."""
        config = {"width": str(self.width), "height": str(self.height), "logLevel": "WARN"}
        if level.endswith("_test"):
            config["allowHoldOutLevels"] = "true"  # the DMLab-30 evaluation-only variants
        if self.dataset_path:
            config["datasetPath"] = self.dataset_path
        return config


# ------------------------------------------------------------------------------------------ names
def resolve_levels(name: str) -> list[str]:
    """``"dmlab30"`` / ``"dmlab30_test"`` / ``"a,b"`` / one level -> the task names (level names as given)."""
    if name == "dmlab30":
        return list(DMLAB30_TRAIN_LEVELS)
    if name == "dmlab30_test":
        return list(DMLAB30_LEVELS)
    levels = [part.strip() for part in name.split(",")]
    if not all(levels):
        raise ValueError(f"env.name={name!r} has an empty level name; accepted: level[,level...]")
    return levels


def check_level_names(levels: list[str]) -> None:
    """Refuse a likely typo of a DMLab-30 name before DeepMind Lab is even imported (so a user without it
    hears of the typo first): a bare name that is not a DMLab-30 level but close to one. Other bare names
    may be levels of DeepMind Lab itself (``seekavoid_arena_01``); they are checked when loaded."""
    choices = [*DMLAB30_LEVELS, *DMLAB30_TEST_LEVEL, "dmlab30", "dmlab30_test"]
    for level in levels:
        if "/" in level or level in choices:
            continue
        if difflib.get_close_matches(level, choices, n=1, cutoff=TYPO_CUTOFF):
            raise ValueError(
                f"{unknown_name_error('dmlab level', level, choices)} (a level of your own: give its path)"
            )


def level_path(level: str) -> str:
    """A DMLab-30 name -> ``contributed/dmlab30/<name>``; other names and paths are passed as given."""
    known = set(DMLAB30_LEVELS) | set(DMLAB30_TRAIN_LEVELS)
    return LEVEL_PREFIX + level if level in known else level


def instruction_tokens(text: str | bytes, length: int, vocab: int) -> np.ndarray:
    """Lower-cased words -> stable hashed ids in ``[1, vocab)``, cut / zero-padded to ``length`` (int64)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    ids = [1 + zlib.crc32(word.encode()) % (vocab - 1) for word in text.lower().split()][:length]
    tokens = np.zeros(length, np.int64)
    tokens[: len(ids)] = ids
    return tokens


# ----------------------------------------------------------------------------------------- worker
def _worker(
    index: int, spec: dict[str, Any], frames: Any, conn: Connection
) -> None:  # pragma: no cover - runs in the child process
    """Own one ``Lab``; answer ``("reset",)``, ``("step", action)`` and ``("close",)`` over ``conn``.

    Replies ``("ok", (reward, done, instruction))`` and writes the frame into ``frames[index]``
    (``[3, H, W]``); any exception is sent back as ``("error", "Type: message")`` and ends the worker.
    """
    try:
        lab_module = importlib.import_module(spec["module"])
        observations = ["RGB_INTERLEAVED"] + (["INSTR"] if spec["instr"] else [])
        lab = lab_module.Lab(spec["level"], observations, config=spec["config"], renderer=spec["renderer"])
        _check_frame_spec(lab, spec["shape"])
        rng = np.random.default_rng(spec["seed"])
        view = np.frombuffer(frames, np.uint8).reshape(-1, *spec["shape"])[index]
        actions = [np.array(action, np.intc) for action in DMLAB_ACTION_SET]
        conn.send(("ok", None))
        instruction = ""
        while True:
            command = conn.recv()
            if command[0] == "close":
                lab.close()
                return
            reward, done = 0.0, False
            if command[0] == "reset":
                lab.reset(seed=int(rng.integers(2**31 - 1)))
            else:
                reward = float(lab.step(actions[command[1]], num_steps=spec["repeat"]))
                done = not lab.is_running()
            if not done:  # DMLab renders nothing after the end: the last frame stays in the buffer
                obs = lab.observations()
                view[...] = np.transpose(obs["RGB_INTERLEAVED"], (2, 0, 1))
                instruction = obs["INSTR"] if spec["instr"] else ""
            conn.send(("ok", (reward, done, instruction)))
    except (KeyboardInterrupt, EOFError):
        return
    except BaseException as error:  # every failure goes back to the parent, as one line
        message = " ".join(f"{type(error).__name__}: {error}".split())
        try:
            conn.send(("error", message))
        except OSError:
            pass


def _check_frame_spec(lab: Any, shape: tuple[int, int, int]) -> None:
    """Raise if the level's ``RGB_INTERLEAVED`` spec is not ``[H, W, 3]`` for the configured size."""
    specs = {spec["name"]: spec for spec in lab.observation_spec()}
    channels, height, width = shape
    found = tuple(specs["RGB_INTERLEAVED"]["shape"])
    if found != (height, width, channels):
        raise ValueError(f"RGB_INTERLEAVED has shape {found}, expected {(height, width, channels)}")


# ---------------------------------------------------------------------------------------- vec env
class DMLabVecEnv:
    """``num_envs`` DeepMind Lab levels in worker processes behind the :class:`envs.base.VecEnv` protocol."""

    def __init__(self, cfg: EnvConfig, lab_module: str | None = None, slots: range | None = None) -> None:
        self.settings = settings = DMLabSettings.from_config(cfg)
        module = lab_module or LAB_MODULE
        levels = resolve_levels(cfg.name)
        check_level_names(levels)  # before the module: a typo is reported even where DMLab is missing
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(
                f"env.family='dmlab' needs the {module!r} module (DeepMind Lab's Python package), which is "
                "not installed; use the Docker image built with WITH_DMLAB=1 (docs/docker.md) "
                "or build it from source"
            )
        slots = range(cfg.num_envs) if slots is None else slots  # a torchrun rank's part of the workers
        self.num_envs = len(slots)
        self.observation_shape = (3, settings.height, settings.width)
        self.observation_dtype = np.dtype(np.uint8)
        self.num_actions = len(DMLAB_ACTION_SET)
        self.task_names = levels
        self._task_id = np.arange(slots.start, slots.stop, dtype=np.int64) % len(self.task_names)
        self.levels = [self.task_names[task] for task in self._task_id]
        self.slot_tasks = self._task_id.copy  # the level of each worker (the actor's first task ids)
        self._clip = cfg.clip_rewards
        self._tracker = EpisodeTracker(self.num_envs)
        self._done = np.zeros(self.num_envs, bool)
        self._started = False
        self._closed = False
        self._instr = np.zeros((self.num_envs, settings.instr_length), np.int64)
        context = mp.get_context(START_METHOD)
        if START_METHOD == "forkserver":
            context.set_forkserver_preload([__name__])
        self._frames = context.RawArray("B", self.num_envs * int(np.prod(self.observation_shape)))
        self._obs = np.frombuffer(self._frames, np.uint8).reshape(self.num_envs, *self.observation_shape)
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for i, level in enumerate(self.levels):
            spec = {
                "module": module,
                "level": level_path(level),
                "config": settings.lab_config(level),
                "renderer": settings.renderer,
                "instr": settings.instructions == "tokens",
                "shape": self.observation_shape,
                "seed": cfg.seed + slots.start + i,
                "repeat": settings.action_repeat,
            }
            parent, child = context.Pipe()
            proc = context.Process(target=_worker, args=(i, spec, self._frames, child), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self._gather(range(self.num_envs), starting=True)

    # ------------------------------------------------------------------------------ protocol
    def reset(self) -> np.ndarray:
        """Start a new episode in every env; returns uint8 obs ``[N, 3, H, W]``."""
        self._send_all([("reset",)] * self.num_envs)
        results = self._gather(range(self.num_envs))
        self._store_instructions(results, np.ones(self.num_envs, bool))
        self._tracker.reset()
        self._done[:] = False
        self._started = True
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> StepResult:
        """Step every env ``action_repeat`` frames; envs whose episode ended last step restart instead."""
        if not self._started:
            raise RuntimeError("DMLabVecEnv.step() called before reset()")
        actions = check_actions(actions, self.num_envs, self.num_actions)
        resetting = self._done.copy()
        self._send_all(
            [("reset",) if resetting[i] else ("step", int(actions[i])) for i in range(self.num_envs)]
        )
        results = self._gather(range(self.num_envs))
        raw_reward = np.array([reward for reward, _, _ in results], np.float32)
        terminated = np.array([done for _, done, _ in results], bool) & ~resetting
        self._store_instructions(results, ~terminated)
        self._done = terminated
        info = self._tracker.update(raw_reward, ~resetting, terminated)
        info["episode_frames"] = info["episode_length"] * self.settings.action_repeat
        info["task_id"] = self._task_id.copy()
        if self.settings.instructions == "tokens":
            info["instr"] = self._instr.copy()
        truncated = np.zeros(self.num_envs, bool)
        return self._obs.copy(), clip_reward(raw_reward, self._clip), terminated, truncated, info

    def close(self) -> None:
        """Ask every worker to close its level, then terminate any that has not exited within 5 s."""
        if self._closed:
            return
        self._closed = True
        for conn, proc in zip(self._conns, self._procs):
            if proc.is_alive():
                try:
                    conn.send(("close",))
                except OSError:
                    pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        for conn in self._conns:
            conn.close()

    def __del__(self) -> None:
        if getattr(self, "_procs", None) is not None and not getattr(self, "_closed", True):
            self.close()

    # ------------------------------------------------------------------------------ plumbing
    def _store_instructions(self, results: list[Any], mask: np.ndarray) -> None:
        if self.settings.instructions != "tokens":
            return
        s = self.settings
        for i in np.flatnonzero(mask):
            self._instr[i] = instruction_tokens(results[i][2], s.instr_length, s.instr_vocab)

    def _send_all(self, commands: list[tuple[Any, ...]]) -> None:
        if self._closed:
            raise RuntimeError("DMLabVecEnv used after close()")
        for i, (conn, command) in enumerate(zip(self._conns, commands)):
            try:
                conn.send(command)
            except OSError:
                self._fail(i, f"died (exit code {self._procs[i].exitcode})")

    def _gather(self, indices: Any, starting: bool = False) -> list[Any]:
        """Wait for one reply from each worker in ``indices``; a failed or dead worker stops them all."""
        pending = set(indices)
        results: list[Any] = [None] * self.num_envs
        while pending:
            waitables = [self._conns[i] for i in pending] + [self._procs[i].sentinel for i in pending]
            wait(waitables)
            for i in sorted(pending):
                conn = self._conns[i]
                if conn.poll():
                    try:
                        kind, payload = conn.recv()
                    except (EOFError, OSError):
                        self._fail(i, self._death(i), starting)
                    if kind == "error":
                        self._fail(i, payload, starting)
                    results[i] = payload
                    pending.discard(i)
                elif not self._procs[i].is_alive():
                    self._fail(i, self._death(i), starting)
        return results

    def _death(self, i: int) -> str:
        self._procs[i].join(timeout=1)
        code = self._procs[i].exitcode
        return (
            f"died (killed by signal {-code})"
            if code is not None and code < 0
            else f"died (exit code {code})"
        )

    def _fail(self, i: int, reason: str, starting: bool = False) -> NoReturn:
        """Shut every worker down and raise one line naming the worker, its level and the cause."""
        self.close()
        level = self.levels[i]
        hint = ""
        if starting and "/" not in level and level_path(level) == level:
            choices = [*DMLAB30_LEVELS, *DMLAB30_TEST_LEVEL, "dmlab30", "dmlab30_test"]
            hint = "; " + str(unknown_name_error("dmlab level", level, choices)).split("; ", 1)[1]
        what = f"could not load level {level_path(level)!r}" if starting else "failed"
        shutdown = f"all {self.num_envs} workers were shut down"
        raise DMLabWorkerError(f"dmlab worker {i} (level {level!r}) {what}: {reason}{hint}; {shutdown}")
