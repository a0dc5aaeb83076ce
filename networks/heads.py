"""Policy and value heads; the value head carries PopArt statistics per task.

PopArt: van Hasselt et al. 2016, "Learning values across many orders of magnitude", Algorithm 1
("Preserving Outputs Precisely, while Adaptively Rescaling Targets"); V-MPO (Song et al. 2019) keeps one
normalisation per task. The statistics stay fp32 whatever precision the network runs in.
"""

from __future__ import annotations

import torch
from torch import nn


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


class PolicyHead(nn.Module):
    """Linear -> logits [.., A]. Small initial weights so the initial policy is near uniform."""

    def __init__(self, d_in: int, num_actions: int):
        super().__init__()
        self.linear = nn.Linear(d_in, num_actions)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)


class PopArtValueHead(nn.Module):
    """Normalised values ``n = W h + b`` [.., K] for K tasks, with running statistics per task.

    Unnormalised value ``V = sigma * n + mu``. Buffers (fp32): ``mu`` [K] (first moment), ``nu`` [K]
    (second moment); ``sigma = sqrt(nu - mu^2)`` clamped to ``[sigma_min, sigma_max]``.
    """

    def __init__(self, d_in: int, num_tasks: int, sigma_min: float = 1e-4, sigma_max: float = 1e6):
        super().__init__()
        self.linear = nn.Linear(d_in, num_tasks)
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.register_buffer("mu", torch.zeros(num_tasks, dtype=torch.float32))
        self.register_buffer("nu", torch.ones(num_tasks, dtype=torch.float32))

    def _apply(self, fn, recurse=True):
        """Casting the module (``.double()``, ``.to(torch.bfloat16)``) keeps the statistics fp32."""
        super()._apply(fn, recurse)
        self.mu, self.nu = self.mu.float(), self.nu.float()
        return self

    @property
    def sigma(self) -> torch.Tensor:
        """[K] fp32."""
        return self._sigma(self.mu, self.nu)

    def _sigma(self, mu: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
        var = (nu - mu**2).clamp(min=self.sigma_min**2)
        return var.sqrt().clamp(self.sigma_min, self.sigma_max)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h [.., d] -> normalised values [.., K]."""
        return self.linear(h)

    def normalize(self, G: torch.Tensor, task: torch.Tensor | int) -> torch.Tensor:
        """(G - mu[task]) / sigma[task] in (at least) fp32; ``task``: int or long tensor shaped like ``G``."""
        task = torch.as_tensor(task, device=self.mu.device)
        return (_at_least_fp32(G) - self.mu[task]) / self.sigma[task]

    def unnormalize(self, v: torch.Tensor, task: torch.Tensor | int) -> torch.Tensor:
        """sigma[task] * v + mu[task] in (at least) fp32."""
        task = torch.as_tensor(task, device=self.mu.device)
        return _at_least_fp32(v) * self.sigma[task] + self.mu[task]

    @torch.no_grad()
    def update_stats(self, targets: torch.Tensor, task_ids: torch.Tensor, beta: float) -> None:
        """Move the statistics of the tasks present in ``targets`` [N] (unnormalised returns; task ids [N])
        towards the batch moments with step ``beta``, then rescale the last layer so that
        ``sigma * (W h + b) + mu`` is unchanged for every input (PopArt, Algorithm 1)::

            W'_k = W_k sigma_k / sigma'_k,    b'_k = (sigma_k b_k + mu_k - mu'_k) / sigma'_k
        """
        targets, task_ids = targets.detach().float().reshape(-1), task_ids.reshape(-1).long()
        K = self.mu.shape[0]
        count = torch.zeros(K, device=self.mu.device).index_add_(0, task_ids, torch.ones_like(targets))
        sum1 = torch.zeros(K, device=self.mu.device).index_add_(0, task_ids, targets)
        sum2 = torch.zeros(K, device=self.mu.device).index_add_(0, task_ids, targets**2)
        present = count > 0
        step = torch.where(present, torch.as_tensor(beta, dtype=torch.float32), 0.0)  # [K]
        n = count.clamp(min=1)
        new_mu = (1 - step) * self.mu + step * sum1 / n
        new_nu = (1 - step) * self.nu + step * sum2 / n
        old_sigma, new_sigma = self.sigma, self._sigma(new_mu, new_nu)

        w, b = self.linear.weight, self.linear.bias  # [K, d], [K]
        w.copy_((w.double() * (old_sigma / new_sigma).double()[:, None]).to(w.dtype))
        b_new = (old_sigma.double() * b.double() + self.mu.double() - new_mu.double()) / new_sigma.double()
        b.copy_(b_new.to(b.dtype))
        self.mu.copy_(new_mu)
        self.nu.copy_(new_nu)
