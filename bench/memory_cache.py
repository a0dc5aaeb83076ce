"""GTrXL acting with the key/value cache vs recomputing the window, at memory lengths M = 64, 256, 512.

Cached: ``TransformerCore.step`` projects one new token per layer and attends over the cached keys.
Recompute: what a core without a cache does each step: project keys/values of the whole stored memory
(``refresh_cache``, the same projections ``unroll`` makes) and then step. Both at the paper width
(8 layers x 256), one acting batch of 32 envs. Both step from a state returned by ``step`` (which the next
step updates in place, one ring slot per layer), as the actor does.
"""

from __future__ import annotations

import torch

from bench.common import Row, check, interleaved, main, median_ratio
from bench.unroll import PAPER, QUICK
from configs.schema import NetConfig
from networks.gtrxl import StepState, TransformerCore


def run(quick: bool) -> list[Row]:
    sizes = (16, 64, 128) if quick else (64, 256, 512)
    base = QUICK if quick else PAPER
    B = 8 if quick else 32
    rows, cached_cost = [], {}
    reps = 5 if quick else 7
    for M in sizes:
        torch.manual_seed(0)
        core = TransformerCore(NetConfig(**{**base, "memory_length": M})).eval()
        state = core.initial_state(B)
        state["memory"] = torch.randn_like(state["memory"])
        state["valid"][:] = True
        x, first = torch.randn(B, core.out_dim), torch.zeros(B, dtype=torch.bool)
        with torch.no_grad():  # an acting state as the actor holds it: returned by step, updated in place
            state = core.step(x, first, core.refresh_cache(state))[1]

        @torch.no_grad()
        def cached(core=core, x=x, first=first, state=state):
            return core.step(x, first, state)[0]

        @torch.no_grad()
        def recompute(core=core, x=x, first=first, state=state):
            return core.step(x, first, core.refresh_cache(state))[0]

        forks = [StepState({k: v.clone() for k, v in state.items()}) for _ in range(2)]  # a step consumes one
        same = torch.allclose(cached(state=forks[0]), recompute(state=forks[1]))
        times = interleaved({"recompute": recompute, "cached": cached}, reps)
        ratio = median_ratio(times["recompute"], times["cached"])
        cached_cost[M] = min(times["cached"])
        target = ">= 5x" if M == sizes[-1] else ""
        rows.append(Row("memory_cache", f"recompute / cached step, M={M}", ratio, target,
                        check(ratio, 5.0) if target else None, f"outputs equal: {same}"))  # fmt: skip
    growth = cached_cost[sizes[-1]] / cached_cost[sizes[0]]
    rows.append(Row("memory_cache", f"cached step cost M={sizes[-1]} / M={sizes[0]}", growth, "~flat (<= 2x)",
                    growth <= 2.0, f"memory {sizes[-1] // sizes[0]}x longer"))  # fmt: skip
    return rows


if __name__ == "__main__":
    main(run)
