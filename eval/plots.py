"""Plots of an evaluation (matplotlib, Agg backend): per-game HNS bars and per-game return distributions."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from eval.scores import Episode, GameSummary


def plot_hns(path: str | Path, summaries: list[GameSummary], title: str) -> bool:
    """Horizontal bar chart of each game's HNS (%), sorted, with the human (100%) line.

    Returns False (and writes nothing) when no game has a reference.
    """
    scored = sorted((s for s in summaries if not math.isnan(s.hns)), key=lambda s: s.hns)
    if not scored:
        return False
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.25 * len(scored)))
    values = [100 * s.hns for s in scored]
    ax.barh([s.game for s in scored], values, color=["tab:blue" if v >= 0 else "tab:red" for v in values])
    ax.axvline(100, color="k", ls="--", lw=1, label="human")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("human-normalised score (%)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_returns(path: str | Path, episodes: list[Episode], title: str) -> None:
    """Per game (own scale): box plot of the episode returns, every episode as a dot, the mean dashed."""
    games = list(dict.fromkeys(ep.game for ep in episodes))
    cols = min(4, len(games))
    rows = math.ceil(len(games) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, game in zip(axes.flat, games):
        returns = np.asarray([ep.ret for ep in episodes if ep.game == game])
        ax.boxplot(returns, widths=0.5)
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(returns))
        ax.scatter(1 + jitter, returns, s=10, color="tab:blue", alpha=0.7, zorder=3)
        ax.axhline(returns.mean(), color="k", ls="--", lw=1)
        ax.set_xticks([])
        ax.set_ylabel("return", fontsize=8)
        ax.set_title(f"{game} (n={len(returns)})", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(games) :]:
        ax.axis("off")
    fig.suptitle(f"{title}: episode returns")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_comparison(path: str | Path, labels: list[str], table: dict[str, list[float]]) -> bool:
    """Grouped bars of HNS (%) per game of several evaluations (``table[game][i]``: ``labels[i]``'s HNS)."""
    games = [g for g, values in table.items() if any(not math.isnan(v) for v in values)]
    if not games:
        return False
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(games) * len(labels)), 4))
    width = 0.8 / len(labels)
    x = np.arange(len(games))
    for i, label in enumerate(labels):
        ax.bar(x + i * width, [100 * table[g][i] for g in games], width, label=label)
    ax.set_xticks(x + 0.4 - width / 2, games, rotation=60, ha="right", fontsize=8)
    ax.axhline(100, color="k", ls="--", lw=1)
    ax.set_ylabel("human-normalised score (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
