"""llm.compare: tables and intervals from LLM runs' logs, exported summaries, grouping, the verdict rule."""

import json
import math

import numpy as np
import pytest
import yaml
from torch.utils.tensorboard import SummaryWriter

from configs import config_to_dict, load_config
from configs.llm_schema import LLMConfig
from eval.report import parse_markdown_tables
from eval.runlogs import Interval, mean_interval, t_quantile, verdict, welch_interval
from llm import train
from llm.compare import main, read_run, read_summary, to_summary
from tests.llm.test_train import TINY

SFT = 40  # llm_tiny_vmpo's train.sft_steps: TensorBoard step = SFT steps + RL update


def fake_run(root, name, method, seed, rewards, overrides=(), greedy=(0.25, 0.5)):
    """An llm.train-shaped run: the preset's config.yaml, train/reward at each update (2 s apart), the
    held-out greedy reward at the start and the end (the end logged twice, as the trainer does)."""
    cfg = load_config("llm_tiny_vmpo", [f"algo.method={method}", f"train.seed={seed}", *overrides], LLMConfig)
    path = root / name
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    writer = SummaryWriter(str(path))
    writer.add_scalar("sft/loss", 2.0, 1, walltime=1000.0)
    writer.add_scalar("eval/reward_greedy", greedy[0], SFT, walltime=1001.0)
    for u, reward in enumerate(rewards, 1):
        writer.add_scalar("train/reward", reward, SFT + u, walltime=1002.0 + 2 * u)
        writer.add_scalar("train/frac_reward_zero_std", 0.5, SFT + u, walltime=1002.0 + 2 * u)
        if method == "vmpo":
            writer.add_scalar("vmpo/ess", 4.0 + u, SFT + u, walltime=1002.0 + 2 * u)
    end = SFT + len(rewards)
    writer.add_scalar("eval/reward_greedy", 0.0, end, walltime=1003.0 + 2 * len(rewards))
    writer.add_scalar("eval/reward_greedy", greedy[1], end, walltime=1004.0 + 2 * len(rewards))
    writer.close()
    return path


def table_rows(out):
    """The summary table of ``out/table.md`` by group label, and the comparison table (if any)."""
    tables = parse_markdown_tables((out / "table.md").read_text())
    rows = {f"{r['method']} {r['settings']}".replace(" -", ""): r for r in tables[0]}
    return rows, tables[1] if len(tables) > 1 else []


def test_t_quantiles_match_the_tables():
    for df, t in ((1, 12.7062047), (2, 4.3026527), (4, 2.7764451), (9, 2.2621572), (30, 2.0422725)):
        assert t_quantile(0.975, df) == pytest.approx(t, abs=1e-6)
    assert t_quantile(0.95, 3) == pytest.approx(2.3533634, abs=1e-6)
    assert 2.7764451 < t_quantile(0.975, 3.5) < 3.1824463  # between df 4 and df 3
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)


def test_table_means_and_intervals_are_the_hand_computed_ones(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed, final in enumerate((0.5, 0.75, 1.0)):  # 10 updates: the last 10% is the last update
        fake_run(runs, f"vmpo-s{seed}", "vmpo", seed, [0.0] * 9 + [final], greedy=(0.25, 0.25 * (seed + 1)))
    fake_run(runs, "grpo-s0", "grpo", 0, [0.0] * 9 + [0.5])
    assert main([str(runs), "--out", str(tmp_path / "out")]) == 0
    rows, _ = table_rows(tmp_path / "out")
    vmpo = rows["vmpo"]
    half = 4.302652729749464 * 0.25 / math.sqrt(3)  # t(0.975, 2) * std([0.5, 0.75, 1]) / sqrt(3)
    assert vmpo["seeds"] == "3" and vmpo["updates"] == "10" and vmpo["samples"] == "1280"  # 10 x 16 x 8
    assert (
        vmpo["train reward, last 10%"]
        == f"0.750 [{0.75 - half:.3f}, {0.75 + half:.3f}]"
        == "0.750 [0.129, 1.371]"
    )
    assert vmpo["held-out greedy, start"] == "0.250 [0.250, 0.250]"
    assert (
        vmpo["held-out greedy, end"] == f"0.500 [{0.5 - half:.3f}, {0.5 + half:.3f}]"
    )  # the last of step 50
    assert vmpo["ESS, mean"] == "9.50 [9.50, 9.50]"  # mean of 5..14
    assert vmpo["wall-clock s"] == "24.0 [24.0, 24.0]"  # events from 1000 s to 1024 s
    assert vmpo["samples/s"] == "64.0 [64.0, 64.0]"  # 9 updates x 128 samples in 18 s
    grpo = rows["grpo"]
    assert grpo["train reward, last 10%"] == "0.500 (1 seed)" and grpo["ESS, mean"] == "-"
    est = mean_interval([0.5, 0.75, 1.0])
    assert (est.mean, est.low, est.high) == pytest.approx((0.75, 0.75 - half, 0.75 + half), abs=1e-12)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        "eval_reward_greedy.png", "method_ess.png", "train_frac_reward_zero_std.png", "train_reward.png",
    ]  # fmt: skip
    assert "| vmpo | - | 3 | 10 | 1280 |" in capsys.readouterr().out


