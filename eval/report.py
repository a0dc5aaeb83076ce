"""Evaluation outputs as files: ``scores.csv`` (one row per episode) and ``summary.md`` (tables).

``summary.md`` states the protocol at the top, then a per-game table (mean +- std of the unclipped return,
human-normalised score in %) and a suite table (median and mean HNS over the games with references).
:func:`parse_markdown_tables` reads the tables back, so tests can check them against the CSV.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from eval.scores import Episode, GameSummary, atari10_median_estimate, suite_hns

CSV_FIELDS = ("game", "episode", "return", "length", "frames", "protocol", "seed")
GAME_HEADER = ("game", "episodes", "mean return", "std", "HNS %")
SUITE_HEADER = ("suite", "games with reference", "median HNS %", "mean HNS %")


def write_scores(path: str | Path, episodes: list[Episode]) -> None:
    """Write one CSV row per episode (columns :data:`CSV_FIELDS`); returns keep full precision."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for ep in episodes:
            writer.writerow([ep.game, ep.episode, repr(ep.ret), ep.length, ep.frames, ep.protocol, ep.seed])


def read_scores(path: str | Path) -> list[Episode]:
    """Read ``scores.csv`` back; ``ValueError`` (one line) if it is missing columns or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"'{path}' does not exist; is it an evaluation directory's scores.csv?")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_FIELDS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"'{path}' lacks column(s) {', '.join(missing)}; needs {', '.join(CSV_FIELDS)}")
        try:
            return [
                Episode(r["game"], int(r["episode"]), float(r["return"]), int(r["length"]),
                        int(r["frames"]), r["protocol"], int(r["seed"]))
                for r in reader
            ]  # fmt: skip
        except (TypeError, ValueError) as err:
            raise ValueError(f"'{path}' line {reader.line_num}: {err}") from None


def fmt(value: float, digits: int) -> str:
    """Fixed-point number, or an em dash for NaN (no reference)."""
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(header: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    """GitHub markdown table lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


@dataclass
class SummaryInfo:
    """What the header of ``summary.md`` states."""

    protocol: str  # e.g. "dqn: up to 30 no-op starts, ..."
    checkpoint: str
    policy: str  # "sample" or "greedy"
    seeds: list[int]
    episodes: int  # per game and seed
    max_frames: int
    suite: str
    family: str
    reference_source: str | None


def summary_markdown(info: SummaryInfo, summaries: list[GameSummary]) -> str:
    """The text of ``summary.md``."""
    lines = [
        f"# Evaluation: {info.suite}",
        "",
        f"**Protocol: {info.protocol}**",
        "",
        f"- checkpoint: `{info.checkpoint}`",
        f"- policy: {info.policy}; seeds: {', '.join(map(str, info.seeds))}; "
        f"episodes per game and seed: {info.episodes}; episode cap: {info.max_frames} frames",
        f"- human-normalised score (HNS) = (return - random) / (human - random), in %; "
        f"references: {info.reference_source or 'none for this family'}",
        "- std is the sample standard deviation over all episodes of a game (all seeds)",
        "",
        "## Per game",
        "",
    ]
    rows = [[s.game, str(s.episodes), fmt(s.mean, 2), fmt(s.std, 2), fmt(100 * s.hns, 2)] for s in summaries]
    lines += markdown_table(GAME_HEADER, rows)
    median, mean, count = suite_hns(summaries)
    lines += ["", "## Suite", ""]
    suite_row = [info.suite, str(count), fmt(100 * median, 2), fmt(100 * mean, 2)]
    lines += markdown_table(SUITE_HEADER, [suite_row])
    try:
        estimate = atari10_median_estimate({s.game: s.hns for s in summaries})
    except ValueError:
        estimate = None
    if estimate is not None and info.family == "atari":
        lines += [
            "",
            f"Atari-57 median HNS estimated from the Atari-10 games (Aitchison et al. 2022, ~7% error): "
            f"{fmt(100 * estimate, 2)} %",
        ]
    return "\n".join(lines) + "\n"


def parse_markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Every markdown table in ``text`` as a list of rows ``{column: cell}``."""
    tables: list[list[dict[str, str]]] = []
    header: list[str] | None = None
    for line in [*text.splitlines(), ""]:
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            tables.append([])
        elif not all(set(c) <= {"-", ":"} for c in cells):
            tables[-1].append(dict(zip(header, cells)))
    return tables


def parse_number(cell: str) -> float:
    """A table cell back to a float (the em dash is NaN)."""
    return math.nan if cell == "—" else float(cell)
