"""Shared benchmark machinery: interleaved A/B timing, median ratios, the result row and the table.

The benchmark machine is shared (2 cores, other jobs running): absolute times drift by factors of two
from minute to minute, so every figure is a ratio of two things timed in alternation within one run
(``A B A B ...``), reported as the median of the per-repetition ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Row:
    """One line of the table: ``value`` (a ratio, or a figure with its unit) against ``target``."""

    bench: str
    metric: str
    value: float
    target: str = ""  # e.g. ">= 1.5x"; empty = informational
    passed: bool | None = None  # None = no target
    note: str = ""

    def status(self) -> str:
        return {True: "PASS", False: "MISS", None: "info"}[self.passed]


def check(value: float, low: float) -> bool:
    return bool(value >= low)


def interleaved(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, called in alternation ``reps`` times after ``warmup`` calls."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median_ratio(slow: list[float], fast: list[float]) -> float:
    """Median over repetitions of ``slow[i] / fast[i]`` (a speed-up when ``slow`` is the baseline)."""
    return statistics.median(s / f for s, f in zip(slow, fast, strict=True))


def setup_threads(threads: int | None = None) -> int:
    """Torch intra-op threads for the benchmarks: ``BENCH_THREADS`` or 1.

    One thread by default: on a 2-core machine that other jobs share, two OpenMP threads spin at every
    barrier while one of them is descheduled, and a 0.3 ms element-wise op takes ~12 ms (measured; see
    docs/performance.md). One thread keeps the A/B ratios about the arithmetic, not the scheduler.
    """
    n = threads or int(os.environ.get("BENCH_THREADS", "1"))
    torch.set_num_threads(n)
    return n


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {gpu}, "
        f"{torch.get_num_threads()} torch thread(s)"
    )


def format_table(rows: list[Row]) -> str:
    header = "| bench | metric | value | target | status | note |"
    lines = [header, "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.bench} | {r.metric} | {r.value:.3g} | {r.target} | {r.status()} | {r.note} |")
    return "\n".join(lines)


def main(run: Callable[[bool], list[Row]], argv: list[str] | None = None) -> list[Row]:
    """Entry point of ``python -m bench.NAME``: ``--quick`` for a short run (tests, smoke checks)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and smaller sizes")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default BENCH_THREADS or 1)"
    )
    args = parser.parse_args(argv)
    setup_threads(args.threads)
    print(machine(), flush=True)
    rows = run(args.quick)
    print(format_table(rows))
    return rows
