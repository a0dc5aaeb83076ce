"""``python -m eval.results RUN_DIR... --out DIR``: learning-curve plots and tables from training logs.

Every number in ``docs/results.md`` comes from here. Each run directory holds the trainer's
``config.yaml`` and TensorBoard events; runs are grouped by (env, algorithm, core) and summarised over
seeds: the final return is the mean of ``charts/episodic_return`` over the last ``--tail`` fraction of
each run's points (the policy entropy likewise: a policy that stays at ``log |A|`` has not moved); a run
*diverged* if it logged a non-finite loss or a skipped update.
``--max-steps N`` cuts every run at ``N`` env steps first (returns, entropy and wall-clock), so runs that
got different budgets (e.g. V-MPO and PPO side by side for the same wall-clock) are compared at the same
number of frames.
``--buckets F`` adds a table of the mean return in consecutive windows of ``F`` frames (env steps outside
Atari), the form in which learning curves are quoted against a reference (e.g. "10.6 at 0.8-1.2M").

Run directories (checkpoints, event files) stay on the machine that trained them; ``--export DIR``
writes one small JSON summary per run (its config and the curves this report reads), and the report
reads such summaries wherever it would read a run directory. The summaries are what the repository
commits (``docs/results/runs/``), so every table can be rebuilt on a fresh clone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
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
from configs.schema import ALGOS, Config
from envs.atari import PROTOCOLS
from eval.runlogs import find_runs, tail_mean, variant_label

RETURN_TAG = "charts/episodic_return"
ENTROPY_TAG = "policy/entropy"


@dataclass
class RunLog:
    """What the report needs from one run."""

    path: Path
    env: str
    algo: str
    core: str
    seed: int
    steps: np.ndarray  # env steps of the return points
    returns: np.ndarray  # mean unclipped episodic return at those steps
    wall_clock: float  # seconds from the first to the last logged event
    diverged: bool
    frame_skip: int = 1  # emulator frames per env step (Atari's action repeat; 1 elsewhere)
    entropy: np.ndarray | None = None  # policy entropy at the logged updates (did the policy move?)
    entropy_steps: np.ndarray | None = None
    start_time: float = 0.0  # wall time of the run's first logged event
    return_times: np.ndarray | None = None  # wall times of the return points
    config: dict | None = None  # the run's config.yaml (kept in summaries, for the command)
    variant: str = ""  # "[key=value ...]" of --group-by: runs that differ there are separate groups

    def with_variant(self, keys: list[str]) -> RunLog:
        """This run labelled by the values of the dotted config ``keys`` (e.g. ``train.bf16``).

        A key the run's config predates (added to the schema later) reads as the schema's default,
        which is what that run ran with; a key the schema does not know is a ``ValueError``. Keys of
        another algorithm's section (``algo.ppo.*`` on a V-MPO run) do not label the run.
        """
        defaults = config_to_dict(Config())
        variant = variant_label(self.config or {}, keys, defaults, self.algo, ALGOS, self.path)
        return dataclasses.replace(self, variant=variant)

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.env, self.algo, f"{self.core} {self.variant}".strip())

    def final_return(self, tail: float) -> float:
        return tail_mean(self.returns, tail)

    @property
    def last_step(self) -> int:
        """The last env step the run logged anything at: its last update (entropy is logged every
        update), which can lie after its last return point when no episode ended in the last updates
        (Pong's episodes last thousands of steps)."""
        last = int(self.steps[-1])
        if self.entropy_steps is not None and len(self.entropy_steps):
            last = max(last, int(self.entropy_steps[-1]))
        return last

    def truncated(self, max_steps: int) -> RunLog:
        """The run up to ``max_steps`` env steps (the points logged at or before it)."""
        keep = self.steps <= max_steps
        if not keep.any():
            raise ValueError(f"run '{self.path}' logged no return at or before {max_steps} env steps")
        run = dataclasses.replace(self, steps=self.steps[keep], returns=self.returns[keep])
        if self.return_times is not None:  # the time spent up to the cut, not the whole run's
            run = dataclasses.replace(
                run,
                return_times=self.return_times[keep],
                wall_clock=float(self.return_times[keep][-1] - self.start_time),
            )
        if self.entropy is not None:
            ent = self.entropy_steps <= max_steps
            run = dataclasses.replace(run, entropy=self.entropy[ent], entropy_steps=self.entropy_steps[ent])
        return run

    def final_entropy(self, tail: float) -> float:
        """Mean policy entropy over the last ``tail`` fraction of its points; nan if not logged."""
        if self.entropy is None or not len(self.entropy):
            return math.nan
        return tail_mean(self.entropy, tail)


SUMMARY_VERSION = 1
ARRAYS = ("steps", "returns", "entropy", "entropy_steps", "return_times")


def to_summary(run: RunLog) -> dict:
    """The JSON-able summary of a run: its config and every curve the report reads."""
    out = {"version": SUMMARY_VERSION}
    for f in dataclasses.fields(run):
        value = getattr(run, f.name)
        if f.name == "path":
            continue
        out[f.name] = value.tolist() if isinstance(value, np.ndarray) else value
    return out


def read_summary(path: Path) -> RunLog:
    """A run from its exported JSON summary; ``ValueError`` (one line) if it is not one."""
    try:
        data = json.loads(path.read_text())
        if data.get("version") != SUMMARY_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {SUMMARY_VERSION}")
        data.pop("version")
        dtypes = {"steps": np.int64, "entropy_steps": np.int64}
        for name in ARRAYS:
            if data.get(name) is not None:
                data[name] = np.asarray(data[name], dtypes.get(name, np.float64))
        return RunLog(path=path, **data)
    except (OSError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"'{path}' is not a run summary ({str(err).splitlines()[0]})") from None


def read_any(path: Path) -> RunLog:
    """A run directory or an exported ``.json`` summary."""
    return read_summary(path) if path.suffix == ".json" else read_run(path)


def read_run(path: Path) -> RunLog:
    """Config and scalars of one run directory; ``ValueError`` (one line) if it is not a run."""
    config_file = path / "config.yaml"
    if not config_file.is_file():
        raise ValueError(f"'{path}' is not a run directory (no config.yaml)")
    cfg = yaml.safe_load(config_file.read_text())
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    if RETURN_TAG not in tags:
        raise ValueError(f"run '{path}' logged no {RETURN_TAG}")
    events = acc.Scalars(RETURN_TAG)
    losses = [e.value for e in acc.Scalars("loss/total")] if "loss/total" in tags else []
    skipped = (
        [e.value for e in acc.Scalars("learner/skipped_updates")] if "learner/skipped_updates" in tags else []
    )
    walls = [e.wall_time for tag in tags for e in acc.Scalars(tag)]
    entropy = acc.Scalars(ENTROPY_TAG) if ENTROPY_TAG in tags else None
    env_cfg = cfg["env"]
    frame_skip = (
        PROTOCOLS[env_cfg.get("protocol", "dqn")].frame_skip if env_cfg.get("family") == "atari" else 1
    )
    return RunLog(
        path=path,
        env=cfg["env"]["name"],
        algo=cfg["algo"]["name"],
        core=cfg["net"]["core"],
        seed=int(cfg["train"]["seed"]),
        steps=np.array([e.step for e in events], np.int64),
        returns=np.array([e.value for e in events], np.float64),
        wall_clock=float(max(walls) - min(walls)) if walls else 0.0,
        diverged=bool(any(not math.isfinite(v) for v in losses) or any(v > 0 for v in skipped)),
        frame_skip=frame_skip,
        entropy=None if entropy is None else np.array([e.value for e in entropy], np.float64),
        entropy_steps=None if entropy is None else np.array([e.step for e in entropy], np.int64),
        start_time=float(min(walls)) if walls else 0.0,
        return_times=np.array([e.wall_time for e in events], np.float64),
        config=cfg,
    )


def group_runs(runs: list[RunLog]) -> dict[tuple[str, str, str], list[RunLog]]:
    """Runs by (env, algo, core [variant]); the seeds of one group are averaged together."""
    groups: dict[tuple[str, str, str], list[RunLog]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return groups


def summary_table(runs: list[RunLog], tail: float) -> str:
    """Markdown: one row per (env, algo, core) with the final return over seeds."""
    groups = group_runs(runs)
    lines = [
        f"| env | algo | core | seeds | final return (mean ± std over seeds, last {tail:.0%} of points) "
        "| per seed | policy entropy (end) | env steps | frames | wall-clock (s, mean) | diverged |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (env, algo, core), members in sorted(groups.items()):
        members.sort(key=lambda r: r.seed)
        finals = np.array([r.final_return(tail) for r in members])
        std = float(finals.std(ddof=1)) if len(finals) > 1 else 0.0
        per_seed = ", ".join(f"s{r.seed}: {f:.3f}" for r, f in zip(members, finals))
        steps = int(np.mean([r.steps[-1] for r in members]))
        frames = int(np.mean([r.steps[-1] * r.frame_skip for r in members]))
        entropy = float(np.mean([r.final_entropy(tail) for r in members]))
        entropy_cell = "-" if math.isnan(entropy) else f"{entropy:.3f}"
        wall = float(np.mean([r.wall_clock for r in members]))
        diverged = sum(r.diverged for r in members)
        lines.append(
            f"| {env} | {algo} | {core} | {len(members)} | {finals.mean():.3f} ± {std:.3f} | {per_seed} "
            f"| {entropy_cell} | {steps} | {frames} | {wall:.0f} | {diverged}/{len(members)} |"
        )
    return "\n".join(lines)


def bucket_table(runs: list[RunLog], width: int) -> str:
    """Markdown: mean return in windows of ``width`` frames, per group (mean over seeds, and per seed).

    A seed's value in a window is the mean of its return points logged in it (each point is the mean
    over the episodes that ended in one update). Only whole windows count: a seed that stopped more
    than 1% of a window before its end is left out of that window (a run of 1M env steps in updates of
    1024 ends at 3,997,696 frames, 0.06% short of 4M: it counts), and a window no seed finished is not
    shown. Where a seed stopped is its last logged update (``RunLog.last_step``), not its last episode.
    """
    groups = group_runs(runs)
    end = max(r.last_step * r.frame_skip for r in runs)
    slack = width // 100  # a seed that reached 99% of a window's end has finished it
    edges = list(range(0, end + slack - width + 1, width)) or [0]
    label = lambda x: f"{x / 1e6:g}M" if x >= 100_000 else f"{x}"
    head = [f"{label(lo)}-{label(lo + width)}" for lo in edges]
    lines = [
        f"| env | algo | core | seeds | {' | '.join(head)} |",
        "|---|---|---|---|" + "---|" * len(head),
    ]
    for (env, algo, core), members in sorted(groups.items()):
        members.sort(key=lambda r: r.seed)
        cells = []
        for lo in edges:
            per_seed = []
            for r in members:
                frames = r.steps * r.frame_skip
                inside = (frames > lo) & (frames <= lo + width)
                if inside.any() and r.last_step * r.frame_skip >= lo + width - slack:
                    per_seed.append((r.seed, float(r.returns[inside].mean())))
            if not per_seed:
                cells.append("-")
                continue
            detail = ", ".join(f"s{seed} {v:.1f}" for seed, v in per_seed)
            cells.append(f"**{np.mean([v for _, v in per_seed]):.1f}** ({detail})")
        lines.append(f"| {env} | {algo} | {core} | {len(members)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def plot_curves(runs: list[RunLog], path: Path, title: str) -> None:
    """Return vs env steps (Atari: frames): mean over seeds (line), min-max over seeds (band)."""
    groups = group_runs(runs)
    fig, ax = plt.subplots(figsize=(8, 4.2 + 0.2 * len(groups)))  # legend below the axes, a line each
    frames = any(r.frame_skip > 1 for r in runs)  # Atari: x in emulator frames, as budgets are quoted
    for (_, algo, core), members in sorted(groups.items()):
        xs = [r.steps * (r.frame_skip if frames else 1) for r in members]
        grid = np.linspace(0, min(x[-1] for x in xs), 100)
        curves = np.stack([np.interp(grid, x, r.returns) for x, r in zip(xs, members)])
        short = re.sub(r"[\w.]*\.(\w+)=", r"\1=", core)  # --group-by labels: the key's last part
        (line,) = ax.plot(grid, curves.mean(0), label=f"{algo} + {short} ({len(members)} seeds)")
        ax.fill_between(grid, curves.min(0), curves.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("emulator frames" if frames else "environment steps")
    ax.set_ylabel("episodic return (unclipped)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.14), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.results", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories, or folders holding run directories")
    parser.add_argument("--out", required=True, help="folder for the PNG plots and table.md")
    parser.add_argument(
        "--tail", type=float, default=0.1, help="fraction of the last points for the final return"
    )
    parser.add_argument("--max-steps", type=int, default=0, help="cut every run at this many env steps")
    parser.add_argument(
        "--buckets", type=int, default=0, help="also tabulate the mean return per window of this many frames"
    )
    parser.add_argument(
        "--group-by", default="", help="comma-separated config keys that also split groups (e.g. train.bf16)"
    )
    parser.add_argument("--export", default="", help="write one JSON summary per run into this folder")
    args = parser.parse_args(argv)
    try:
        runs = [read_any(p) for p in find_runs(args.runs)]
        if args.export:
            export = Path(args.export)
            export.mkdir(parents=True, exist_ok=True)
            for run in runs:
                name = run.path.stem if run.path.suffix == ".json" else run.path.name
                (export / f"{name}.json").write_text(json.dumps(to_summary(run)) + "\n")
        keys = [k for k in args.group_by.split(",") if k]
        runs = [r.with_variant(keys) for r in runs]
        if args.max_steps > 0:
            runs = [r.truncated(args.max_steps) for r in runs]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not runs:
        print("error: no run directories found", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = summary_table(runs, args.tail)
    if args.buckets > 0:
        unit = "emulator frames" if any(r.frame_skip > 1 for r in runs) else "env steps"
        table += f"\n\nMean return per window of {unit} (mean over seeds in bold, then each seed):\n\n"
        table += bucket_table(runs, args.buckets)
    (out / "table.md").write_text(table + "\n")
    for env in sorted({r.env for r in runs}):
        plot_curves([r for r in runs if r.env == env], out / f"curves_{env}.png", env)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
