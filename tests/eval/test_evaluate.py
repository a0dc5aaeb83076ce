"""End to end: train a tiny Pong checkpoint, evaluate it on two games, check outputs, compare, errors."""

import csv
import shutil
from pathlib import Path

import pytest

from agent.train import main as train_main
from envs.references import reference
from eval.compare import main as compare_main
from eval.evaluate import main as evaluate_main
from eval.loading import load_agent
from eval.report import parse_markdown_tables, parse_number, read_scores
from eval.scores import suite_hns, summarize
from eval.video import count_frames

TINY = [
    "env.family=atari", "env.name=Pong", "env.num_envs=2", "algo.unroll_length=8", "algo.n_step=8",
    "algo.vmpo.update_epochs=1", "net.d_model=32", "net.num_layers=1", "net.num_heads=2", "net.head_dim=16",
    "net.mlp_dim=32", "net.memory_length=8", "net.torso_out=32", "train.progress=false",
    "train.torch_threads=1", "train.run_name=r", "train.total_steps=256",
]  # fmt: skip
FAST = ["--max-frames", "1000", "--torch-threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A Pong (dqn protocol, 6 actions) checkpoint trained for 256 env steps."""
    root = tmp_path_factory.mktemp("train")
    assert train_main(["--config", "quickstart", *TINY, f"train.run_dir={root}"]) == 0
    return root / "r"


@pytest.fixture(scope="module")
def evaluation(run_dir, tmp_path_factory) -> Path:
    """Pong + SpaceInvaders (both 6 minimal actions), 2 episodes each, with videos."""
    out = tmp_path_factory.mktemp("eval") / "e"
    args = ["--checkpoint", str(run_dir), "--suite", "Pong,SpaceInvaders", "--episodes", "2", "--video"]
    assert evaluate_main([*args, "--out", str(out), *FAST]) == 0
    return out


def test_outputs_exist_and_are_consistent(evaluation):
    for name in ("scores.csv", "summary.md", "hns.png", "returns.png", "videos/Pong.mp4"):
        assert (evaluation / name).is_file(), name
    with open(evaluation / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["game"], r["episode"]) for r in rows] == [("Pong", "0"), ("Pong", "1"), ("SpaceInvaders", "0"),
                                                         ("SpaceInvaders", "1")]  # fmt: skip
    for r in rows:
        assert r["protocol"] == "dqn" and r["seed"] == "0"
        assert int(r["frames"]) == 4 * int(r["length"]) <= 1000  # frame skip 4, --max-frames cap
    episodes = read_scores(evaluation / "scores.csv")
    summaries = summarize(episodes, {g: reference("atari", g) for g in ("Pong", "SpaceInvaders")})
    text = (evaluation / "summary.md").read_text()
    assert "**Protocol: dqn" in text.splitlines()[2]
    games, suite = parse_markdown_tables(text)
    for row, s in zip(games, summaries, strict=True):
        assert row["game"] == s.game and int(row["episodes"]) == 2
        assert parse_number(row["mean return"]) == pytest.approx(s.mean, abs=0.005)
        assert parse_number(row["std"]) == pytest.approx(s.std, abs=0.005)
        assert parse_number(row["HNS %"]) == pytest.approx(100 * s.hns, abs=0.005)
    assert parse_number(suite[0]["median HNS %"]) == pytest.approx(100 * suite_hns(summaries)[0], abs=0.005)


def test_video_has_the_first_episode_frames(evaluation):
    first = {ep.game: ep for ep in read_scores(evaluation / "scores.csv") if ep.episode == 0}
    for game in ("Pong", "SpaceInvaders"):
        frames = count_frames(evaluation / "videos" / f"{game}.mp4")
        assert frames == first[game].length + 1  # the reset frame, then one per step


def test_checkpoint_games_and_compare(run_dir, evaluation, tmp_path, capsys):
    assert load_agent(run_dir).own_games == ["Pong"]
    other = tmp_path / "copy"
    shutil.copytree(evaluation, other)
    png = tmp_path / "cmp.png"
    assert compare_main([str(evaluation), str(other), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    table = parse_markdown_tables(out)[0]
    assert [r["game"] for r in table[:2]] == ["Pong", "SpaceInvaders"]
    assert table[0]["e"] == table[0]["copy"] and png.is_file()


def test_action_space_mismatch_is_a_clear_error(run_dir, tmp_path, capsys):
    args = ["--checkpoint", str(run_dir), "--suite", "Pong,Breakout", "--out", str(tmp_path / "x"), *FAST]
    assert evaluate_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "action-space mismatch" in err and "'Breakout' has 4 actions" in err
    assert "env.full_action_space=true" in err and not (tmp_path / "x").exists()  # nothing ran


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path, capsys):
    out = ["--out", str(tmp_path / "o"), *FAST]
    assert evaluate_main(["--checkpoint", str(tmp_path / "missing.pt"), *out]) == 2
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert evaluate_main(["--checkpoint", str(bad), *out]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "does not exist" in errors[0] and "corrupt" in errors[1]