def test_export_and_reread_are_exact(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(2):
        fake_run(runs, f"vmpo-s{seed}", "vmpo", seed, [0.1 * seed + 0.3 * i for i in range(5)])
    summaries = tmp_path / "summaries"
    assert main([str(runs), "--export", str(summaries), "--out", str(tmp_path / "a")]) == 0
    assert sorted(p.name for p in summaries.iterdir()) == ["vmpo-s0.json", "vmpo-s1.json"]
    run, back = read_run(runs / "vmpo-s1"), read_summary(summaries / "vmpo-s1.json")
    assert back.config == run.config and back.wall_clock == run.wall_clock
    assert back.curves.keys() == run.curves.keys() >= {"train/reward", "eval/reward_greedy", "time/seconds"}
    for tag, curve in run.curves.items():
        assert curve.updates.dtype == back.curves[tag].updates.dtype == np.int64
        assert np.array_equal(curve.updates, back.curves[tag].updates)
        assert np.array_equal(curve.values, back.curves[tag].values), tag
    assert to_summary(back) == json.loads((summaries / "vmpo-s1.json").read_text())
    assert np.array_equal(run.curves["train/reward"].values, np.float32([0.1 + 0.3 * i for i in range(5)]))
    assert main([str(summaries), "--out", str(tmp_path / "b")]) == 0
    tables = [
        (tmp_path / o / "table.md").read_text().split("\n", 1)[1] for o in ("a", "b")
    ]  # after the command
    assert tables[0] == tables[1]


def test_group_by_splits_settings_and_names_an_unknown_key(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in range(2):
        for p in ("0.0", "0.1"):
            fake_run(
                runs, f"v{p}-s{seed}", "vmpo", seed, [0.5], ["algo.mstep_dropout=true", f"model.dropout={p}"]
            )
    fake_run(runs, "g-s0", "grpo", 0, [0.25], ["algo.vmpo.topk_fraction=0.25"])
    args = [str(runs), "--out", str(tmp_path / "o"), "--group-by", "model.dropout,algo.vmpo.topk_fraction"]
    assert main(args) == 0
    rows, _ = table_rows(tmp_path / "o")
    vmpo = [f"vmpo [model.dropout={p} algo.vmpo.topk_fraction=0.5]" for p in ("0.0", "0.1")]
    assert set(rows) == {*vmpo, "grpo [model.dropout=0.0]"}  # V-MPO's keys do not label a GRPO run
    assert all(rows[k]["seeds"] == "2" for k in rows if k.startswith("vmpo"))
    assert "mixes" not in capsys.readouterr().err
    assert main([str(runs), "--out", str(tmp_path / "o")]) == 0  # dropout 0 and 0.1 in one group
    assert "note: group 'vmpo' mixes runs that differ in model.dropout" in capsys.readouterr().err
    pair = ["--compare", "vmpo model.dropout=0.1", "vmpo,model.dropout=0.0"]  # a group by its settings
    assert main([str(runs), "--group-by", "model.dropout", *pair]) == 0
    assert "| vmpo [model.dropout=0.1] | vmpo [model.dropout=0.0] | train reward" in capsys.readouterr().out
    assert main([str(runs), "--group-by", "model.dropout", "--compare", "vmpo", "grpo"]) == 2
    assert "--compare 'vmpo' matches 2 groups" in capsys.readouterr().err
    assert main([str(runs), "--group-by", "model.nope"]) == 2
    assert "no config key 'model.nope'" in capsys.readouterr().err


def test_verdict_rule_in_all_three_cases():
    # a and b: variance 1, n = 3 each -> Welch df = 4, half width t(0.975, 4) * sqrt(2/3)
    half = 2.7764451051977934 * math.sqrt(2 / 3)
    a = [1.0, 2.0, 3.0]
    for b, diff, word in (
        ([-2.0, -1.0, 0.0], 3.0, "supported"),
        ([4.0, 5.0, 6.0], -3.0, "not supported"),
        ([1.5, 2.5, 3.5], -0.5, "no difference at this budget"),
    ):
        est = welch_interval(a, b)
        assert (est.mean, est.low, est.high) == pytest.approx((diff, diff - half, diff + half), abs=1e-9)
        assert verdict(est) == word
    assert verdict(welch_interval([1.0], [0.0, 0.5])).startswith("no interval")
    assert verdict(Interval(0.5, 0.5, 0.5)) == "supported"  # no spread on either side: the point decides
    # Welch with unequal variances and sizes: df = (1/3 + 4/2)^2 / ((1/3)^2/2 + 2^2/1)
    est = welch_interval([1.0, 2.0, 3.0], [0.0, 2.0 * math.sqrt(2)])
    df = (1 / 3 + 2) ** 2 / ((1 / 3) ** 2 / 2 + 4)
    assert est.high - est.mean == pytest.approx(t_quantile(0.975, df) * math.sqrt(1 / 3 + 2), abs=1e-9)


def test_compare_writes_the_difference_and_the_verdict(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed, (good, bad) in enumerate(((1.0, 0.0), (0.75, 0.25), (0.5, 0.0))):
        fake_run(runs, f"v-s{seed}", "vmpo", seed, [good])
        fake_run(runs, f"g-s{seed}", "grpo", seed, [bad])
    out = tmp_path / "o"
    args = [str(runs), "--out", str(out), "--compare", "vmpo", "grpo", "--compare", "grpo", "vmpo"]
    assert main([*args, "--metric", "reward,greedy_end"]) == 0
    _, compared = table_rows(out)
    words = [(r["A"], r["B"], r["metric"], r["verdict on 'A > B'"]) for r in compared]
    assert words == [
        ("vmpo", "grpo", "train reward, last 10%", "supported"),
        ("vmpo", "grpo", "held-out greedy, end", "no difference at this budget"),  # 0.5 on both sides
        ("grpo", "vmpo", "train reward, last 10%", "not supported"),
        ("grpo", "vmpo", "held-out greedy, end", "no difference at this budget"),
    ]
    est = welch_interval([1.0, 0.75, 0.5], [0.0, 0.25, 0.0])
    assert compared[0]["A - B [Welch 95%]"] == f"{est.mean:.3f} [{est.low:.3f}, {est.high:.3f}]"
    assert compared[0]["A (seeds)"] == "0.750 (3)" and compared[0]["B (seeds)"] == "0.083 (3)"
    assert "'supported' if the Welch 95% interval" in (out / "table.md").read_text()
    capsys.readouterr()
    assert main([str(runs), "--compare", "vmpo", "ppo"]) == 2
    assert "--compare 'ppo' matches 0 groups" in capsys.readouterr().err
    assert main([str(runs), "--compare", "vmpo", "grpo", "--metric", "nope"]) == 2
    assert "unknown --metric 'nope'" in capsys.readouterr().err


def test_paired_compare_and_gap_use_per_seed_differences(tmp_path, capsys):
    runs = tmp_path / "runs"
    rewards = {("vmpo", "0.0"): (1.0, 0.75, 0.5), ("grpo", "0.0"): (0.0, 0.25, 0.0),
               ("vmpo", "0.1"): (1.0, 0.5, 0.5), ("grpo", "0.1"): (0.0, 0.0, 0.5)}  # fmt: skip
    for (method, p), values in rewards.items():
        for seed, r in enumerate(values):
            fake_run(runs, f"{method}-d{p}-s{seed}", method, seed, [r], [f"model.dropout={p}"])
    fake_run(runs, "grpo-d0.0-s7", "grpo", 7, [0.9], ["model.dropout=0.0"])  # no partner: left out
    out = tmp_path / "o"
    on, off = "model.dropout=0.1", "model.dropout=0.0"
    args = [str(runs), "--out", str(out), "--group-by", "model.dropout", "--paired"]
    args += [
        "--compare",
        f"vmpo {off}",
        f"grpo {off}",
        "--gap",
        f"grpo {off}",
        f"grpo {on}",
        f"vmpo {off}",
        f"vmpo {on}",
    ]
    assert main(args) == 0
    tables = parse_markdown_tables((out / "table.md").read_text())
    compared, gap = tables[1][0], tables[2][0]
    diff = mean_interval([1.0, 0.5, 0.5])  # per seed: vmpo - grpo
    assert compared["A - B [paired t 95%]"] == f"{diff.mean:.3f} [{diff.low:.3f}, {diff.high:.3f}]"
    assert compared["B (seeds)"] == "0.083 (3)"  # seed 7 of grpo has no vmpo partner
    # what dropout costs GRPO: (0, .25, -.5); V-MPO: (0, .25, 0); the gap per seed: (0, 0, -.5)
    est = mean_interval([0.0, 0.0, -0.5])
    assert gap["(A - B) - (C - D) [paired t 95%]"] == f"{est.mean:.3f} [{est.low:.3f}, {est.high:.3f}]"
    assert gap["seeds"] == "3" and gap["verdict on 'gap > 0'"] == "no difference at this budget"
    assert "Paired by seed" in (out / "table.md").read_text()


def test_errors_are_one_line_and_name_the_path(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "nolog").mkdir()
    (tmp_path / "nolog" / "config.yaml").write_text(yaml.safe_dump(config_to_dict(LLMConfig())))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "atari").mkdir()
    (tmp_path / "atari" / "config.yaml").write_text(yaml.safe_dump({"algo": {"name": "vmpo"}}))
    cases = {
        tmp_path / "missing": "does not exist",
        tmp_path / "empty": "holds no run directory",
        tmp_path / "nolog": "logged no train/reward",
        tmp_path / "bad.json": "is not an LLM run summary",
        tmp_path / "atari": "is not an llm.train config",
    }
    for path, message in cases.items():
        assert main([str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err and str(path) in err, err


def test_reads_a_real_tiny_run(tmp_path):
    """The trainer's own logs: update 0 is the evaluation after SFT, the final evaluation counts once."""
    tiny = [
        *TINY,
        "train.iterations=3",
        "train.eval_interval=3",
        f"train.run_dir={tmp_path}",
        "train.run_name=r",
    ]
    assert train.main(["--config", "llm_tiny_vmpo", *tiny]) == 0
    run = read_run(tmp_path / "r")
    assert run.curves["train/reward"].updates.tolist() == [1, 2, 3]
    assert run.curves["eval/reward_greedy"].updates.tolist() == [0, 3]
    assert {"vmpo/ess", "vmpo/kl_psi", "train/frac_reward_zero_std", "time/seconds"} <= set(run.curves)
    assert run.samples_per_update == 16 and run.updates == 3 and run.wall_clock > 0
    assert main([str(tmp_path / "r"), "--export", str(tmp_path / "s"), "--out", str(tmp_path / "o")]) == 0
    rows, _ = table_rows(tmp_path / "o")
    assert rows["vmpo"]["samples"] == "48" and rows["vmpo"]["held-out greedy, start"].endswith("(1 seed)")
    # samples/s is the mean of the logged perf/samples_per_s (sampling + update, no evaluation)
    rate = float(np.mean(run.curves["perf/samples_per_s"].values))
    assert rows["vmpo"]["samples/s"] == f"{rate:.1f} (1 seed)"
    assert float(rows["vmpo"]["peak RSS MB"].split()[0]) == pytest.approx(
        run.curves["perf/peak_rss_mb"].values[-1], abs=0.5
    )
