"""Reference scores as data: human and random returns per game, with their sources, and the Atari-10 subset.

Human-normalised score (HNS): ``(score - random) / (human - random)``; 0 = uniformly random play, 1 = human.

Sources (numbers transcribed unchanged):

* Atari-57: DQN Zoo, ``dqn_zoo/atari_data.py`` (google-deepmind/dqn_zoo, Apache-2.0). Episodes start after
  1-30 random no-ops and are capped at 108,000 frames; "human" is the professional game tester of
  Mnih et al. 2015 / van Hasselt et al. 2016.
* DMLab-30: scalable_agent, ``dmlab30.py`` (google-deepmind/scalable_agent, Apache-2.0; Espeholt et al. 2018,
  IMPALA). Scores are keyed by the *test* level; two training levels map to their test versions.
* Atari-10: Aitchison, Sweetser, Hutter 2022, "Atari-5: Distilling the Arcade Learning Environment down to
  Five Games" (arXiv:2210.02019). Games and log-regression weights from the author's
  ``AtariScoreNormalizer.SUBSETS['Atari_10']`` (maitchison/PPO, ``tools/plot_util.py``): the Atari-57
  median HNS (in %) is estimated as ``10 ** sum_g w_g * log10(1 + max(HNS_g %, 0)) - 1`` (no intercept;
  reported cross-validated relative error 7.2%).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from envs.dmlab import DMLAB30_TEST_LEVEL

ATARI_SOURCE = "DQN Zoo atari_data.py (github.com/google-deepmind/dqn_zoo)"
DMLAB_SOURCE = "scalable_agent dmlab30.py (github.com/google-deepmind/scalable_agent)"
ATARI10_SOURCE = "Aitchison et al. 2022, Atari-5 (arXiv:2210.02019), weights from maitchison/PPO"


class Reference(NamedTuple):
    """Random-agent and human returns of one game or level."""

    random: float
    human: float


# Game -> (random, human); names as in envs.ATARI57.
ATARI_REFERENCE: dict[str, Reference] = {
    name: Reference(*scores)
    for name, scores in {
        "Alien": (227.8, 7127.7),
        "Amidar": (5.8, 1719.5),
        "Assault": (222.4, 742.0),
        "Asterix": (210.0, 8503.3),
        "Asteroids": (719.1, 47388.7),
        "Atlantis": (12850.0, 29028.1),
        "BankHeist": (14.2, 753.1),
        "BattleZone": (2360.0, 37187.5),
        "BeamRider": (363.9, 16926.5),
        "Berzerk": (123.7, 2630.4),
        "Bowling": (23.1, 160.7),
        "Boxing": (0.1, 12.1),
        "Breakout": (1.7, 30.5),
        "Centipede": (2090.9, 12017.0),
        "ChopperCommand": (811.0, 7387.8),
        "CrazyClimber": (10780.5, 35829.4),
        "Defender": (2874.5, 18688.9),
        "DemonAttack": (152.1, 1971.0),
        "DoubleDunk": (-18.6, -16.4),
        "Enduro": (0.0, 860.5),
        "FishingDerby": (-91.7, -38.7),
        "Freeway": (0.0, 29.6),
        "Frostbite": (65.2, 4334.7),
        "Gopher": (257.6, 2412.5),
        "Gravitar": (173.0, 3351.4),
        "Hero": (1027.0, 30826.4),
        "IceHockey": (-11.2, 0.9),
        "Jamesbond": (29.0, 302.8),
        "Kangaroo": (52.0, 3035.0),
        "Krull": (1598.0, 2665.5),
        "KungFuMaster": (258.5, 22736.3),
        "MontezumaRevenge": (0.0, 4753.3),
        "MsPacman": (307.3, 6951.6),
        "NameThisGame": (2292.3, 8049.0),
        "Phoenix": (761.4, 7242.6),
        "Pitfall": (-229.4, 6463.7),
        "Pong": (-20.7, 14.6),
        "PrivateEye": (24.9, 69571.3),
        "Qbert": (163.9, 13455.0),
        "Riverraid": (1338.5, 17118.0),
        "RoadRunner": (11.5, 7845.0),
        "Robotank": (2.2, 11.9),
        "Seaquest": (68.4, 42054.7),
        "Skiing": (-17098.1, -4336.9),
        "Solaris": (1236.3, 12326.7),
        "SpaceInvaders": (148.0, 1668.7),
        "StarGunner": (664.0, 10250.0),
        "Surround": (-10.0, 6.5),
        "Tennis": (-23.8, -8.3),
        "TimePilot": (3568.0, 5229.2),
        "Tutankham": (11.4, 167.6),
        "UpNDown": (533.4, 11693.2),
        "Venture": (0.0, 1187.5),
        "VideoPinball": (16256.9, 17667.9),  # DQN Zoo: random can beat human here under other protocols
        "WizardOfWor": (563.5, 4756.5),
        "YarsRevenge": (3092.9, 54576.9),
        "Zaxxon": (32.5, 9173.3),
    }.items()
}

# Test level -> (random, human).
_DMLAB_SCORES: dict[str, tuple[float, float]] = {
    "rooms_collect_good_objects_test": (0.073, 10),
    "rooms_exploit_deferred_effects_test": (8.501, 85.65),
    "rooms_select_nonmatching_object": (0.312, 65.9),
    "rooms_watermaze": (4.065, 54),
    "rooms_keys_doors_puzzle": (4.135, 53.8),
    "language_select_described_object": (-0.07, 389.5),
    "language_select_located_object": (1.929, 280.7),
    "language_execute_random_task": (-5.913, 254.05),
    "language_answer_quantitative_question": (-0.33, 184.5),
    "lasertag_one_opponent_small": (-0.224, 12.65),
    "lasertag_three_opponents_small": (-0.214, 18.55),
    "lasertag_one_opponent_large": (-0.083, 18.6),
    "lasertag_three_opponents_large": (-0.102, 31.5),
    "natlab_fixed_large_map": (2.173, 36.9),
    "natlab_varying_map_regrowth": (2.989, 24.45),
    "natlab_varying_map_randomized": (7.346, 42.35),
    "skymaze_irreversible_path_hard": (0.1, 100),
    "skymaze_irreversible_path_varied": (14.4, 100),
    "psychlab_arbitrary_visuomotor_mapping": (0.163, 58.75),
    "psychlab_continuous_recognition": (0.224, 58.3),
    "psychlab_sequential_comparison": (0.129, 39.5),
    "psychlab_visual_search": (0.085, 78.5),
    "explore_object_locations_small": (3.575, 74.45),
    "explore_object_locations_large": (4.673, 65.65),
    "explore_obstructed_goals_small": (6.76, 206),
    "explore_obstructed_goals_large": (2.61, 119.5),
    "explore_goal_locations_small": (7.66, 267.5),
    "explore_goal_locations_large": (3.14, 194.5),
    "explore_object_rewards_few": (2.073, 77.7),
    "explore_object_rewards_many": (2.438, 106.7),
}

# Level (training or test name) -> reference.
DMLAB_REFERENCE: dict[str, Reference] = {
    **{test: Reference(*scores) for test, scores in _DMLAB_SCORES.items()},
    **{train: Reference(*_DMLAB_SCORES[test]) for train, test in DMLAB30_TEST_LEVEL.items()},
}

# Atari-10 games and the weights of the Atari-57 median estimate (see the module docstring).
ATARI10_WEIGHTS: dict[str, float] = {
    "Amidar": 0.08246357439570691,
    "Bowling": 0.0559032813915904,
    "Frostbite": 0.06912572845204429,
    "KungFuMaster": 0.09861731598935165,
    "Riverraid": 0.048594292965417056,
    "BattleZone": 0.18882008828001498,
    "DoubleDunk": 0.08519154019954558,
    "NameThisGame": 0.12869695652405946,
    "Phoenix": 0.16432707026384483,
    "Qbert": 0.05922863791062832,
}
ATARI10: list[str] = list(ATARI10_WEIGHTS)
ATARI10_RELATIVE_ERROR = 0.072  # cross-validated relative error of the estimate (same source)


def human_normalized(score: float, ref: Reference | None) -> float:
    """``(score - random) / (human - random)``; NaN when ``ref`` is ``None``."""
    if ref is None:
        return math.nan
    return (score - ref.random) / (ref.human - ref.random)


def reference(family: str, name: str) -> Reference | None:
    """The human/random reference of ``name`` in env ``family`` (``atari`` or ``dmlab``), else ``None``."""
    table = {"atari": ATARI_REFERENCE, "dmlab": DMLAB_REFERENCE}.get(family, {})
    return table.get(name)


def reference_source(family: str) -> str | None:
    """Where the references of ``family`` come from, or ``None`` if it has none."""
    return {"atari": ATARI_SOURCE, "dmlab": DMLAB_SOURCE}.get(family)
