"""bench.throughput on a tiny config: every variant's real Trainer.iteration runs and every ratio is a
finite, positive number (the quick mode of the bench, at test size)."""

import math

from bench.throughput import VARIANTS, measure, rows_for
from tests.agent.test_trainer import TINY


def test_throughput_measures_every_variant_against_the_raw_env():
    times, desc = measure("quickstart", TINY, reps=1)
    assert set(times) == {*VARIANTS, "raw"} and all(len(t) == 1 for t in times.values())
    rows = rows_for("tiny", times, desc, steps=32)
    assert len(rows) == 6 + len(VARIANTS)
    assert all(math.isfinite(r.value) and r.value > 0 for r in rows)
    assert "CueRecall" in rows[0].note
