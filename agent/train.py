"""``python -m agent.train --config configs/NAME.yaml [key=value ...]``: train (or resume) a run.

Examples::

    python -m agent.train                                   # CPU quick-start (embedded preset)
    python -m agent.train --config atari_vmpo env.name=Breakout train.device=cuda
    python -m agent.train train.resume=runs/CueRecall-L8-vmpo-gtrxl-s0 train.total_steps=200000
    torchrun --nproc-per-node 2 -m agent.train --config atari_cpu    # data parallel (agent/distributed.py)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from agent import distributed
from agent.checkpoint import CheckpointError
from agent.trainer import Trainer, TrainingError, default_run_name, load_latest_valid
from configs import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    list_presets,
    load_config,
    merge_config,
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
)


def build_config(
    preset: str | None,
    overrides: list[str],
    schema: type = Config,
    run_name: Callable[[Any], str] = default_run_name,
    resumable: tuple[str, ...] = RESUMABLE_KEYS,
) -> tuple[Any, Path, dict | None]:
    """Resolve the run's config, its directory and (when resuming) the checkpoint to continue from.

    A new run refuses an existing, non-empty run directory; a resumed run takes the checkpoint's config
    and accepts only the ``resumable`` keys as overrides. ``schema``/``run_name``/``resumable`` let the
    LLM adapter (``llm.train``) share this logic with its own config.
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
        raise CheckpointError(f"train.resume='{run_dir}' is not a run directory")
    _, payload = load_latest_valid(run_dir)
    saved = config_from_dict(payload["config"], source=f"checkpoint in {run_dir}", schema=schema)
    allowed, forbidden = split_overrides(overrides, resumable)
    if forbidden:
        raise ConfigError(
            f"cannot change {', '.join(forbidden)} when resuming; resumable keys: {', '.join(resumable)}"
        )
    layers = [("command-line overrides", OmegaConf.from_dotlist(allowed))]
    return merge_config(saved, layers, schema=schema), run_dir, payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.train", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default="quickstart", help=f"preset name or YAML path ({', '.join(list_presets())})"
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
        trainer = Trainer(cfg, run_dir, checkpoint, axis)
    except (ConfigError, CheckpointError, ValueError, RuntimeError, ImportError) as err:
        report_setup_error(axis, err)
        return 2
    except OSError as err:
        print(f"error: cannot set up run directory: {err.strerror or err} ({err.filename})", file=sys.stderr)
        return 2
    try:
        result = trainer.train()
    except (TrainingError, DMLabWorkerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not report:
        return 0
    print(
        f"run {run_dir}: {int(result['global_step'])} env steps, {int(result['num_updates'])} updates, "
        f"mean return (last 100 episodes) {result['recent_return']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
