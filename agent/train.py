"""``python -m agent.train --config configs/NAME.yaml [key=value ...]``: train (or resume) a run.

Examples::

    python -m agent.train                                   # CPU quick-start (embedded preset)
    python -m agent.train --config atari_vmpo env.name=Breakout train.device=cuda
    python -m agent.train train.resume=runs/CueRecall-L8-vmpo-gtrxl-s0 train.total_steps=200000
    torchrun --nproc-per-node 2 -m agent.train --config atari_cpu    # data parallel (agent/distributed.py)
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from agent import distributed
from agent.checkpoint import CheckpointError, list_checkpoints, load_latest_valid, prune_temp_files
from agent.trainer import StopFlag, Trainer, TrainingError, default_run_name
from configs import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    list_presets,
    load_config,
    merge_config,
    node_at,
    split_overrides,
)
from envs.dmlab import DMLabWorkerError

# Keys that may change when a run is resumed; everything else must match the checkpoint's config.
RESUMABLE_KEYS = (
    "train.total_steps",
    "train.device",
    "train.progress",
    "train.log_interval",
    "train.checkpoint_interval",
    "train.keep_checkpoints",
    "train.torch_threads",
    "train.resume",
    "train.sync_check_interval",
    "train.dist_timeout_s",
    "train.overlap",  # checkpoints hold trained data only: a run may switch between the two loops
    "train.actor_threads",
)


def build_config(
    preset: str | None,
    overrides: list[str],
    schema: type = Config,
    run_name: Callable[[Any], str] = default_run_name,
    resumable: tuple[str, ...] = RESUMABLE_KEYS,
) -> tuple[Any, Path, dict | None]:
    """Resolve the run's config, its directory and (when resuming) the checkpoint to continue from.

    A new run refuses an existing, non-empty run directory; a resumed run takes the config of its newest
    loadable checkpoint and accepts only the ``resumable`` keys as overrides; a resumed run that holds no
    checkpoint (killed before its first) starts again from scratch. ``schema``/``run_name``/``resumable``
    let the LLM adapter (``llm.train``) share this logic with its own config.
    """
    cfg = load_config(preset, overrides, schema=schema)
    if not cfg.train.resume:
        run_dir = Path(cfg.train.run_dir) / (cfg.train.run_name or run_name(cfg))
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(
                f"run directory '{run_dir}' already exists; pass train.resume={run_dir} to continue it "
                "or train.run_name=NEW to start another"
            )
        return cfg, run_dir, None
    run_dir = Path(cfg.train.resume)
    if not run_dir.is_dir():
        what = "is a file; pass its run directory" if run_dir.exists() else "does not exist"
        raise CheckpointError(f"train.resume='{run_dir}' {what}")
    prune_temp_files(run_dir)  # partial checkpoint writes of a killed process
    allowed, forbidden = split_overrides(overrides, resumable)
    layers = [("command-line overrides", OmegaConf.from_dotlist(allowed))]
    if not list_checkpoints(run_dir):
        return _restart_config(cfg, run_dir, layers, forbidden, schema, resumable), run_dir, None
    _, payload = load_latest_valid(run_dir)
    saved = config_from_dict(payload["config"], source=f"checkpoint in {run_dir}", schema=schema)
    _refuse_forbidden(forbidden, resumable, cfg, saved)
    return merge_config(saved, layers, schema=schema), run_dir, payload


def _refuse_forbidden(forbidden: list[str], resumable: tuple[str, ...], cfg: Any, saved: Any) -> None:
    """Refuse the non-resumable keys whose value on the command line (in ``cfg``) differs from the
    resumed run's (``saved``); repeating a run's own value (e.g. its original command) is accepted."""
    forbidden = [key for key in dict.fromkeys(forbidden) if node_at(cfg, key) != node_at(saved, key)]
    if forbidden:
        raise ConfigError(
            f"cannot change {', '.join(forbidden)} when resuming; resumable keys: {', '.join(resumable)}"
        )


def _restart_config(
    cfg: Any, run_dir: Path, layers: list, forbidden: list[str], schema: type, resumable: tuple[str, ...]
) -> Any:
    """A run killed before its first checkpoint starts again from scratch, in the same directory, with
    the config it wrote (``config.yaml``) or, if it did not get that far, the command line's."""
    saved_yaml = run_dir / "config.yaml"
    if not saved_yaml.is_file():
        print(f"note: '{run_dir}' holds no checkpoint and no config.yaml; starting it from scratch with "
              "the command line's config", file=sys.stderr)  # fmt: skip
        return cfg
    try:
        data = yaml.safe_load(saved_yaml.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read '{saved_yaml}': {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"'{saved_yaml}' must hold a mapping of config sections")
    saved = config_from_dict(data, source=f"'{saved_yaml}'", schema=schema)
    _refuse_forbidden(forbidden, resumable, cfg, saved)
    print(f"note: '{run_dir}' holds no checkpoint (it stopped before its first); starting it from scratch "
          "with its config.yaml", file=sys.stderr)  # fmt: skip
    return merge_config(saved, layers, schema=schema)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.train", description=__doc__.splitlines()[0])
    presets = list_presets(Config)  # the llm_* presets are llm.train's
    parser.add_argument(
        "--config", default="quickstart", help=f"preset name or YAML path ({', '.join(presets)})"
    )
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. algo.lr=3e-4")
    args = parser.parse_args(argv)
    with distributed.launched() as axis:
        return _run(args, axis)


def resolve_run(
    axis: distributed.BatchAxis, build: Callable[[], tuple[Any, Path, dict | None]], schema: type = Config
) -> tuple[Any, Path, dict | None, distributed.BatchAxis]:
    """Rank 0 resolves the config and run directory (``build``, which reads any checkpoint); the other
    ranks receive them. One resolution keeps the ranks in one directory (a default run name carries a
    timestamp), and shipping the checkpoint over the process group needs no shared filesystem. Returns
    them with the axis whose collectives time out after the config's ``train.dist_timeout_s``.
    """
    if not axis.distributed:
        return (*build(), axis)
    found: tuple | str | None = None
    error: Exception | None = None
    if axis.is_main:
        try:
            cfg, run_dir, checkpoint = build()
            found = (config_to_dict(cfg), str(run_dir), checkpoint)
        except Exception as err:  # every rank must hear of it, or the others wait for the broadcast
            found, error = f"{err}", err
    found = axis.broadcast_object(found)
    if error is not None:
        raise error
    if isinstance(found, str):
        raise ConfigError(found)  # rank 0 reports it
    cfg_dict, run_dir, checkpoint = found
    cfg = config_from_dict(cfg_dict, source="rank 0", schema=schema)
    return cfg, Path(run_dir), checkpoint, distributed.with_timeout(axis, cfg.train.dist_timeout_s)


def report_setup_error(axis: distributed.BatchAxis, err: Exception) -> None:
    """One copy of a setup error: rank 0 prints it; other ranks print only errors of their own."""
    if axis.is_main:
        print(f"error: {err}", file=sys.stderr)
    elif not isinstance(err, ConfigError):  # rank 0 reports config errors
        print(f"error: rank {axis.rank}: {err}", file=sys.stderr)


def _run(args: argparse.Namespace, axis: distributed.BatchAxis) -> int:
    report = axis.is_main  # one copy of every message
    try:
        cfg, run_dir, checkpoint, axis = resolve_run(axis, lambda: build_config(args.config, args.overrides))
        if checkpoint is not None and checkpoint["counters"]["global_step"] >= cfg.train.total_steps:
            if report:
                done = checkpoint["counters"]["global_step"]
                print(f"run {run_dir} is already complete: {done} env steps of train.total_steps="
                      f"{cfg.train.total_steps}; pass a larger train.total_steps to continue it")  # fmt: skip
            return 0
        trainer = Trainer(cfg, run_dir, checkpoint, axis)
    except (ConfigError, CheckpointError, ValueError, RuntimeError, ImportError) as err:
        report_setup_error(axis, err)
        return 2
    except OSError as err:
        print(f"error: cannot set up run directory: {err.strerror or err} ({err.filename})", file=sys.stderr)
        return 2
    # a signal while the run stops (the trainer closing its envs and threads, then the error report) is
    # held, not fatal: under torchrun a dead rank's launcher sends SIGTERM to the others right away, and
    # it must not cut off the line that says how to resume
    with StopFlag():
        try:
            result = trainer.train()
        except (TrainingError, DMLabWorkerError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    if not report:
        return 0
    recent = result["recent_return"]
    returns = "no episode finished" if math.isnan(recent) else f"mean return (last 100 episodes) {recent:.3f}"
    steps, updates = int(result["global_step"]), int(result["num_updates"])
    print(f"run {run_dir}: {steps} env steps, {updates} updates, {returns}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
