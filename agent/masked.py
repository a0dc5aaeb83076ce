"""Reductions over the valid steps of a [T, B] batch (reset steps and padding are masked out)."""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ``mask`` (0 if empty); entries outside the mask never reach the graph."""
    mask = mask.bool()
    return torch.where(mask, x, torch.zeros_like(x)).sum() / mask.sum().clamp_min(1)
