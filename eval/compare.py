"""``python -m eval.compare DIR1 DIR2 ...``: side-by-side table (stdout) and HNS chart (PNG) of evaluations.

Each DIR is an ``eval.evaluate`` output directory; its ``scores.csv`` is re-summarised here, so the numbers
are those of its ``summary.md``. Columns: mean return and HNS (%) per evaluation; rows: the union of games,
then median and mean HNS over the games each evaluation has references for.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from envs.references import ATARI_REFERENCE, DMLAB_REFERENCE, Reference
from eval.plots import plot_comparison
from eval.report import fmt, markdown_table, read_scores
from eval.scores import GameSummary, suite_hns, summarize


def _reference(game: str) -> Reference | None:
    return ATARI_REFERENCE.get(game) or DMLAB_REFERENCE.get(game)


def load_summaries(folder: Path) -> tuple[list[GameSummary], set[str]]:
    """Per-game summaries of one evaluation directory and the protocols it used."""
    episodes = read_scores(folder / "scores.csv")
    if not episodes:
        raise ValueError(f"'{folder / 'scores.csv'}' holds no episodes")
    refs = {ep.game: _reference(ep.game) for ep in episodes}
    return summarize(episodes, refs), {ep.protocol for ep in episodes}


def comparison_table(labels: list[str], runs: list[list[GameSummary]]) -> list[str]:
    """Markdown lines: one row per game, ``mean return (HNS %)`` per evaluation, then suite rows."""
    games = list(dict.fromkeys(s.game for run in runs for s in run))
    by_game = [{s.game: s for s in run} for run in runs]
    rows = []
    for game in games:
        cells = []
        for run in by_game:
            s = run.get(game)
            cells.append("—" if s is None else f"{fmt(s.mean, 2)} ({fmt(100 * s.hns, 1)} %)")
        rows.append([game, *cells])
    stats = [suite_hns(run) for run in runs]
    rows.append(["**median HNS %**", *[fmt(100 * median, 1) for median, _, _ in stats]])
    rows.append(["**mean HNS %**", *[fmt(100 * mean, 1) for _, mean, _ in stats]])
    rows.append(["games with reference", *[str(count) for _, _, count in stats]])
    return markdown_table(("game", *labels), rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.compare", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="evaluation directories (each with scores.csv)")
    parser.add_argument("--png", default="compare.png", help="chart path (default ./compare.png)")
    args = parser.parse_args(argv)
    folders = [Path(d) for d in args.dirs]
    try:
        loaded = [load_summaries(folder) for folder in folders]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    labels = [folder.name or str(folder) for folder in folders]
    if len(set(labels)) != len(labels):
        labels = [str(folder) for folder in folders]
    runs = [summaries for summaries, _ in loaded]
    protocols = sorted(set().union(*(protocols for _, protocols in loaded)))
    if len(protocols) > 1:
        print(f"note: the evaluations use different protocols ({', '.join(protocols)}); compare with care")
    print("\n".join(comparison_table(labels, runs)))
    games = list(dict.fromkeys(s.game for run in runs for s in run))
    by_game = [{s.game: s.hns for s in run} for run in runs]
    table = {g: [run.get(g, math.nan) for run in by_game] for g in games}
    if plot_comparison(args.png, labels, table):
        print(f"chart: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
