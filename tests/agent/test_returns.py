"""Tests for agent/returns.py: hand tables, brute-force references, episode semantics."""

from __future__ import annotations

import pytest
import torch

from agent.returns import gae, n_step_returns

# A T=5, B=2 trajectory under NEXT_STEP autoreset, gamma = 0.5 (exact in binary).
# Column 0: terminates at t=1; t=2 is the reset step (reward 0); the unroll ends mid-episode.
# Column 1: truncated at t=2 (values[3] = V(final obs) = 4); t=3 is the reset step.
REWARDS = torch.tensor([[1.0, 1.0], [2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [4.0, 2.0]])
TERMINATED = torch.tensor([[0, 0], [1, 0], [0, 0], [0, 0], [0, 0]], dtype=torch.bool)
TRUNCATED = torch.tensor([[0, 0], [0, 0], [0, 1], [0, 0], [0, 0]], dtype=torch.bool)
VALUES = torch.tensor([[10.0, 1.0], [20.0, 2.0], [30.0, 3.0], [40.0, 4.0], [50.0, 5.0], [60.0, 6.0]])
GAMMA = 0.5

# Hand-computed, column 0 with n=2:
#   t=0: 1 + .5*2 + .25*(1-term_1=0)*V2         = 2     (stops at the termination, no bootstrap)
#   t=1: 2 + .5*0*V2                             = 2
#   t=2: 0 + .5*3 + .25*V4 = 1.5 + 12.5          = 14    (reset step: garbage, masked by the learner)
#   t=3: 3 + .5*4 + .25*V5 = 3 + 2 + 15          = 20    (unroll end bootstraps from values[T])
#   t=4: 4 + .5*V5                               = 34
# Column 1 with n=2:
#   t=0: 1 + .5*1 + .25*V2                       = 2.25
#   t=1: 1 + .5*1 + .25*(1-term_2=1)*V3          = 2.5   (truncation bootstraps from V(final obs))
#   t=2: 1 + .5*V3                               = 3
#   t=3: 0 + .5*2 + .25*V5                       = 2.5
#   t=4: 2 + .5*V5                               = 5
EXPECTED_N2 = torch.tensor([[2.0, 2.25], [2.0, 2.5], [14.0, 3.0], [20.0, 2.5], [34.0, 5.0]])
# n = T: only t=2 of column 0 changes: 0 + .5*3 + .25*4 + .125*V5 = 1.5 + 1 + 7.5 = 10.
# Column 1, t=0: 1 + .5 + .25 + .125*V3 = 2.25 (same as n=2 by coincidence of the values).
EXPECTED_NT = torch.tensor([[2.0, 2.25], [2.0, 2.5], [10.0, 3.0], [20.0, 2.5], [34.0, 5.0]])


def test_n_step_returns_hand_table_n2() -> None:
    g = n_step_returns(REWARDS, VALUES, TERMINATED, TRUNCATED, GAMMA, n=2)
    torch.testing.assert_close(g, EXPECTED_N2)


def test_n_step_returns_hand_table_n_equals_t() -> None:
    g = n_step_returns(REWARDS, VALUES, TERMINATED, TRUNCATED, GAMMA, n=5)
    torch.testing.assert_close(g, EXPECTED_NT)
    # n larger than T is clamped to T.
    torch.testing.assert_close(n_step_returns(REWARDS, VALUES, TERMINATED, TRUNCATED, GAMMA, n=50), g)


def test_n_step_returns_n1_is_td0() -> None:
    g = n_step_returns(REWARDS, VALUES, TERMINATED, TRUNCATED, GAMMA, n=1)
    expected = REWARDS + GAMMA * (~TERMINATED).float() * VALUES[1:]
    torch.testing.assert_close(g, expected)


def test_truncation_and_termination_differ_only_in_bootstrap() -> None:
    # Same column 1 but terminated instead of truncated at t=2: t=2 loses the .5*V3 = 2 bootstrap.
    g_trunc = n_step_returns(REWARDS, VALUES, TERMINATED, TRUNCATED, GAMMA, n=3)
    g_term = n_step_returns(REWARDS, VALUES, TERMINATED | TRUNCATED, torch.zeros_like(TRUNCATED), GAMMA, n=3)
    assert (g_trunc[2, 1].item(), g_term[2, 1].item()) == (pytest.approx(3.0), pytest.approx(1.0))
    # 1 + .5*1 (+ .25*V3 only if truncated)
    assert (g_trunc[1, 1].item(), g_term[1, 1].item()) == (pytest.approx(2.5), pytest.approx(1.5))


def _brute_force_n_step(rewards, values, terminated, truncated, gamma, n):  # type: ignore[no-untyped-def]
    t_len, b_len = rewards.shape
    out = torch.zeros(t_len, b_len, dtype=torch.float64)
    for b in range(b_len):
        for t in range(t_len):
            g, k = 0.0, 0
            while True:
                g += gamma**k * float(rewards[t + k, b])
                done = bool(terminated[t + k, b]) or bool(truncated[t + k, b])
                if done or k + 1 == n or t + k + 1 == t_len:
                    if not bool(terminated[t + k, b]):
                        g += gamma ** (k + 1) * float(values[t + k + 1, b])
                    break
                k += 1
            out[t, b] = g
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20])
def test_n_step_returns_brute_force_random(n: int) -> None:
    gen = torch.Generator().manual_seed(n)
    t_len, b_len = 11, 6
    rewards = torch.randn(t_len, b_len, generator=gen)
    values = torch.randn(t_len + 1, b_len, generator=gen)
    terminated = torch.rand(t_len, b_len, generator=gen) < 0.15
    truncated = (torch.rand(t_len, b_len, generator=gen) < 0.15) & ~terminated
    g = n_step_returns(rewards, values, terminated, truncated, 0.9, n)
    ref = _brute_force_n_step(rewards, values, terminated, truncated, 0.9, n)
    torch.testing.assert_close(g.double(), ref, rtol=1e-5, atol=1e-5)


