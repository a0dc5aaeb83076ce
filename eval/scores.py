"""Score arithmetic: human-normalised scores, per-game summaries and suite aggregates (pure functions).

HNS values here are fractions (1.0 = human); tables print them in percent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from envs.references import ATARI10_WEIGHTS, Reference, human_normalized


@dataclass(frozen=True)
class Episode:
    """One finished evaluation episode (one row of ``scores.csv``)."""

    game: str
    episode: int  # index within (game, seed)
    ret: float  # unclipped return
    length: int  # agent steps
    frames: int  # emulator frames (= length for families without frame skip)
    protocol: str
    seed: int


@dataclass(frozen=True)
class GameSummary:
    """Statistics of one game over all its episodes (all seeds pooled)."""

    game: str
    episodes: int
    mean: float
    std: float  # sample standard deviation (ddof=1); 0 for a single episode
    hns: float  # human-normalised score of the mean return (fraction); NaN without a reference


def summarize_game(game: str, returns: Sequence[float], ref: Reference | None) -> GameSummary:
    """Mean, sample std and HNS of one game's episode returns."""
    if len(returns) == 0:
        raise ValueError(f"game {game!r} has no finished episodes to summarize")
    values = np.asarray(returns, np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    mean = float(values.mean())
    return GameSummary(game, len(values), mean, std, human_normalized(mean, ref))


def summarize(episodes: Iterable[Episode], refs: dict[str, Reference | None]) -> list[GameSummary]:
    """Per-game summaries in order of first appearance; ``refs`` maps each game to its reference."""
    by_game: dict[str, list[float]] = {}
    for ep in episodes:
        by_game.setdefault(ep.game, []).append(ep.ret)
    return [summarize_game(game, rets, refs.get(game)) for game, rets in by_game.items()]


def suite_hns(summaries: Iterable[GameSummary]) -> tuple[float, float, int]:
    """(median HNS, mean HNS, number of games with a reference); NaNs when no game has one."""
    values = np.asarray([s.hns for s in summaries if not math.isnan(s.hns)], np.float64)
    if values.size == 0:
        return math.nan, math.nan, 0
    return float(np.median(values)), float(values.mean()), int(values.size)


def atari10_median_estimate(hns_by_game: dict[str, float]) -> float:
    """Atari-57 median HNS (fraction) estimated from the Atari-10 games (Aitchison et al. 2022).

    ``10 ** sum_g w_g log10(1 + max(100 HNS_g, 0)) - 1`` in percent, returned as a fraction.
    Raises ``ValueError`` naming the missing games unless all ten are given.
    """
    missing = [g for g in ATARI10_WEIGHTS if g not in hns_by_game or math.isnan(hns_by_game[g])]
    if missing:
        raise ValueError(f"the Atari-10 estimate needs all ten games; missing: {', '.join(missing)}")
    log_score = sum(w * math.log10(1 + max(100 * hns_by_game[g], 0.0)) for g, w in ATARI10_WEIGHTS.items())
    return (10**log_score - 1) / 100
