"""GTrXL acting with the key/value cache vs recomputing the window, at memory lengths M = 64, 256, 512.

Cached: ``TransformerCore.step`` projects one new token per layer and attends over the cached keys.
Recompute: what a core without a cache does each step: project keys/values of the whole stored memory
(``refresh_cache``, the same projections ``unroll`` makes) and then step. Both at the paper width
(8 layers x 256), one acting batch of 32 envs. Both step from a state returned by ``step`` (which the next
step updates in place, one ring slot per layer), as the actor does.

Cost growth in M: the cached step at the largest M timed in alternation with the cached step at the
smallest M (median of the per-repetition ratios), at B = 32 and at the quick-start/Atari-CPU acting batch
of 16 envs. Attention over M keys is O(M) per step (one pass over the cached keys and one over the values
per layer); the target is that it does not dominate the O(1) projections at these sizes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.common import Row, check, interleaved, main, median_ratio
from bench.unroll import PAPER, QUICK
from configs.schema import NetConfig
from networks.gtrxl import StepState, TransformerCore


def acting(core: TransformerCore, B: int) -> tuple[Callable, Callable, Callable]:
    """An acting state of ``B`` envs with a full memory -> (cached step, recompute step, equality check)."""
    torch.manual_seed(0)
    state = core.initial_state(B)
    state["memory"] = torch.randn_like(state["memory"])
    state["valid"][:] = True
    x, first = torch.randn(B, core.out_dim), torch.zeros(B, dtype=torch.bool)
    with torch.no_grad():  # an acting state as the actor holds it: returned by step, updated in place
        state = core.step(x, first, core.refresh_cache(state))[1]

    @torch.no_grad()
    def cached(state=state):
        return core.step(x, first, state)[0]

    @torch.no_grad()
    def recompute(state=state):
        return core.step(x, first, core.refresh_cache(state))[0]

    def same() -> bool:
        forks = [StepState({k: v.clone() for k, v in state.items()}) for _ in range(2)]  # a step consumes one
        return torch.allclose(cached(state=forks[0]), recompute(state=forks[1]))

    return cached, recompute, same


def run(quick: bool) -> list[Row]:
    sizes = (16, 64, 128) if quick else (64, 256, 512)
    base = QUICK if quick else PAPER
    B, B_small = (8, 4) if quick else (32, 16)
    reps = 5 if quick else 7
    rows, cores, cached_at = [], {}, {}
    for M in sizes:
        torch.manual_seed(0)
        cores[M] = TransformerCore(NetConfig(**{**base, "memory_length": M})).eval()
        cached, recompute, same = acting(cores[M], B)
        cached_at[M] = cached
        times = interleaved({"recompute": recompute, "cached": cached}, reps)
        ratio = median_ratio(times["recompute"], times["cached"])
        target = ">= 5x" if M == sizes[-1] else ""
        rows.append(Row("memory_cache", f"recompute / cached step, M={M}", ratio, target,
                        check(ratio, 5.0) if target else None, f"outputs equal: {same()}"))  # fmt: skip
    lo, hi = sizes[0], sizes[-1]
    for batch in (B, B_small):
        if batch == B:
            steps = {hi: cached_at[hi], lo: cached_at[lo]}
        else:
            steps = {M: acting(cores[M], batch)[0] for M in (hi, lo)}
        times = interleaved(steps, reps)
        growth = median_ratio(times[hi], times[lo])
        metric = f"cached step cost M={hi} / M={lo}, B={batch}"
        note = f"memory {hi // lo}x longer; timed in alternation"
        rows.append(Row("memory_cache", metric, growth, "~flat (<= 2x)", growth <= 2.0, note))
    return rows


if __name__ == "__main__":
    main(run)
