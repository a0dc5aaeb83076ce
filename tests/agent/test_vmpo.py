"""Tests for agent/vmpo.py and agent/duals.py: hand values, stability, dual gradient signs."""

from __future__ import annotations

import math

import pytest
import torch

from agent.duals import LagrangeMultiplier, inverse_softplus
from agent.vmpo import (
    Penalty,
    categorical_kl,
    e_step_weights,
    entropy_floor_loss,
    policy_loss,
    temperature_loss,
    topk_mask,
    trust_region_loss,
    vmpo_loss,
)

# ---------------------------------------------------------------------------------------------- top-k


def test_topk_count_is_floor_with_at_least_one() -> None:
    adv = torch.tensor([0.3, -1.0, 2.0, 0.1, 5.0, -3.0, 0.0])
    valid = torch.ones(7, dtype=torch.bool)
    sel = topk_mask(adv, valid, 0.5)  # floor(3.5) = 3
    assert sel.tolist() == [True, False, True, False, True, False, False]
    assert topk_mask(adv, valid, 0.01).sum() == 1  # floor(0.07) = 0 -> at least 1
    assert topk_mask(adv, valid, 0.01)[4]  # ... the max
    assert topk_mask(adv, valid, 1.0).all()
    # 0.29 * 100 = 28.999999999999996 in float64: the tolerance keeps k = 29.
    assert topk_mask(torch.arange(100.0), torch.ones(100, dtype=torch.bool), 0.29).sum() == 29


def test_topk_ties_broken_by_lower_index() -> None:
    adv = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0, 3.0])
    sel = topk_mask(adv, torch.ones(6, dtype=torch.bool), 0.5)  # k = 3 among four 3.0s
    assert sel.tolist() == [False, True, True, False, True, False]


def test_topk_masked_entries_never_selected() -> None:
    adv = torch.tensor([[100.0, 1.0], [50.0, 2.0], [-1.0, 3.0]])
    valid = torch.tensor([[0, 1], [0, 1], [1, 1]], dtype=torch.bool)
    sel = topk_mask(adv, valid, 0.5)  # n_valid = 4 -> k = 2 among {1, 2, -1, 3}
    assert sel.tolist() == [[False, False], [False, True], [False, True]]
    assert not topk_mask(adv, valid, 1.0)[~valid].any()
    assert not topk_mask(adv, torch.zeros_like(valid), 0.5).any()  # nothing valid -> nothing selected


# ---------------------------------------------------------------------------------------------- E-step


def test_psi_matches_hand_softmax() -> None:
    adv = torch.tensor([1.0, 0.0, 2.0, -5.0])
    sel = torch.tensor([True, True, True, False])
    psi = e_step_weights(adv, sel, torch.tensor(2.0))
    z = math.exp(0.5) + 1.0 + math.exp(1.0)
    expected = torch.tensor([math.exp(0.5) / z, 1.0 / z, math.exp(1.0) / z, 0.0])
    torch.testing.assert_close(psi, expected)


def test_psi_is_detached_and_stable() -> None:
    adv = torch.tensor([1000.0, 0.0, -1000.0], requires_grad=True)
    eta = torch.tensor(1.0, requires_grad=True)
    psi = e_step_weights(adv, torch.ones(3, dtype=torch.bool), eta)
    assert not psi.requires_grad
    torch.testing.assert_close(psi, torch.tensor([1.0, 0.0, 0.0]))


def _hand_temperature_loss(adv: list[float], eta: float, eps: float) -> float:
    return eta * eps + eta * math.log(sum(math.exp(a / eta) for a in adv) / len(adv))


