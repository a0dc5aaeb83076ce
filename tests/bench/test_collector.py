"""bench.collector --quick: both rows come back with finite, positive ratios."""

import math

from bench.collector import run


def test_collector_quick_rows():
    rows = run(quick=True)
    assert [r.metric for r in rows] == [
        "rollout loop / raw envpool steps/s",
        "loop alone (replayed env) / raw envpool step time",
    ]
    assert all(math.isfinite(r.value) and r.value > 0 for r in rows)
    assert rows[0].passed is not None and rows[1].passed is None  # the second row is informational
