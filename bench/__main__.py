"""``python -m bench``: every benchmark in one run, one table (``--quick`` for a smoke run)."""

from __future__ import annotations

import importlib
import time

from bench.common import Row, main

BENCHES = (
    "collector", "memory_cache", "unroll", "mixed_precision", "end_to_end", "throughput", "peak_memory",
    "llm",
)  # fmt: skip
TODO: tuple[tuple[str, str], ...] = ()


def run_all(quick: bool) -> list[Row]:
    rows: list[Row] = []
    for name in BENCHES:
        t0 = time.perf_counter()
        rows += importlib.import_module(f"bench.{name}").run(quick)
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", flush=True)
    rows += [Row(name, what, float("nan"), "", None, "TODO: not written yet") for name, what in TODO]
    return rows


if __name__ == "__main__":
    main(run_all)
