"""scores.csv round trip, summary.md tables parse back to the CSV numbers, --suite resolution."""

import math

import pytest

from envs.references import ATARI10, reference
from eval.report import (
    SummaryInfo,
    parse_markdown_tables,
    parse_number,
    read_scores,
    summary_markdown,
    write_scores,
)
from eval.scores import Episode, suite_hns, summarize
from eval.suites import resolve_suite

EPISODES = [
    Episode("Pong", 0, -21.0, 812, 3248, "dqn", 0),
    Episode("Pong", 1, -19.0, 900, 3600, "dqn", 0),
    Episode("Pong", 0, -20.0, 850, 3400, "dqn", 1),
    Episode("Breakout", 0, 12.5, 300, 1200, "dqn", 0),
    Episode("Breakout", 1, 1 / 3, 120, 480, "dqn", 0),
]


def info(suite: str = "Pong,Breakout") -> SummaryInfo:
    protocol = "dqn (up to 30 no-op starts)"
    return SummaryInfo(protocol, "ckpt.pt", "sample", [0, 1], 2, 108_000, suite, "atari", "src")


def test_scores_csv_round_trip(tmp_path):
    write_scores(tmp_path / "scores.csv", EPISODES)
    assert read_scores(tmp_path / "scores.csv") == EPISODES
    header = (tmp_path / "scores.csv").read_text().splitlines()[0]
    assert header == "game,episode,return,length,frames,protocol,seed"


def test_read_scores_errors_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_scores(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("game,episode\nPong,0\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) return") as err:
        read_scores(tmp_path / "bad.csv")
    assert "\n" not in str(err.value)


def check_summary_matches(text: str, episodes: list[Episode]) -> None:
    """The per-game and suite tables of summary.md equal the numbers recomputed from the episodes."""
    games, suite = parse_markdown_tables(text)
    summaries = summarize(episodes, {ep.game: reference("atari", ep.game) for ep in episodes})
    assert [row["game"] for row in games] == [s.game for s in summaries]
    for row, s in zip(games, summaries):
        assert int(row["episodes"]) == s.episodes
        assert parse_number(row["mean return"]) == pytest.approx(s.mean, abs=0.005)
        assert parse_number(row["std"]) == pytest.approx(s.std, abs=0.005)
        assert parse_number(row["HNS %"]) == pytest.approx(100 * s.hns, abs=0.005)
    median, mean, count = suite_hns(summaries)
    assert int(suite[0]["games with reference"]) == count
    assert parse_number(suite[0]["median HNS %"]) == pytest.approx(100 * median, abs=0.005)
    assert parse_number(suite[0]["mean HNS %"]) == pytest.approx(100 * mean, abs=0.005)


def test_summary_tables_parse_back_to_csv_numbers(tmp_path):
    write_scores(tmp_path / "scores.csv", EPISODES)
    episodes = read_scores(tmp_path / "scores.csv")
    summaries = summarize(episodes, {ep.game: reference("atari", ep.game) for ep in episodes})
    text = summary_markdown(info(), summaries)
    assert text.splitlines()[2] == "**Protocol: dqn (up to 30 no-op starts)**"  # stated at the top
    check_summary_matches(text, episodes)
    assert "Atari-10" not in text  # the estimate needs all ten games


def test_summary_without_reference_prints_dashes_and_atari10_estimate():
    episodes = [Episode(g, 0, 1000.0, 10, 40, "dqn", 0) for g in ATARI10]
    episodes.append(Episode("CueRecall-L8", 0, 1.0, 8, 8, "dqn", 0))
    refs = {ep.game: reference("atari", ep.game) for ep in episodes}
    text = summary_markdown(info("atari10"), summarize(episodes, refs))
    assert "Atari-57 median HNS estimated from the Atari-10 games" in text
    row = parse_markdown_tables(text)[0][-1]
    assert row["game"] == "CueRecall-L8" and math.isnan(parse_number(row["HNS %"]))


def test_resolve_suite():
    assert resolve_suite("atari10", "atari", ["Pong"]).games == ATARI10
    assert len(resolve_suite("ATARI57", "atari", ["Pong"]).games) == 57
    assert resolve_suite(None, "atari", ["Pong"]).games == ["Pong"]
    assert resolve_suite("pong, Breakout-v5,Pong", "atari", ["Pong"]).games == ["Pong", "Breakout"]
    dmlab = resolve_suite("dmlab30", "dmlab", ["rooms_watermaze"])
    assert len(dmlab.games) == 30 and dmlab.games[0] == "rooms_collect_good_objects_test"  # scored on _test
    with pytest.raises(ValueError, match="did you mean: Pong"):
        resolve_suite("Pongg", "atari", ["Pong"])
    with pytest.raises(ValueError, match=r"needs a checkpoint trained on env\.family='dmlab'"):
        resolve_suite("dmlab30", "atari", ["Pong"])
    with pytest.raises(ValueError, match="empty entry"):
        resolve_suite("Pong,,Breakout", "atari", ["Pong"])
