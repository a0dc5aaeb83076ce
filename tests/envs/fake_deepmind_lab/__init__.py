"""A fake ``deepmind_lab`` with the API surface ``envs/dmlab.py`` uses, for tests without DeepMind Lab.

Mirrors the documented Python API (DeepMind Lab ``docs/users/python_api.md``): ``Lab(level, observations,
config, renderer)``, ``observation_spec()``, ``reset(seed=)``, ``step(action, num_steps)``, ``is_running()``,
``observations()`` (an error once the episode has ended, as in DMLab) and ``close()``.

Deterministic behaviour the tests read back:
* an episode lasts ``EPISODE_FRAMES`` frames (``SHORT_EPISODE_FRAMES`` for ``tests/short_episode``);
* the reward of one frame is ``MOVE_BACK_FORWARD + 0.5 * FIRE`` of the action vector, so ``step`` returns
  its sum over ``num_steps`` frames;
* ``RGB_INTERLEAVED`` ``[H, W, 3]``: channel 0 = episode seed mod 251, channel 1 = frames played mod 256,
  channel 2 = the number of the episode in this Lab (1, 2, ...);
* ``INSTR`` is a sentence on ``language_*`` levels and ``""`` elsewhere;
* ``tests/crash_on_step_3`` kills its process (``os._exit``) on the third ``step`` call, like a segfault.
"""

from __future__ import annotations

import os

import numpy as np

EPISODE_FRAMES = 40
SHORT_EPISODE_FRAMES = 12
INSTRUCTION = "Pick the red balloon"
_DMLAB30 = (
    "rooms_collect_good_objects_train rooms_collect_good_objects_test rooms_exploit_deferred_effects_train "
    "rooms_exploit_deferred_effects_test rooms_select_nonmatching_object rooms_watermaze "
    "rooms_keys_doors_puzzle language_select_described_object language_select_located_object "
    "language_execute_random_task language_answer_quantitative_question lasertag_one_opponent_small "
    "lasertag_three_opponents_small lasertag_one_opponent_large lasertag_three_opponents_large "
    "natlab_fixed_large_map natlab_varying_map_regrowth natlab_varying_map_randomized "
    "skymaze_irreversible_path_hard skymaze_irreversible_path_varied psychlab_arbitrary_visuomotor_mapping "
    "psychlab_continuous_recognition psychlab_sequential_comparison psychlab_visual_search "
    "explore_object_locations_small explore_object_locations_large explore_obstructed_goals_small "
    "explore_obstructed_goals_large explore_goal_locations_small explore_goal_locations_large "
    "explore_object_rewards_few explore_object_rewards_many"
).split()
LEVELS = {f"contributed/dmlab30/{name}" for name in _DMLAB30} | {
    "tests/short_episode",
    "tests/crash_on_step_3",
}
OBSERVATIONS = ("RGB_INTERLEAVED", "INSTR")


class Lab:
    """One fake level."""

    def __init__(
        self,
        level: str,
        observations: list[str],
        config: dict[str, str] | None = None,
        renderer: str = "software",
    ) -> None:
        if level not in LEVELS:
            raise RuntimeError(f"Failed to open level script '{level}'")
        unknown = [name for name in observations if name not in OBSERVATIONS]
        if unknown:
            raise ValueError(f"Unknown observation '{unknown[0]}'")
        config = dict(config or {})
        if not all(isinstance(value, str) for value in config.values()):
            raise TypeError("Config values must be strings")
        if level.endswith("_test") and config.get("allowHoldOutLevels") != "true":
            raise RuntimeError(f"Level '{level}' is a hold-out level; set allowHoldOutLevels")
        if renderer not in ("software", "hardware"):
            raise ValueError(f"Unknown renderer '{renderer}'")
        self._level = level
        self._observations = list(observations)
        self._height = int(config.get("height", "240"))
        self._width = int(config.get("width", "320"))
        self._length = SHORT_EPISODE_FRAMES if level == "tests/short_episode" else EPISODE_FRAMES
        self._frames = 0
        self._seed = 0
        self._episodes = 0
        self._steps = 0
        self._running = False

    def observation_spec(self) -> list[dict[str, object]]:
        """Every observation this level offers, as DMLab lists them."""
        return [
            {"name": "RGB_INTERLEAVED", "dtype": np.uint8, "shape": (self._height, self._width, 3)},
            {"name": "INSTR", "dtype": str, "shape": ()},
        ]

    def reset(self, seed: int | None = None, episode: int = -1) -> bool:
        """Start an episode."""
        self._seed = 0 if seed is None else int(seed)
        self._episodes += 1
        self._frames = 0
        self._running = True
        return True

    def step(self, action: np.ndarray, num_steps: int = 1) -> float:
        """Play ``num_steps`` frames with the 7-int ``action``; returns their summed reward."""
        if not self._running:
            raise RuntimeError("Environment in wrong status to advance")
        if not isinstance(action, np.ndarray) or action.dtype != np.intc or action.shape != (7,):
            raise ValueError("action must be a numpy array of 7 np.intc")
        self._steps += 1
        if self._level == "tests/crash_on_step_3" and self._steps == 3:
            os._exit(3)
        frames = min(num_steps, self._length - self._frames)
        self._frames += frames
        self._running = self._frames < self._length
        return float(frames * (action[3] + 0.5 * action[4]))

    def is_running(self) -> bool:
        """Whether the episode is still going."""
        return self._running

    def observations(self) -> dict[str, object]:
        """The requested observations of the current frame."""
        if not self._running:
            raise RuntimeError("Environment in wrong status for call to observations()")
        frame = np.empty((self._height, self._width, 3), np.uint8)
        frame[..., 0] = self._seed % 251
        frame[..., 1] = self._frames % 256
        frame[..., 2] = self._episodes % 256
        language = self._level.startswith("contributed/dmlab30/language_")
        values = {"RGB_INTERLEAVED": frame, "INSTR": INSTRUCTION if language else ""}
        return {name: values[name] for name in self._observations}

    def close(self) -> None:
        """Release the level."""
        self._running = False