def test_temperature_loss_hand_value() -> None:
    adv = torch.tensor([0.5, -0.2, 1.0, 3.0])
    sel = torch.tensor([True, True, True, False])
    loss, extras = temperature_loss(torch.tensor(0.7), adv, sel, eps_eta=0.1)
    expected = _hand_temperature_loss([0.5, -0.2, 1.0], 0.7, 0.1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert extras["loss/eta"].item() == pytest.approx(expected, rel=1e-6)
    assert extras["vmpo/eta"].item() == pytest.approx(0.7)


def test_temperature_loss_stable_at_large_adv_over_eta() -> None:
    # |A| / eta ~ 1e3: naive exp overflows; the limit is eta*eps + max A + eta*log(#argmax / k).
    adv = torch.tensor([1000.0, 0.0, -1000.0, 500.0])
    eta = torch.tensor(1.0, requires_grad=True)
    loss, extras = temperature_loss(eta, adv, torch.ones(4, dtype=torch.bool), eps_eta=0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(eta.grad)
    assert loss.item() == pytest.approx(0.1 + 1000.0 - math.log(4.0), rel=1e-6)
    # Two tied maxima: + eta*log(2/k).
    loss2, _ = temperature_loss(
        torch.tensor(1e-3), torch.tensor([1.0, 1.0, 0.0]), torch.ones(3, dtype=bool), 0.1
    )
    assert loss2.item() == pytest.approx(1e-4 + 1.0 + 1e-3 * math.log(2.0 / 3.0), rel=1e-6)
    # psi KL to uniform hits its maximum log(k) when one sample dominates.
    assert extras["vmpo/kl_psi"].item() == pytest.approx(math.log(4.0), rel=1e-5)


def test_temperature_gradient_only_to_eta_and_equals_eps_minus_kl() -> None:
    adv = torch.tensor([0.3, -0.4, 1.2, 0.0], requires_grad=True)
    eta = torch.tensor(0.5, requires_grad=True)
    sel = torch.ones(4, dtype=torch.bool)
    loss, extras = temperature_loss(eta, adv, sel, eps_eta=0.05)
    loss.backward()
    assert adv.grad is None
    # dL/deta = eps_eta - KL(psi || uniform): the derivative of Song et al. 2019, eq. 4.
    assert eta.grad.item() == pytest.approx(0.05 - extras["vmpo/kl_psi"].item(), rel=1e-5)


@pytest.mark.parametrize("ratio", [2.5e3, 2.5e6, 1e8, 2.5e8])
def test_temperature_gradient_exact_at_huge_adv_over_eta(ratio: float) -> None:
    """dL/deta = eps_eta - KL(psi || U_S), against a float64 evaluation of the same formula, up to
    max|A|/eta = 2.5e8 (eta at a projected dual's floor): the float32 shift by max(A/eta) lost it."""
    adv = torch.tensor([0.3, -0.4, 1.2, 1.2 - 1e-9 * ratio, 0.0])  # a near-tie, then a clear argmax
    eta_value = 1.2 / ratio
    eta = torch.tensor(eta_value, requires_grad=True)
    loss, _ = temperature_loss(eta, adv, torch.ones(5, dtype=torch.bool), eps_eta=0.01)
    loss.backward()
    a = adv.double()
    psi = torch.softmax(a / eta_value, 0)
    kl = float((psi * torch.log(psi * 5).nan_to_num(0.0)).sum())
    assert math.isfinite(eta.grad.item())
    assert eta.grad.item() == pytest.approx(0.01 - kl, rel=1e-4, abs=1e-5)


def test_temperature_gradient_sign_all_equal_advantages() -> None:
    # Equal advantages: psi is uniform, KL = 0 < eps_eta, so dL/deta = eps_eta > 0 and eta shrinks.
    eta = torch.tensor(2.0, requires_grad=True)
    loss, _ = temperature_loss(eta, torch.full((5,), 0.7), torch.ones(5, dtype=torch.bool), eps_eta=0.02)
    loss.backward()
    assert eta.grad.item() == pytest.approx(0.02, abs=1e-6)
    # Very spread advantages at a small eta: KL ~ log k > eps_eta, so eta grows (negative gradient).
    eta2 = torch.tensor(0.01, requires_grad=True)
    loss2, _ = temperature_loss(eta2, torch.tensor([0.0, 1.0, 2.0]), torch.ones(3, dtype=torch.bool), 0.02)
    loss2.backward()
    assert eta2.grad.item() < 0.0


def test_temperature_loss_ignores_garbage_outside_selection() -> None:
    adv = torch.tensor([1.0, float("nan"), float("inf"), 2.0])
    sel = torch.tensor([True, False, False, True])
    eta = torch.tensor(1.0, requires_grad=True)
    loss, _ = temperature_loss(eta, adv, sel, eps_eta=0.1)
    loss.backward()
    assert loss.item() == pytest.approx(_hand_temperature_loss([1.0, 2.0], 1.0, 0.1), rel=1e-6)
    assert torch.isfinite(eta.grad)


# ---------------------------------------------------------------------------------------------- M-step


def test_policy_loss_weighted_nll() -> None:
    log_probs = torch.tensor([-1.0, -2.0, float("-inf")], requires_grad=True)
    psi = torch.tensor([0.25, 0.75, 0.0])
    loss = policy_loss(log_probs, psi)
    assert loss.item() == pytest.approx(0.25 * 1.0 + 0.75 * 2.0)
    loss.backward()
    torch.testing.assert_close(log_probs.grad, torch.tensor([-0.25, -0.75, 0.0]))


def test_categorical_kl_hand_value() -> None:
    p = torch.tensor([0.5, 0.25, 0.25])
    q = torch.tensor([0.25, 0.25, 0.5])
    kl = categorical_kl(p.log(), q.log())
    expected = 0.5 * math.log(2.0) + 0.0 + 0.25 * math.log(0.5)
    assert kl.item() == pytest.approx(expected, rel=1e-6)
    # Shift-invariance of logits, batching, zero for identical policies, p_old = 0 entries contribute 0.
    logits = torch.randn(4, 3, 6)
    torch.testing.assert_close(categorical_kl(logits, logits + 3.0), torch.zeros(4, 3), atol=1e-6, rtol=0)
    old = torch.tensor([0.0, float("-inf")])
    assert categorical_kl(old, torch.tensor([0.0, 0.0])).item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_categorical_kl_detaches_old_logits() -> None:
    old = torch.randn(5, requires_grad=True)
    new = torch.randn(5, requires_grad=True)
    categorical_kl(old, new).backward()
    assert old.grad is None and new.grad is not None


def test_trust_region_alpha_gradient_and_kl_term() -> None:
    alpha = torch.tensor(3.0, requires_grad=True)
    logits_new = torch.zeros(4, 3, requires_grad=True)
    logits_old = torch.tensor([[2.0, 0.0, 0.0]] * 4)
    valid = torch.tensor([True, True, True, False])
    kl = categorical_kl(logits_old, logits_new)
    kl_mean = kl[:3].mean().item()
    eps_alpha = 0.01
    assert kl_mean > eps_alpha
    loss, extras = trust_region_loss(alpha, kl, valid, eps_alpha)
    assert loss.item() == pytest.approx(3.0 * eps_alpha, rel=1e-5)  # alpha*(eps - KL) + alpha*KL
    loss.backward()
    # dL/dalpha = eps_alpha - KL < 0: the constraint is violated, so gradient descent grows alpha.
    assert alpha.grad.item() == pytest.approx(eps_alpha - kl_mean, rel=1e-5)
    assert alpha.grad.item() < 0.0
    # The policy gets sg[alpha] * dKL_mean/dlogits; the invalid row gets nothing.
    ref_logits = logits_new.detach().clone().requires_grad_(True)
    (3.0 * categorical_kl(logits_old, ref_logits)[:3].mean()).backward()
    torch.testing.assert_close(logits_new.grad, ref_logits.grad)
    assert logits_new.grad[3].abs().sum() == 0.0
    assert extras["vmpo/kl_mean"].item() == pytest.approx(kl_mean, rel=1e-6)
    assert extras["vmpo/kl_max"].item() == pytest.approx(kl_mean, rel=1e-6)  # all valid rows equal


def test_trust_region_kl_term_gives_no_gradient_to_alpha() -> None:
    # With KL = eps_alpha exactly, dL/dalpha = 0: the sg[alpha]*KL term contributes nothing to alpha.
    alpha = torch.tensor(2.0, requires_grad=True)
    kl = torch.tensor([0.2, 0.4], requires_grad=True)
    loss, _ = trust_region_loss(alpha, kl, torch.ones(2, dtype=torch.bool), eps_alpha=0.3)
    loss.backward()
    assert alpha.grad.item() == pytest.approx(0.0, abs=1e-7)
    torch.testing.assert_close(kl.grad, torch.tensor([1.0, 1.0]))  # sg[alpha] * d mean / d kl_i = 2 / 2
    # KL below the bound: positive gradient, alpha shrinks.
    alpha2 = torch.tensor(2.0, requires_grad=True)
    trust_region_loss(alpha2, torch.tensor([0.1]), torch.ones(1, dtype=torch.bool), 0.3)[0].backward()
    assert alpha2.grad.item() == pytest.approx(0.2, rel=1e-6)


# ---------------------------------------------------------------------------------------------- composition


def _batch(seed: int = 0, t_len: int = 6, b_len: int = 4, n_act: int = 5):  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(t_len, b_len, n_act, generator=gen)
    target = logits + 0.3 * torch.randn(t_len, b_len, n_act, generator=gen)
    actions = torch.randint(0, n_act, (t_len, b_len), generator=gen)
    adv = torch.randn(t_len, b_len, generator=gen)
    mask = torch.ones(t_len, b_len, dtype=torch.bool)
    mask[2, 1] = mask[4, 3] = False  # two reset steps
    return logits, target, actions, adv, mask


def test_vmpo_loss_composes_the_parts() -> None:
    logits, target, actions, adv, mask = _batch()
    logits.requires_grad_(True)
    eta = LagrangeMultiplier(0.8, mode="softplus")
    alpha = LagrangeMultiplier(4.0, mode="projected")
    loss, extras = vmpo_loss(
        logits,
        target,
        actions,
        adv,
        mask,
        temperature=Penalty(eta.value(), 0.02),
        trust_region=Penalty(alpha.value(), 0.01),
        topk_fraction=0.5,
    )

    sel = topk_mask(adv, mask, 0.5)
    psi = e_step_weights(adv, sel, 0.8)
    log_probs = torch.log_softmax(logits, -1).gather(-1, actions[..., None])[..., 0]
    l_pi = policy_loss(log_probs, psi)
    l_eta, _ = temperature_loss(0.8, adv, sel, 0.02)
    l_alpha, _ = trust_region_loss(4.0, categorical_kl(target, logits), mask, 0.01)
    assert loss.item() == pytest.approx((l_pi + l_eta + l_alpha).item(), rel=1e-5)

    expected_keys = {
        "loss/policy", "loss/eta", "loss/alpha", "vmpo/eta", "vmpo/alpha", "vmpo/kl_mean", "vmpo/kl_max",
        "vmpo/kl_psi", "vmpo/adv_topk_mean", "vmpo/adv_topk_min", "vmpo/adv_mean", "vmpo/adv_std",
        "vmpo/ess", "vmpo/ess_frac", "vmpo/num_selected", "policy/entropy",
    }  # fmt: skip
    assert set(extras) == expected_keys
    for key, value in extras.items():
        assert value.dim() == 0 and not value.requires_grad and value.dtype == torch.float32, key
    n_valid = int(mask.sum())
    assert extras["vmpo/num_selected"].item() == n_valid // 2
    assert extras["vmpo/adv_topk_min"].item() == pytest.approx(adv[sel].min().item())
    assert extras["vmpo/adv_topk_mean"].item() == pytest.approx(adv[sel].mean().item(), rel=1e-6)
    assert extras["vmpo/adv_mean"].item() == pytest.approx(adv[mask].mean().item(), rel=1e-5)
    assert extras["vmpo/adv_std"].item() == pytest.approx(adv[mask].std().item(), rel=1e-5)
    ess = 1.0 / (psi**2).sum().item()
    assert extras["vmpo/ess"].item() == pytest.approx(ess, rel=1e-5)
    assert extras["vmpo/ess_frac"].item() == pytest.approx(ess / (n_valid // 2), rel=1e-5)
    assert 1.0 <= extras["vmpo/ess"].item() <= n_valid // 2

    loss.backward()
    assert eta.raw.grad is not None and alpha.raw.grad is not None
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[2, 1].abs().sum() == 0.0 and logits.grad[4, 3].abs().sum() == 0.0  # reset steps


def test_vmpo_loss_entropy_bonus_adds_minus_c_times_masked_entropy() -> None:
    """``ent_coef=c`` subtracts ``c * mean_mask H(pi)``: loss and gradient are those of the paper's loss
    plus that term, and ``policy/entropy`` is the same masked mean either way."""
    logits, target, actions, adv, mask = _batch(seed=3)
    c = 0.05

    def loss_and_grad(ent_coef: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
        x = logits.detach().clone().requires_grad_(True)
        loss, extras = vmpo_loss(
            x, target, actions, adv, mask, temperature=Penalty(0.8, 0.02), trust_region=Penalty(4.0, 0.01),
            topk_fraction=0.5, ent_coef=ent_coef,
        )  # fmt: skip
        (grad,) = torch.autograd.grad(loss, x)
        return loss.detach(), grad, extras

    base, base_grad, base_extras = loss_and_grad(0.0)
    bonus, bonus_grad, bonus_extras = loss_and_grad(c)
    x = logits.detach().clone().requires_grad_(True)
    log_p = torch.log_softmax(x, -1)
    entropy = -(log_p.exp() * log_p).sum(-1)[mask.bool()].mean()
    (entropy_grad,) = torch.autograd.grad(entropy, x)
    torch.testing.assert_close(bonus, base - c * entropy.detach())
    torch.testing.assert_close(bonus_grad, base_grad - c * entropy_grad)
    torch.testing.assert_close(bonus_extras["policy/entropy"], base_extras["policy/entropy"])
    torch.testing.assert_close(bonus_extras["policy/entropy"], entropy.detach())
    assert bonus_grad[~mask.bool()].eq(0).all()  # reset steps still get no gradient


def test_entropy_floor_gradients_and_the_loss_term() -> None:
    """dL/dbeta = mean H - H_min (negative below the floor: descent grows beta); the policy gets
    -sg[beta] * dH (an entropy bonus weighted by beta); vmpo_loss adds exactly this term."""
    logits, target, actions, adv, mask = _batch(seed=4)
    x = logits.detach().clone().requires_grad_(True)
    log_p = torch.log_softmax(x, -1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    beta = torch.tensor(0.3, requires_grad=True)
    floor = 2.0  # above ln 5 = 1.61: the constraint is violated
    loss, extras = entropy_floor_loss(beta, entropy, mask, floor)
    loss.backward()
    h_mean = entropy[mask].mean().detach()
    torch.testing.assert_close(beta.grad, h_mean - floor)
    assert beta.grad < 0
    x2 = logits.detach().clone().requires_grad_(True)
    log_p2 = torch.log_softmax(x2, -1)
    (-0.3 * (-(log_p2.exp() * log_p2).sum(-1))[mask].mean()).backward()
    torch.testing.assert_close(x.grad, x2.grad)
    assert extras["vmpo/beta"].item() == pytest.approx(0.3)

    kwargs = {"temperature": Penalty(0.8, 0.02), "trust_region": Penalty(4.0, 0.01), "topk_fraction": 0.5}
    plain, _ = vmpo_loss(logits, target, actions, adv, mask, **kwargs)
    floored, metrics = vmpo_loss(
        logits, target, actions, adv, mask, **kwargs, entropy_floor=Penalty(0.3, floor)
    )
    term, _ = entropy_floor_loss(0.3, entropy.detach(), mask, floor)
    torch.testing.assert_close(floored, plain + term)
    assert {"loss/beta", "vmpo/beta"} <= set(metrics)

    none = torch.zeros_like(mask)
    inert, _ = entropy_floor_loss(beta, entropy.detach(), none, floor)
    assert inert.item() == 0.0


def test_vmpo_loss_bf16_inputs_give_fp32_and_finite_grads() -> None:
    logits, target, actions, adv, mask = _batch(seed=1)
    logits = logits.bfloat16().requires_grad_(True)
    eta = torch.tensor(1e-3, requires_grad=True)  # |A| / eta ~ 1e3
    loss, extras = vmpo_loss(
        logits,
        target.bfloat16(),
        actions,
        adv.bfloat16(),
        mask.float(),
        temperature=Penalty(eta, 0.01),
        trust_region=Penalty(1.0, 0.01),
        topk_fraction=0.5,
    )
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(eta.grad) and torch.isfinite(logits.grad.float()).all()
    assert extras["vmpo/ess"].item() == pytest.approx(1.0, rel=1e-3)  # one sample dominates


def test_vmpo_loss_all_masked_is_finite_and_inert() -> None:
    logits, target, actions, adv, mask = _batch(seed=2)
    logits.requires_grad_(True)
    eta = torch.tensor(1.0, requires_grad=True)
    alpha = torch.tensor(1.0, requires_grad=True)
    none = torch.zeros_like(mask)
    loss, extras = vmpo_loss(
        logits,
        target,
        actions,
        adv,
        none,
        temperature=Penalty(eta, 0.01),
        trust_region=Penalty(alpha, 0.01),
        topk_fraction=0.5,
    )
    loss.backward()
    assert loss.item() == 0.0 and extras["vmpo/num_selected"].item() == 0.0
    assert eta.grad.item() == 0.0 and alpha.grad.item() == 0.0 and logits.grad.abs().sum() == 0.0
    assert all(torch.isfinite(v) for v in extras.values())


def test_vmpo_loss_shape_errors() -> None:
    logits, target, actions, adv, mask = _batch()
    with pytest.raises(ValueError, match="mask"):
        vmpo_loss(
            logits,
            target,
            actions,
            adv,
            mask[:-1],
            temperature=Penalty(1.0, 0.01),
            trust_region=Penalty(1.0, 0.01),
            topk_fraction=0.5,
        )


# ---------------------------------------------------------------------------------------------- duals


@pytest.mark.parametrize("mode", ["softplus", "projected"])
@pytest.mark.parametrize("init", [1e-3, 0.5, 1.0, 50.0])
def test_lagrange_multiplier_init_value(mode: str, init: float) -> None:
    m = LagrangeMultiplier(init, mode=mode, eps_min=1e-6)  # type: ignore[arg-type]
    assert m.value().dtype == torch.float32 and m.value().dim() == 0
    assert m.value().item() == pytest.approx(init, rel=1e-5)


def test_lagrange_multiplier_stays_positive() -> None:
    soft = LagrangeMultiplier(1.0, mode="softplus", eps_min=1e-4)
    with torch.no_grad():
        soft.raw.fill_(-200.0)
    assert soft.value().item() > 0.0
    assert soft.value().item() == pytest.approx(1e-4, rel=1e-6)  # softplus(-200) + eps_min, fp32
    soft.project_()  # no-op
    assert soft.raw.item() == -200.0

    proj = LagrangeMultiplier(1.0, mode="projected", eps_min=1e-4)
    opt = torch.optim.SGD(proj.parameters(), lr=10.0)
    proj.value().backward()  # d value / d raw = 1 -> a step of -10
    opt.step()
    assert proj.value().item() < 0.0
    proj.project_()
    assert proj.value().item() == pytest.approx(1e-4)


def test_lagrange_multiplier_softplus_gradient_and_fp32_under_cast() -> None:
    m = LagrangeMultiplier(2.0, mode="softplus", eps_min=1e-8)
    m.value().backward()
    xi = inverse_softplus(2.0 - 1e-8)
    assert m.raw.grad.item() == pytest.approx(1.0 / (1.0 + math.exp(-xi)), rel=1e-5)  # sigmoid(xi)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), m).to(torch.bfloat16)
    assert model[0].weight.dtype == torch.bfloat16
    assert m.raw.dtype == torch.float32 and m.value().item() == pytest.approx(2.0, rel=1e-6)


def test_lagrange_multiplier_value_min_stops_windup() -> None:
    """softplus: Adam steps that push the multiplier down (constraint slack) stop at value_min instead of
    driving xi towards -inf; once the constraint is active again it is back above its start within ~80
    steps at lr 0.1, where the unclamped one needs ~330 (measured: 78 against 335)."""
    m = LagrangeMultiplier(0.05, mode="softplus", eps_min=1e-8, value_min=1e-3)
    free = LagrangeMultiplier(0.05, mode="softplus", eps_min=1e-8)
    opts = [torch.optim.Adam(d.parameters(), lr=0.1) for d in (m, free)]

    def steps(n: int, sign: float) -> None:
        for _ in range(n):
            for dual, opt in zip((m, free), opts):
                opt.zero_grad()
                (sign * dual.value()).backward()  # + : descent lowers the value (slack); - : raises it
                opt.step()
                dual.project_()

    steps(500, +1.0)
    assert m.value().item() == pytest.approx(1e-3, rel=1e-4)
    assert free.value().item() < 2e-4 and free.raw.item() < m.raw.item()  # kept falling
    steps(120, -1.0)
    assert m.value().item() > 0.05  # recovered
    assert free.value().item() < 0.05  # still winding back up


def test_lagrange_multiplier_projected_value_min() -> None:
    proj = LagrangeMultiplier(1.0, mode="projected", eps_min=1e-8, value_min=0.2)
    with torch.no_grad():
        proj.raw.fill_(-3.0)
    proj.project_()
    assert proj.value().item() == pytest.approx(0.2)


def test_lagrange_multiplier_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="value_min"):
        LagrangeMultiplier(0.01, mode="softplus", value_min=0.1)
    with pytest.raises(ValueError, match="mode"):
        LagrangeMultiplier(1.0, mode="exp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="init_value"):
        LagrangeMultiplier(1e-9, mode="softplus", eps_min=1e-8)
