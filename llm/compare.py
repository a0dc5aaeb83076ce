"""``python -m llm.compare RUN... --out DIR``: tables and curves of LLM runs over seeds (mean, 95% interval).

Reads ``llm.train`` run directories (``config.yaml`` and TensorBoard events), folders holding them, or the
JSON summaries that ``--export DIR`` writes (one per run: its config and the curves below). The summaries
are what the repository commits, so docs/llm.md's tables and curves rebuild on a fresh clone.

Runs are grouped by ``algo.method`` and the ``--group-by`` config keys (as ``eval.results``); a group's
row gives its seeds and, per metric, the mean over seeds with a 95% Student-t interval (n - 1 degrees of
freedom); one seed gives its value and says so. The x-axis of the curves is samples: RL updates x
``sample.prompts_per_batch`` x ``sample.completions_per_prompt`` (per rank: a torchrun run samples
world-size times that). ``--compare A B`` puts the claim "A > B" on each ``--metric`` to Welch's test and
names the verdict by the rule in ``eval.runlogs.VERDICT_RULE``; with ``--paired`` the test is on the
per-seed differences instead (a seed's runs share the initial model and SFT warm start, so the seed's
luck cancels). ``--gap A B C D`` tests the interaction ``(A - B) - (C - D)`` > 0, paired by seed.

Examples::

    python -m llm.compare runs/sparse --group-by task.max_len --export docs/results/runs/llm_sparse
    python -m llm.compare docs/results/runs/llm_sparse --group-by task.max_len --out docs/results/llm_sparse \
        --compare "vmpo task.max_len=8" "grpo task.max_len=8" --metric reward,greedy_end
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from configs import config_to_dict
from configs.llm_schema import LLM_METHODS, LLMConfig
from eval.runlogs import (
    LEVEL,
    VERDICT_RULE,
    Interval,
    find_runs,
    mean_interval,
    t_quantile,
    tail_mean,
    variant_label,
    verdict,
    welch_interval,
)

# The curves a summary keeps (those the run logged); "{method}" stands for the run's algo.method.
CURVES = (
    "train/reward", "train/frac_reward_zero_std", "train/kl", "train/kl_old", "train/completions/mean_length",
    "eval/reward_greedy", "eval/reward_sampled", "vmpo/ess", "vmpo/ess_frac", "vmpo/kl_psi", "vmpo/eta",
    "dar/ess", "awr/ess", "dar/kl_psi", "awr/kl_psi", "perf/samples_per_s", "perf/peak_rss_mb",
    "perf/peak_gpu_mb",
)  # fmt: skip
TIME = "time/seconds"  # seconds since the run's first event, at each train/reward point
SUMMARY_VERSION = 1
# Config keys a run's seed may change without making it another setting (the seeds of one group).
SEED_KEYS = ("train.seed", "task.seed", "train.run_name", "train.run_dir", "train.resume", "train.progress")


@dataclass(frozen=True)
class Curve:
    """One logged scalar: RL update index of each point (0 = after SFT, before the first update)."""

    updates: np.ndarray  # int64 [P]
    values: np.ndarray  # float64 [P]


@dataclass(frozen=True)
class Metric:
    """A number per run: ``how`` reduces the curve ``tag``; ``key`` names it for ``--metric``."""

    key: str
    column: str
    tag: str
    # tail: mean of the last --tail of points | mean | start: at update 0 | end | wall | rate (the mean of
    # the logged ``perf/samples_per_s``, sampling + update; for runs without it, samples over wall-clock)
    how: str
    digits: int = 3


METRICS = (
    Metric("reward", "train reward, last {tail:.0%}", "train/reward", "tail"),
    Metric("sampled_start", "held-out sampled, start", "eval/reward_sampled", "start"),
    Metric("greedy_start", "held-out greedy, start", "eval/reward_greedy", "start"),
    Metric("greedy_end", "held-out greedy, end", "eval/reward_greedy", "end"),
    Metric("sampled_end", "held-out sampled, end", "eval/reward_sampled", "end"),
    Metric("zero_std", "zero-std groups, mean", "train/frac_reward_zero_std", "mean"),
    Metric("ess", "ESS, mean", "{method}/ess", "mean", 2),
    Metric("kl_psi", "KL(psi‖U), mean", "{method}/kl_psi", "mean"),
    Metric("kl_old", "KL(old‖new), mean", "train/kl_old", "mean", 4),
    Metric("wall", "wall-clock s", "", "wall", 1),
    Metric("samples_per_s", "samples/s", "perf/samples_per_s", "rate", 1),
    Metric("peak_rss_mb", "peak RSS MB", "perf/peak_rss_mb", "end", 0),
)
PLOTS = ("train/reward", "eval/reward_greedy", "eval/reward_sampled", "train/frac_reward_zero_std",
         "{method}/ess", "{method}/kl_psi")  # fmt: skip


@dataclass
class LLMRun:
    """What the report needs from one LLM run."""

    path: Path
    config: dict
    curves: dict[str, Curve]
    wall_clock: float  # seconds from the first to the last logged event
    variant: str = ""  # "[key=value ...]" of --group-by

    @property
    def method(self) -> str:
        return self.config["algo"]["method"]

    @property
    def seed(self) -> int:
        return int(self.config["train"]["seed"])

    @property
    def samples_per_update(self) -> int:
        s = self.config["sample"]
        return int(s["prompts_per_batch"]) * int(s["completions_per_prompt"])

    @property
    def updates(self) -> int:
        return int(self.curves["train/reward"].updates[-1])

    @property
    def group(self) -> tuple[str, str]:
        return (self.method, self.variant)

    def curve(self, tag: str) -> Curve | None:
        return self.curves.get(tag.format(method=self.method))

    def with_variant(self, keys: list[str]) -> LLMRun:
        """This run labelled by the values of the dotted config ``keys`` (``eval.runlogs.variant_label``)."""
        defaults = config_to_dict(LLMConfig())
        variant = variant_label(self.config, keys, defaults, self.method, LLM_METHODS, self.path)
        return dataclasses.replace(self, variant=variant)

    def value(self, metric: Metric, tail: float) -> float:
        """``metric`` of this run; NaN where the run did not log it."""
        if metric.how == "wall":
            return self.wall_clock
        if metric.how == "rate" and metric.tag in self.curves:
            return float(np.mean(self.curves[metric.tag].values))
        if metric.how == "rate":  # samples between the first and the last update over the time between
            t = self.curves[TIME]
            spent = t.values[-1] - t.values[0]
            return (t.updates[-1] - t.updates[0]) * self.samples_per_update / spent if spent > 0 else math.nan
        curve = self.curve(metric.tag)
        if curve is None or not len(curve.values) or (metric.how == "start" and curve.updates[0] != 0):
            return math.nan
        reduce = {"tail": lambda v: tail_mean(v, tail), "mean": np.mean, "start": lambda v: v[0],
                  "end": lambda v: v[-1]}  # fmt: skip
        return float(reduce[metric.how](curve.values))


# ---------------------------------------------------------------- reading and writing runs
def check_config(cfg: object, source: Path) -> dict:
    """``cfg`` if it is an ``llm.train`` config (with ``algo.method`` and ``sample``); else ``ValueError``."""
    if not isinstance(cfg, dict) or "method" not in (cfg.get("algo") or {}) or "sample" not in cfg:
        raise ValueError(f"'{source}' is not an llm.train config (no algo.method or sample)")
    return cfg


def read_run(path: Path) -> LLMRun:
    """Config and curves of one ``llm.train`` run directory; ``ValueError`` (one line) if it is not one."""
    config_file = path / "config.yaml"
    if not config_file.is_file():
        raise ValueError(f"'{path}' is not a run directory (no config.yaml)")
    cfg = check_config(yaml.safe_load(config_file.read_text()), config_file)
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    if "train/reward" not in tags:
        raise ValueError(f"run '{path}' logged no train/reward (no RL update finished)")
    events = {tag: acc.Scalars(tag) for tag in tags}
    walls = [e.wall_time for scalars in events.values() for e in scalars]
    start = min(walls)
    sft_steps = int(cfg["train"]["sft_steps"])  # the TensorBoard step is SFT steps + RL updates
    curves = {}
    for tag in [t for t in CURVES if t in tags] + [TIME]:
        scalars = events["train/reward" if tag == TIME else tag]
        updates = np.array([e.step - sft_steps for e in scalars], np.int64)
        values = np.array([e.wall_time - start if tag == TIME else e.value for e in scalars], np.float64)
        keep = np.r_[updates[1:] != updates[:-1], True]  # a step logged twice (the final evaluation): last
        curves[tag] = Curve(updates[keep], values[keep])
    return LLMRun(path, cfg, curves, float(max(walls) - start))


def to_summary(run: LLMRun) -> dict:
    """The JSON-able summary of a run: its config, wall-clock and every curve the report reads."""
    curves = {
        tag: {"updates": c.updates.tolist(), "values": c.values.tolist()} for tag, c in run.curves.items()
    }
    return {"version": SUMMARY_VERSION, "config": run.config, "wall_clock": run.wall_clock, "curves": curves}


def read_summary(path: Path) -> LLMRun:
    """A run from its exported JSON summary; ``ValueError`` (one line) if it is not one."""
    try:
        data = json.loads(path.read_text())
        if data.get("version") != SUMMARY_VERSION or "curves" not in data:
            raise ValueError(f"version {data.get('version')!r} without curves, expected {SUMMARY_VERSION}")
        curves = {
            tag: Curve(np.asarray(c["updates"], np.int64), np.asarray(c["values"], np.float64))
            for tag, c in data["curves"].items()
        }
        return LLMRun(path, check_config(data["config"], path), curves, float(data["wall_clock"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"'{path}' is not an LLM run summary ({str(err).splitlines()[0]})") from None


def read_runs(names: list[str]) -> list[LLMRun]:
    """Every run (directory or ``.json`` summary) named, or found one level below a named folder."""
    runs = []
    for name in names:
        paths = find_runs([name])
        if not paths:
            raise ValueError(f"'{name}' holds no run directory (config.yaml) or .json summary")
        runs += [read_summary(p) if p.suffix == ".json" else read_run(p) for p in paths]
    return runs


def export(runs: list[LLMRun], folder: Path) -> None:
    """One ``<run name>.json`` summary per run into ``folder``."""
    names = [run.path.stem if run.path.suffix == ".json" else run.path.name for run in runs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two runs would export to the same '{twice[0]}.json' (rename a run directory)")
    folder.mkdir(parents=True, exist_ok=True)
    for name, run in zip(names, runs):
        (folder / f"{name}.json").write_text(json.dumps(to_summary(run)) + "\n")


# ---------------------------------------------------------------- groups, tables, curves
def group_runs(runs: list[LLMRun]) -> dict[tuple[str, str], list[LLMRun]]:
    """Runs by (method, variant), sorted; a group's runs are its seeds, sorted by seed."""
    groups: dict[tuple[str, str], list[LLMRun]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return {key: sorted(groups[key], key=lambda r: r.seed) for key in sorted(groups)}


def label(group: tuple[str, str]) -> str:
    return " ".join(part for part in group if part)


def mixed_settings(groups: dict[tuple[str, str], list[LLMRun]]) -> list[str]:
    """One note per group whose runs differ in a config key other than the seeds' (``SEED_KEYS``)."""

    def flat(node: object, prefix: str = "") -> dict[str, object]:
        if not isinstance(node, dict):
            return {prefix[:-1]: node}
        return {k: v for name, child in node.items() for k, v in flat(child, f"{prefix}{name}.").items()}

    notes = []
    for group, members in groups.items():
        configs = [flat(r.config) for r in members]
        keys = sorted({k for c in configs for k in c if k not in SEED_KEYS})
        differ = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
        if differ:
            notes.append(
                f"group '{label(group)}' mixes runs that differ in {', '.join(differ)} (--group-by?)"
            )
    return notes


def fmt(est: Interval, digits: int) -> str:
    """``mean [low, high]``, or ``mean`` alone where the interval is undefined (no ``-0``)."""
    num = lambda x: f"{x if round(x, digits) else 0.0:.{digits}f}"
    return num(est.mean) if math.isnan(est.low) else f"{num(est.mean)} [{num(est.low)}, {num(est.high)}]"


def cell(values: list[float], digits: int) -> str:
    """Mean and interval over the seeds that logged the metric; one seed says so; ``-`` for none."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "-"
    some = f" ({len(finite)} of {len(values)} seeds)" if len(finite) < len(values) else ""
    return fmt(mean_interval(finite), digits) + (" (1 seed)" if len(finite) == 1 else "") + some


def summary_table(groups: dict[tuple[str, str], list[LLMRun]], tail: float) -> str:
    """Markdown: one row per group, the mean and interval over seeds of every metric."""
    columns = [m.column.format(tail=tail) for m in METRICS]
    head = ["method", "settings", "seeds", "updates", "samples", *columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (method, variant), members in groups.items():
        updates = int(np.mean([r.updates for r in members]))
        samples = int(np.mean([r.updates * r.samples_per_update for r in members]))
        cells = [cell([r.value(m, tail) for r in members], m.digits) for m in METRICS]
        row = [method, variant or "-", str(len(members)), str(updates), str(samples), *cells]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def select(groups: dict[tuple[str, str], list[LLMRun]], selector: str) -> tuple[str, str]:
    """The one group that ``selector`` names: its method and/or ``key=value`` settings, e.g.
    ``"vmpo model.dropout=0.1"`` (spaces, commas or brackets between; values compared case-insensitively)."""
    words = [w.lower() for w in re.split(r"[\s,\[\]]+", selector) if w]
    found = [
        g for g in groups
        if all(w in g[1].lower().strip("[]").split() if "=" in w else w == g[0] for w in words)
    ]  # fmt: skip
    if len(found) != 1:
        names = "; ".join(label(g) for g in groups)
        raise ValueError(f"--compare '{selector}' matches {len(found)} groups, not 1 (groups: {names})")
    return found[0]


PAIRED_RULE = (
    "Paired by seed: a seed's runs share the initial model (and the SFT warm start where both have one), "
    f"so each cell is the mean, over the seeds present in every group, of the per-seed difference, with its "
    f"{LEVEL:.0%} Student-t interval (n - 1 degrees of freedom); 'supported' if that interval lies above 0, "
    "'not supported' if below, 'no difference at this budget' if it contains 0."
)


def per_seed(groups: dict[tuple[str, str], list[LLMRun]], names: list[tuple[str, str]], metric: Metric,
             tail: float) -> list[dict[int, float]]:  # fmt: skip
    """``metric`` by seed for each group of ``names``, restricted to the seeds that all of them logged."""
    values = [{r.seed: r.value(metric, tail) for r in groups[g]} for g in names]
    common = set.intersection(*({s for s, v in d.items() if not math.isnan(v)} for d in values))
    return [{s: d[s] for s in sorted(common)} for d in values]


def compare_table(
    groups: dict[tuple[str, str], list[LLMRun]],
    pairs: list[tuple[tuple[str, str], tuple[str, str]]],
    metrics: list[Metric],
    tail: float,
    paired: bool = False,
) -> str:
    """Markdown: per pair (A, B) and metric, both means, ``A - B`` with Welch's interval (or, ``paired``,
    the Student-t interval of the per-seed differences) and the verdict."""
    how = f"paired t {LEVEL:.0%}" if paired else f"Welch {LEVEL:.0%}"
    lines = [
        f"| A | B | metric | A (seeds) | B (seeds) | A - B [{how}] | verdict on 'A > B' |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, b in pairs:
        for m in metrics:
            if paired:
                da, db = per_seed(groups, [a, b], m, tail)
                va, vb = list(da.values()), list(db.values())
                diff = mean_interval([x - y for x, y in zip(va, vb)])
            else:
                va, vb = ([v for r in groups[g] if not math.isnan(v := r.value(m, tail))] for g in (a, b))
                diff = welch_interval(va, vb)
            gap = fmt(diff, m.digits) if va and vb else "-"
            means = [f"{np.mean(v):.{m.digits}f} ({len(v)})" if v else "-" for v in (va, vb)]
            word = verdict(diff) if va and vb else "not logged"
            lines.append(f"| {label(a)} | {label(b)} | {m.column.format(tail=tail)} | {' | '.join(means)} "
                         f"| {gap} | {word} |")  # fmt: skip
    return "\n".join(lines) + f"\n\n{PAIRED_RULE if paired else VERDICT_RULE}"


def gap_table(
    groups: dict[tuple[str, str], list[LLMRun]],
    gaps: list[tuple[tuple[str, str], ...]],
    metrics: list[Metric],
    tail: float,
) -> str:
    """Markdown: per ``(A, B, C, D)`` and metric, the interaction ``(A - B) - (C - D)`` paired by seed
    (e.g. what dropout costs GRPO minus what it costs V-MPO), its Student-t interval and the verdict on
    "gap > 0"."""
    head = f"(A - B) - (C - D) [paired t {LEVEL:.0%}]"
    lines = [
        f"| gap | metric | A - B | C - D | {head} | seeds | verdict on 'gap > 0' |",
        "|---|---|---|---|---|---|---|",
    ]
    for names in gaps:
        a, b, c, d = names
        name = f"({label(a)} - {label(b)}) - ({label(c)} - {label(d)})"
        for m in metrics:
            va, vb, vc, vd = (np.array(list(v.values())) for v in per_seed(groups, list(names), m, tail))
            column = m.column.format(tail=tail)
            if not len(va):
                lines.append(f"| {name} | {column} | - | - | - | 0 | not logged |")
                continue
            est = mean_interval((va - vb) - (vc - vd))
            ab, cd = f"{np.mean(va - vb):.{m.digits}f}", f"{np.mean(vc - vd):.{m.digits}f}"
            lines.append(
                f"| {name} | {column} | {ab} | {cd} | {fmt(est, m.digits)} | {len(va)} | {verdict(est)} |"
            )
    return "\n".join(lines) + f"\n\n{PAIRED_RULE}"


def plot_curves(groups: dict[tuple[str, str], list[LLMRun]], tag: str, path: Path) -> bool:
    """``tag`` vs samples: mean over a group's seeds (line) and its Student-t interval (band).

    Seeds are interpolated onto the union of their x values within the range all of them cover.
    Returns False (and writes nothing) when no run logged ``tag``.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for group, members in groups.items():
        logged = [(r, c) for r in members if (c := r.curve(tag)) is not None and len(c.values)]
        if not logged:
            continue
        xs = [c.updates * r.samples_per_update for r, c in logged]
        lo, hi = max(x[0] for x in xs), min(x[-1] for x in xs)
        grid = np.unique(np.concatenate(xs))
        grid = grid[(grid >= lo) & (grid <= hi)]
        ys = np.stack([np.interp(grid, x, c.values) for x, (_, c) in zip(xs, logged)])
        (line,) = ax.plot(grid, ys.mean(0), label=f"{label(group)} ({len(logged)} seeds)")
        if len(logged) > 1:
            half = t_quantile(0.5 + LEVEL / 2, len(logged) - 1) * ys.std(0, ddof=1) / math.sqrt(len(logged))
            ax.fill_between(grid, ys.mean(0) - half, ys.mean(0) + half, color=line.get_color(), alpha=0.2)
        drawn = True
    if drawn:
        ax.set_xlabel("samples (completions)")
        ax.set_ylabel(tag.format(method="<method>"))
        ax.set_title(f"{tag.format(method='<method>')}: mean over seeds, {LEVEL:.0%} interval")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm.compare", description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", nargs="+", help="run directories, folders of them, or exported .json summaries"
    )
    parser.add_argument("--out", default="", help="folder for table.md and the PNG curves")
    parser.add_argument("--export", default="", help="write one JSON summary per run into this folder")
    parser.add_argument("--group-by", default="", help="comma-separated config keys that also split groups")
    parser.add_argument("--tail", type=float, default=0.1, help="fraction of the last updates for 'reward'")
    parser.add_argument(
        "--compare", nargs=2, action="append", default=[], metavar=("A", "B"),
        help="test the claim 'A > B' (groups named by method and/or key=value settings); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--paired",
        action="store_true",
        help="--compare by per-seed differences (runs of a seed share the SFT)",
    )
    parser.add_argument(
        "--gap", nargs=4, action="append", default=[], metavar=("A", "B", "C", "D"),
        help="the interaction (A - B) - (C - D), paired by seed, and the verdict on 'gap > 0'; repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--metric",
        default="reward",
        help=f"comma-separated metrics for --compare ({', '.join(m.key for m in METRICS)})",
    )
    args = parser.parse_args(argv)
    try:
        runs = read_runs(args.runs)
        if args.export:
            export(runs, Path(args.export))
        keys = [k for k in args.group_by.split(",") if k]
        groups = group_runs([r.with_variant(keys) for r in runs])
        by_key = {m.key: m for m in METRICS}
        unknown = [k for k in args.metric.split(",") if k not in by_key]
        if unknown:
            raise ValueError(f"unknown --metric '{unknown[0]}' (accepted: {', '.join(by_key)})")
        metrics = [by_key[k] for k in args.metric.split(",")]
        pairs = [(select(groups, a), select(groups, b)) for a, b in args.compare]
        gaps = [tuple(select(groups, name) for name in four) for four in args.gap]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for note in mixed_settings(groups):
        print(f"note: {note}", file=sys.stderr)
    command = shlex.join(["python", "-m", "llm.compare", *(sys.argv[1:] if argv is None else argv)])
    text = (
        f"Generated by `{command}`. Each cell: mean over seeds [{LEVEL:.0%} Student-t interval, n - 1 "
        "degrees of freedom]; samples = RL updates x prompts x completions per prompt.\n\n"
        + summary_table(groups, args.tail)
    )
    if pairs:
        text += "\n\n" + compare_table(groups, pairs, metrics, args.tail, args.paired)
    if gaps:
        text += "\n\n" + gap_table(groups, gaps, metrics, args.tail)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text(text + "\n")
        for tag in PLOTS:
            plot_curves(groups, tag, out / f"{tag.format(method='method').replace('/', '_')}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
