"""eval.results: the table and plots come from the logs, and the numbers match them."""

import math

import numpy as np
import yaml
from torch.utils.tensorboard import SummaryWriter

from eval.report import parse_markdown_tables
from eval.results import main


def fake_run(root, name, core, seed, returns, nan_loss=False, env=None, timed=False, steps=None):
    path = root / name
    path.mkdir()
    cfg = {
        "env": env or {"name": "CueRecall-L8"},
        "algo": {"name": "vmpo"},
        "net": {"core": core},
        "train": {"seed": seed},
    }
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    writer = SummaryWriter(str(path))
    for i, value in enumerate(returns):
        t = 1000.0 + 10 * i if timed else None  # wall time: 10 s per log point
        step = 100 * (i + 1) if steps is None else steps[i]
        writer.add_scalar("charts/episodic_return", value, step, walltime=t)
        writer.add_scalar("loss/total", math.nan if nan_loss and i == 3 else 1.0, step, walltime=t)
        writer.add_scalar("policy/entropy", 1.0 - 0.05 * i, step, walltime=t)
    writer.close()


def test_report_table_matches_the_logs(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    fake_run(runs, "g0", "gtrxl", 0, [0.2] * 10 + [1.0] * 10)
    fake_run(runs, "g1", "gtrxl", 1, [0.25] * 10 + [0.9] * 10)
    fake_run(runs, "f0", "ff", 0, [0.25] * 20, nan_loss=True)
    assert main([str(runs), "--out", str(tmp_path / "out"), "--tail", "0.1"]) == 0
    (table,) = parse_markdown_tables((tmp_path / "out" / "table.md").read_text())
    rows = {r["core"]: r for r in table}
    gtrxl = rows["gtrxl"]
    assert gtrxl["seeds"] == "2" and gtrxl["per seed"] == "s0: 1.000, s1: 0.900"
    mean, std = (float(x) for x in gtrxl[next(k for k in gtrxl if k.startswith("final return"))].split(" ± "))
    assert math.isclose(mean, np.mean([1.0, 0.9]), abs_tol=5e-4)  # printed with 3 decimals
    assert math.isclose(std, np.std([1.0, 0.9], ddof=1), abs_tol=1e-3)
    assert gtrxl["env steps"] == "2000" and gtrxl["frames"] == "2000" and gtrxl["diverged"] == "0/2"
    assert rows["ff"]["diverged"] == "1/1"
    assert gtrxl["policy entropy (end)"] == "0.075"  # mean of 1 - 0.05 * {18, 19}: the last 10% of 20
    assert (tmp_path / "out" / "curves_CueRecall-L8.png").stat().st_size > 1000
    assert "| CueRecall-L8 | vmpo | gtrxl | 2 |" in capsys.readouterr().out


def test_max_steps_compares_runs_at_the_same_budget(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    fake_run(runs, "long", "gtrxl", 0, [0.0] * 10 + [1.0] * 10, timed=True)  # steps 100..2000
    assert main([str(runs), "--out", str(tmp_path / "o"), "--tail", "0.2", "--max-steps", "1000"]) == 0
    (row,) = parse_markdown_tables((tmp_path / "o" / "table.md").read_text())[0]
    assert row["env steps"] == "1000" and row["per seed"] == "s0: 0.000"  # the later 1.0s are cut
    assert row["policy entropy (end)"] == "0.575"  # mean of 1 - 0.05 * {8, 9}: cut at 1000 steps too
    assert row["wall-clock (s, mean)"] == "90"  # the time at the cut (10 points x 10 s), not the run's 190
    assert parse_markdown_tables(main_table(runs, tmp_path / "w"))[0][0]["wall-clock (s, mean)"] == "190"
    assert main([str(runs), "--out", str(tmp_path / "o"), "--max-steps", "50"]) == 2
    assert "logged no return at or before 50 env steps" in capsys.readouterr().err


def test_atari_frames_are_env_steps_times_the_action_repeat(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    fake_run(
        runs, "pong", "gtrxl", 0, [-21.0, -20.0], env={"name": "Pong", "family": "atari", "protocol": "dqn"}
    )
    assert main([str(runs), "--out", str(tmp_path / "o")]) == 0
    (row,) = parse_markdown_tables((tmp_path / "o" / "table.md").read_text())[0]
    assert row["env"] == "Pong" and row["env steps"] == "200" and row["frames"] == "800"
    assert row["per seed"] == "s0: -20.000"


def main_table(runs, out):
    assert main([str(runs), "--out", str(out)]) == 0
    return (out / "table.md").read_text()


def test_report_rejects_a_folder_without_runs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.count("error: ") == 2


def test_exported_summaries_rebuild_the_same_table(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    fake_run(runs, "g0", "gtrxl", 0, [0.2] * 10 + [1.0] * 10, timed=True)
    fake_run(runs, "f0", "ff", 0, [0.25] * 20, nan_loss=True, timed=True)
    summaries = tmp_path / "summaries"
    assert main([str(runs), "--out", str(tmp_path / "a"), "--export", str(summaries)]) == 0
    assert sorted(p.name for p in summaries.iterdir()) == ["f0.json", "g0.json"]
    assert main([str(summaries), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "table.md").read_text() == (tmp_path / "b" / "table.md").read_text()
    cut = [main([str(src), "--out", str(tmp_path / o), "--max-steps", "1000"]) for src, o in
           ((runs, "c"), (summaries, "d"))]  # fmt: skip
    assert cut == [0, 0]
    assert (tmp_path / "c" / "table.md").read_text() == (tmp_path / "d" / "table.md").read_text()
    assert (tmp_path / "b" / "curves_CueRecall-L8.png").stat().st_size > 1000


def test_a_corrupt_summary_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    assert main([str(tmp_path / "bad.json"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not a run summary" in err and "bad.json" in err


def test_bucket_table_means_each_window_over_seeds(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    atari = {"name": "Breakout", "family": "atari", "protocol": "dqn"}  # 4 frames per step
    fake_run(runs, "s0", "ff", 0, [1.0, 1.0, 3.0, 5.0], env=atari)  # frames 400, 800, 1200, 1600
    fake_run(runs, "s1", "ff", 1, [2.0, 2.0, 4.0], env=atari)  # frames 400, 800, 1200
    assert main([str(runs), "--out", str(tmp_path / "o"), "--buckets", "800"]) == 0
    text = (tmp_path / "o" / "table.md").read_text()
    assert "per window of emulator frames" in text
    _, buckets = parse_markdown_tables(text)
    (row,) = buckets
    assert row["0-800"] == "**1.5** (s0 1.0, s1 2.0)"  # s0: mean(1, 1), s1: mean(2, 2)
    assert row["800-1600"] == "**4.0** (s0 4.0)"  # s0: mean(3, 5); s1 stopped at 1200, mid-window
    assert "1600-2400" not in row  # no seed finished it
    fake_run(runs, "s2", "ff", 2, [6.0] * 7, env=atari, steps=[100, 200, 300, 400, 500, 600, 799])
    fake_run(runs, "s3", "ff", 3, [7.0] * 7, env=atari, steps=[100, 200, 300, 400, 500, 600, 797])
    assert main([str(runs), "--out", str(tmp_path / "o"), "--buckets", "800"]) == 0
    (row,) = parse_markdown_tables((tmp_path / "o" / "table.md").read_text())[1]
    # s2 ended at 3196 frames, 0.5% of the window short of 3200: it counts; s3 at 3188, 1.5% short: not
    assert row["2400-3200"] == "**6.0** (s2 6.0)"


def test_a_window_counts_when_the_run_went_on_past_its_last_episode(tmp_path):
    """A seed whose last episode ended early in a window but whose updates (entropy, logged every update)
    reached the window's end has finished that window; one whose updates stopped short has not."""
    runs = tmp_path / "runs"
    runs.mkdir()
    atari = {"name": "Pong", "family": "atari", "protocol": "dqn"}  # 4 frames per step
    fake_run(runs, "s0", "ff", 0, [1.0, 3.0], env=atari, steps=[100, 250])  # returns end at 1000 frames
    fake_run(runs, "s1", "ff", 1, [2.0, 4.0], env=atari, steps=[100, 250])
    for name, last in (("s0", 400), ("s1", 350)):  # updates to 1600 frames (the end) / 1400 (short)
        writer = SummaryWriter(str(runs / name))
        writer.add_scalar("policy/entropy", 0.5, last)
        writer.close()
    assert main([str(runs), "--out", str(tmp_path / "o"), "--buckets", "800"]) == 0
    (row,) = parse_markdown_tables((tmp_path / "o" / "table.md").read_text())[1]
    assert row["0-800"] == "**1.5** (s0 1.0, s1 2.0)"
    assert row["800-1600"] == "**3.0** (s0 3.0)"  # s1's updates stopped at 1400 frames, mid-window


def test_group_by_splits_runs_that_differ_in_a_config_key(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    for name, bf16 in (("a", "on"), ("b", "off")):
        fake_run(runs, name, "gtrxl", 0, [1.0 if bf16 == "on" else 2.0] * 4)
        cfg = yaml.safe_load((runs / name / "config.yaml").read_text())
        cfg["train"]["bf16"] = bf16
        (runs / name / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main([str(runs), "--out", str(tmp_path / "o"), "--group-by", "train.bf16"]) == 0
    rows = {r["core"]: r for r in parse_markdown_tables((tmp_path / "o" / "table.md").read_text())[0]}
    assert rows["gtrxl [train.bf16=off]"]["per seed"] == "s0: 2.000"
    assert rows["gtrxl [train.bf16=on]"]["per seed"] == "s0: 1.000"
    assert main([str(runs), "--out", str(tmp_path / "o"), "--group-by", "train.nope"]) == 2
    assert "no config key 'train.nope'" in capsys.readouterr().err


def test_group_by_reads_a_key_the_run_predates_as_its_default(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    fake_run(runs, "old", "gtrxl", 0, [1.0] * 4)
    cfg = yaml.safe_load((runs / "old" / "config.yaml").read_text())
    assert "num_minibatches" not in cfg.get("algo", {}).get("vmpo", {})  # written before the key
    assert main([str(runs), "--out", str(tmp_path / "o"), "--group-by", "algo.vmpo.num_minibatches"]) == 0
    (row,) = parse_markdown_tables((tmp_path / "o" / "table.md").read_text())[0]
    assert row["core"] == "gtrxl [algo.vmpo.num_minibatches=1]"
    assert main([str(runs), "--out", str(tmp_path / "p"), "--group-by", "algo.ppo.num_minibatches"]) == 0
    (row,) = parse_markdown_tables((tmp_path / "p" / "table.md").read_text())[0]
    assert row["core"] == "gtrxl"  # a V-MPO run is not labelled by PPO's keys
