"""Learning tests: GTrXL + V-MPO must solve a memory task that a feed-forward core cannot.

Cue recall (envs/memory.py): the cue is shown on the first step of an 8-step episode and must be
named on the last. Optimal return 1.0 with memory; a memoryless policy gets 1/4 in expectation.
The CI version runs the README's quick-start config once per core (about 1.5 min on 2 CPU cores);
the slow version repeats it over seeds and the baseline cores.
"""

from pathlib import Path

import pytest

from agent.trainer import Trainer
from configs import load_config

MEMORY_THRESHOLD = 0.9  # mean unclipped return over the last 100 episodes
NO_MEMORY_CEILING = 0.4  # a feed-forward core cannot beat 1/4 by much (sampling noise included)


def train_quickstart(tmp_path: Path, *overrides: str) -> float:
    cfg = load_config("quickstart", ["train.progress=false", f"train.run_dir={tmp_path}", *overrides])
    return Trainer(cfg, tmp_path / "run").train()["recent_return"]


def test_gtrxl_vmpo_learns_cue_recall_where_feed_forward_cannot(tmp_path):
    gtrxl = train_quickstart(tmp_path / "gtrxl", "net.core=gtrxl")
    feed_forward = train_quickstart(tmp_path / "ff", "net.core=ff")
    assert gtrxl >= MEMORY_THRESHOLD, f"GTrXL + V-MPO reached only {gtrxl:.3f}"
    assert feed_forward <= NO_MEMORY_CEILING, (
        f"feed-forward reached {feed_forward:.3f}: the task leaks the cue"
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(("core", "threshold"), [("gtrxl", MEMORY_THRESHOLD), ("trxl_i", MEMORY_THRESHOLD)])
def test_memory_cores_learn_over_seeds(tmp_path, seed, core, threshold):
    result = train_quickstart(tmp_path, f"net.core={core}", f"train.seed={seed}", f"env.seed={seed}",
                              "train.total_steps=120000")  # fmt: skip
    assert result >= threshold, f"{core} seed {seed}: {result:.3f}"