def test_returns_detach_values_and_compute_in_fp32() -> None:
    values = VALUES.clone().to(torch.bfloat16).requires_grad_(True)
    g = n_step_returns(REWARDS.bfloat16(), values, TERMINATED, TRUNCATED, GAMMA, n=2)
    adv, ret = gae(REWARDS.bfloat16(), values, TERMINATED, TRUNCATED, GAMMA, 0.95)
    for x in (g, adv, ret):
        assert x.dtype == torch.float32
        assert not x.requires_grad
    torch.testing.assert_close(g, EXPECTED_N2)  # all table entries are exact in bf16


def _reference_gae(rewards, values, terminated, truncated, gamma, lam):  # type: ignore[no-untyped-def]
    t_len, b_len = rewards.shape
    adv = torch.zeros(t_len, b_len, dtype=torch.float64)
    for b in range(b_len):
        for t in range(t_len):
            total, weight, k = 0.0, 1.0, t
            while k < t_len:
                nonterm = 0.0 if bool(terminated[k, b]) else 1.0
                delta = float(rewards[k, b]) + gamma * nonterm * float(values[k + 1, b]) - float(values[k, b])
                total += weight * delta
                if bool(terminated[k, b]) or bool(truncated[k, b]):
                    break
                weight *= gamma * lam
                k += 1
            adv[t, b] = total
    return adv


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_gae_matches_per_step_reference(lam: float) -> None:
    gen = torch.Generator().manual_seed(int(lam * 100))
    t_len, b_len = 9, 5
    rewards = torch.randn(t_len, b_len, generator=gen)
    values = torch.randn(t_len + 1, b_len, generator=gen)
    terminated = torch.rand(t_len, b_len, generator=gen) < 0.2
    truncated = (torch.rand(t_len, b_len, generator=gen) < 0.2) & ~terminated
    adv, ret = gae(rewards, values, terminated, truncated, 0.9, lam)
    ref = _reference_gae(rewards, values, terminated, truncated, 0.9, lam)
    torch.testing.assert_close(adv.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ret, adv + values[:-1])


def test_gae_lambda1_is_discounted_mc_with_bootstrap() -> None:
    _, ret = gae(REWARDS, VALUES, TERMINATED, TRUNCATED, GAMMA, lam=1.0)
    torch.testing.assert_close(ret, EXPECTED_NT)
    _, ret0 = gae(REWARDS, VALUES, TERMINATED, TRUNCATED, GAMMA, lam=0.0)
    torch.testing.assert_close(ret0, n_step_returns(REWARDS, VALUES, TERMINATED, TRUNCATED, GAMMA, n=1))


def test_shape_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="values"):
        n_step_returns(REWARDS, VALUES[:-1], TERMINATED, TRUNCATED, GAMMA, n=2)
    with pytest.raises(ValueError, match="truncated"):
        gae(REWARDS, VALUES, TERMINATED, TRUNCATED[:-1], GAMMA, 0.9)
    with pytest.raises(ValueError, match="n must be"):
        n_step_returns(REWARDS, VALUES, TERMINATED, TRUNCATED, GAMMA, n=0)
