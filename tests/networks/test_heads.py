"""PopArt (van Hasselt et al. 2016): outputs preserved precisely; statistics track the targets."""

from __future__ import annotations

import pytest
import torch

from networks.heads import PolicyHead, PopArtValueHead


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-5), (torch.float32, 1e-4)])
def test_popart_preserves_unnormalised_outputs(dtype: torch.dtype, tol: float) -> None:
    """Exact up to rounding: 1e-5 with a float64 value layer, fp32 rounding (~1e-6 relative) in fp32.
    The statistics stay fp32 either way."""
    torch.manual_seed(0)
    head = PopArtValueHead(8, num_tasks=3)
    head.linear.to(dtype)
    with torch.no_grad():
        head.linear.weight.normal_()
        head.linear.bias.normal_()
    h = torch.randn(32, 8, dtype=dtype)
    tasks = torch.arange(3)
    for i in range(20):
        before = head.unnormalize(head(h), tasks)  # [32, 3]
        task_ids = torch.randint(0, 2, (64,))  # task 2 never appears: its statistics must not move
        targets = 50.0 + 30.0 * torch.randn(64) * (1 + task_ids) + 10 * i
        mu2, nu2 = head.mu[2].clone(), head.nu[2].clone()
        head.update_stats(targets, task_ids, beta=0.3)
        after = head.unnormalize(head(h), tasks)
        torch.testing.assert_close(after, before, atol=tol, rtol=tol)
        assert head.mu[2] == mu2 and head.nu[2] == nu2
    assert head.sigma[0] > 10 and head.mu[0] > 50  # the statistics really moved
    assert head.mu.dtype == torch.float32
    G = torch.randn(5, dtype=dtype) * 40
    torch.testing.assert_close(head.unnormalize(head.normalize(G, 1), 1), G, atol=tol, rtol=tol)


def test_popart_statistics_converge_on_stationary_stream() -> None:
    torch.manual_seed(0)
    head = PopArtValueHead(4, num_tasks=2).to(torch.bfloat16)  # casting the module keeps stats fp32
    means, stds = torch.tensor([3.0, -10.0]), torch.tensor([2.0, 0.5])
    for _ in range(1500):
        task_ids = torch.randint(0, 2, (64,))
        head.update_stats(means[task_ids] + stds[task_ids] * torch.randn(64), task_ids, beta=0.02)
    torch.testing.assert_close(head.mu, means, atol=0.1, rtol=0)
    torch.testing.assert_close(head.sigma, stds, atol=0, rtol=0.05)
    assert head.mu.dtype == head.nu.dtype == torch.float32


def test_popart_sigma_floor() -> None:
    head = PopArtValueHead(4, num_tasks=1, sigma_min=1e-4)
    for _ in range(200):
        head.update_stats(torch.full((16,), 7.0), torch.zeros(16, dtype=torch.long), beta=0.5)
    assert torch.isfinite(head.linear.weight).all() and head.sigma[0] >= 1e-4


def test_policy_head_starts_near_uniform() -> None:
    logits = PolicyHead(32, 6)(torch.randn(10, 32))
    assert logits.shape == (10, 6) and logits.abs().max() < 0.5
