"""bf16 autocast vs our own fp32 path, and how much of the machine's bf16 matmul peak the learner uses.

Rows:
- GTrXL unroll forward+backward (paper config): bf16 autocast / fp32, same fast path, side by side.
- learner matmul throughput: matmul FLOPs of the bf16 unroll (counted by the profiler) per second of
  the whole forward+backward, over the bf16 2048^2 matmul rate measured in the same run.
- an 8-layer 256/512 MLP stack trained in bf16 vs fp32 (what the hardware offers when nothing but
  matmuls run; informational).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from bench.common import Row, check, interleaved, main, median_ratio
from bench.unroll import fwd_bwd, make_problem


def matmul_rate(n: int, dtype: torch.dtype) -> tuple[callable, float]:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return (lambda: a @ b), 2.0 * n**3


def matmul_flops(fn) -> float:
    """FLOPs of the matrix products in one call of ``fn`` (profiler's count for mm/addmm/bmm)."""
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        fn()
    return float(sum(e.flops for e in prof.key_averages() if e.flops))


def run(quick: bool) -> list[Row]:
    core, x, first, state = make_problem(quick)
    unroll = lambda: core.unroll(x, first, state)[0]

    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return unroll()

    reps = 3 if quick else 5
    peak_mm, peak_flops = matmul_rate(512 if quick else 2048, torch.bfloat16)
    flops = matmul_flops(lambda: fwd_bwd(bf16))
    times = interleaved(
        {"fp32": lambda: fwd_bwd(unroll), "bf16": lambda: fwd_bwd(bf16), "peak": peak_mm}, reps
    )
    speedup = median_ratio(times["fp32"], times["bf16"])
    share = median_ratio([flops / t for t in times["bf16"]], [peak_flops / t for t in times["peak"]])
    peak_gflops = peak_flops / min(times["peak"]) / 1e9

    torch.manual_seed(0)
    width, hidden, layers = 256, 512, 8
    mods = []
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width)]
    mlp = nn.Sequential(*mods)
    xs = torch.randn(256 if quick else 2048, width)

    def mlp_step(enabled: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            y = mlp(xs)
        y.float().square().mean().backward()

    mt = interleaved({"fp32": lambda: mlp_step(False), "bf16": lambda: mlp_step(True)}, reps)
    mlp_speedup = median_ratio(mt["fp32"], mt["bf16"])
    cfg = "quick" if quick else "paper"
    return [
        Row("mixed_precision", "GTrXL unroll fwd+bwd bf16 / fp32", speedup, ">= 2.5x", check(speedup, 2.5),
            f"{cfg} config, autocast, same fast path"),
        Row("mixed_precision", "learner matmul rate / bf16 matmul peak", share, ">= 0.30", check(share, 0.30),
            f"peak {peak_gflops:.0f} GFLOP/s ({'512' if quick else '2048'}^2 bf16); "
            f"{flops / 1e9:.1f} GFLOP of matmuls per fwd+bwd"),
        Row("mixed_precision", "8x256/512 MLP fwd+bwd bf16 / fp32", mlp_speedup, "", None,
            "what AMX gives when only matmuls run"),
    ]  # fmt: skip


if __name__ == "__main__":
    main(run)
