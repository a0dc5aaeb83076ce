"""Reference data, human-normalised scores against hand values, suite median/mean, the Atari-10 estimate."""

import math

import pytest

from envs import ATARI57
from envs.dmlab import DMLAB30_LEVELS
from envs.references import (
    ATARI10,
    ATARI10_WEIGHTS,
    ATARI_REFERENCE,
    DMLAB_REFERENCE,
    human_normalized,
    reference,
)
from eval.scores import GameSummary, atari10_median_estimate, suite_hns, summarize_game


@pytest.mark.parametrize(
    ("game", "score", "expected"),
    [
        ("Breakout", 59.3, 2.0),  # (59.3 - 1.7) / (30.5 - 1.7) = 57.6 / 28.8
        ("Boxing", 6.1, 0.5),  # (6.1 - 0.1) / (12.1 - 0.1)
        ("Pong", -20.7, 0.0),  # the random score
        ("DoubleDunk", -17.5, 0.5),  # (-17.5 + 18.6) / (-16.4 + 18.6) = 1.1 / 2.2
    ],
)
def test_atari_hns_hand_values(game, score, expected):
    assert human_normalized(score, reference("atari", game)) == pytest.approx(expected, abs=1e-12)


def test_dmlab_hns_hand_value_and_train_level_uses_test_scores():
    # (29.0325 - 4.065) / (54 - 4.065) = 24.9675 / 49.935
    assert human_normalized(29.0325, reference("dmlab", "rooms_watermaze")) == pytest.approx(0.5)
    train = reference("dmlab", "rooms_collect_good_objects_train")
    assert train == reference("dmlab", "rooms_collect_good_objects_test") == (0.073, 10)


def test_reference_tables_cover_the_suites():
    assert set(ATARI_REFERENCE) == set(ATARI57)
    assert len(DMLAB30_LEVELS) == 30 and all(level in DMLAB_REFERENCE for level in DMLAB30_LEVELS)
    assert len(ATARI10) == 10 and set(ATARI10) <= set(ATARI57)
    assert {"BattleZone", "DoubleDunk", "NameThisGame", "Phoenix", "Qbert"} <= set(ATARI10)  # Atari-5
    assert reference("memory", "CueRecall-L8") is None
    assert math.isnan(human_normalized(1.0, None))


def test_dmlab_references_cover_every_training_and_evaluation_level():
    from envs.dmlab import DMLAB30_TRAIN_LEVELS

    assert all(level in DMLAB_REFERENCE for level in DMLAB30_TRAIN_LEVELS)
    assert (
        DMLAB_REFERENCE["rooms_collect_good_objects_train"]
        == DMLAB_REFERENCE["rooms_collect_good_objects_test"]
    )
    assert DMLAB_REFERENCE["rooms_watermaze"] == (4.065, 54) and all(
        ref.human > ref.random for ref in DMLAB_REFERENCE.values()
    )


def test_summarize_game_mean_sample_std_hns():
    s = summarize_game("Pong", [1.0, 3.0], reference("atari", "Pong"))
    assert (s.episodes, s.mean, s.std) == (2, 2.0, pytest.approx(math.sqrt(2)))
    assert s.hns == pytest.approx((2.0 + 20.7) / 35.3)
    assert summarize_game("Pong", [5.0], None).std == 0.0
    with pytest.raises(ValueError, match="no finished episodes"):
        summarize_game("Pong", [], None)


def test_suite_median_and_mean_skip_games_without_reference():
    hns = [0.0, 0.5, 2.0, math.nan]
    summaries = [GameSummary(f"g{i}", 1, 0.0, 0.0, h) for i, h in enumerate(hns)]
    median, mean, count = suite_hns(summaries)
    assert (median, mean, count) == (0.5, pytest.approx(2.5 / 3), 3)
    median, mean, count = suite_hns(summaries[-1:])
    assert math.isnan(median) and math.isnan(mean) and count == 0


def test_atari10_estimate():
    # every game at human level (100 %): 10 ** (sum(w) * log10(101)) - 1 percent
    estimate = atari10_median_estimate(dict.fromkeys(ATARI10, 1.0))
    assert estimate == pytest.approx((101 ** sum(ATARI10_WEIGHTS.values()) - 1) / 100)
    assert atari10_median_estimate(dict.fromkeys(ATARI10, -0.3)) == 0.0  # negative scores clip to 0
    with pytest.raises(ValueError, match="missing: Qbert"):
        atari10_median_estimate(dict.fromkeys(ATARI10[:-1], 1.0))
