r"""Sequence-level advantages ``A(x, y)``: one scalar per completion, the sample of the V-MPO E-step.

* ``value``: ``A = r - V(x)`` with a value head on the prompt (a state-value baseline, as V-MPO's
  ``A = G - V(s)``, Song et al. 2019, section "Policy evaluation", and AWR's, Peng et al. 2019).
* ``group_mean``: ``A = r - mean_{g} r_g`` over the ``N`` completions of the same prompt (GRPO's group
  baseline without its std division, the Dr. GRPO form of Liu et al. 2025, "Understanding R1-Zero-Like
  Training"); optionally divided by the group's std (GRPO's outcome-supervision normalisation, Shao et
  al. 2024, section 4.1.2).
"""

from __future__ import annotations

import torch

__all__ = ["group_mean_advantages", "group_reward_std", "value_advantages"]


def _group_moments(rewards: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample group mean and unbiased group std (0 for groups of one), both ``[B]``."""
    if rewards.shape != group.shape or rewards.dim() != 1:
        raise ValueError(f"rewards {tuple(rewards.shape)} and group {tuple(group.shape)} must both be [B]")
    r = rewards.float()
    n_groups = int(group.max().item()) + 1 if group.numel() else 0
    counts = torch.zeros(n_groups, device=r.device).index_add_(0, group, torch.ones_like(r))
    mean = torch.zeros(n_groups, device=r.device).index_add_(0, group, r) / counts.clamp_min(1.0)
    sq = torch.zeros(n_groups, device=r.device).index_add_(0, group, (r - mean[group]) ** 2)
    std = (sq / (counts - 1.0).clamp_min(1.0)).sqrt()
    return mean[group], std[group]


def group_mean_advantages(
    rewards: torch.Tensor, group: torch.Tensor, normalize_std: bool = False, eps: float = 1e-4
) -> torch.Tensor:
    """``A_i = r_i - mean_{j: group_j = group_i} r_j`` (optionally ``/ (std + eps)``).

    Args:
        rewards: ``[B]`` rewards.
        group: ``[B]`` int64 prompt index of each completion (``0 .. G-1``).
        normalize_std: divide by the group's unbiased std (GRPO, Shao et al. 2024); off = Dr. GRPO.
        eps: added to the std.

    Returns:
        ``[B]`` fp32 advantages (all 0 in a group whose rewards are equal).
    """
    mean, std = _group_moments(rewards, group)
    adv = rewards.float() - mean
    return adv / (std + eps) if normalize_std else adv


def group_reward_std(rewards: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """``[B]`` unbiased std of the rewards of each sample's group (TRL's ``frac_reward_zero_std`` input)."""
    return _group_moments(rewards, group)[1]


def value_advantages(rewards: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``A = r - V(x)`` with ``V`` detached (``[B]`` each)."""
    if rewards.shape != values.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} != values {tuple(values.shape)}")
    return rewards.float() - values.detach().float()
