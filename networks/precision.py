"""Mixed precision: which dtype the network body runs in, and the autocast context that applies it.

DESIGN.md: the network may run in bf16 (autocast); the V-MPO duals, log-sum-exp, E-step weights, KL,
returns and PopArt statistics stay fp32. ``AgentNet`` runs the torso, input projection and core under
:func:`autocast` and casts the core output to fp32 before the policy and PopArt value heads, so every
tensor the losses see is fp32.

``train.bf16``: ``auto`` turns bf16 on where the hardware has fast bf16 matmuls (a CUDA device with bf16
support, or a CPU with AMX / AVX512-BF16), ``on`` forces it, ``off`` keeps fp32.
"""

from __future__ import annotations

import contextlib
import functools

import torch

BF16_CHOICES = ("auto", "on", "off")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16 on this CPU (Linux ``/proc/cpuinfo`` flags; oneDNN's own check as a fallback)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return " amx_bf16" in flags or " avx512_bf16" in flags
    except OSError:
        return bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())


def resolve_bf16(setting: str, device: torch.device | str) -> bool:
    """``train.bf16`` (auto | on | off) on ``device`` -> whether the network body runs in bf16."""
    if setting not in BF16_CHOICES:
        raise ValueError(f"train.bf16={setting!r} is not valid; accepted values: {', '.join(BF16_CHOICES)}")
    if setting != "auto":
        return setting == "on"
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def autocast(device: torch.device | str, enabled: bool):
    """bf16 autocast on ``device`` when ``enabled``, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
