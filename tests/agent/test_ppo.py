"""Tests for agent/ppo.py against hand-computed values (CleanRL ppo_atari_envpool semantics + mask)."""

from __future__ import annotations

import math

import pytest
import torch

from agent.ppo import clipped_surrogate, ppo_loss

CLIP = 0.2
# Five real steps + one masked (reset) step holding finite garbage.
RATIOS = [1.1, 1.5, 0.5, 1.5, 0.5, 3.0]
ADV = [2.0, 2.0, -1.0, -1.0, 2.0, 1000.0]
MASK = torch.tensor([1, 1, 1, 1, 1, 0], dtype=torch.bool)
# min(r A, clip(r) A) per real step:
#   r=1.1 A=+2: inside the range              -> 2.2
#   r=1.5 A=+2: clipped at 1.2                -> 2.4
#   r=0.5 A=-1: clipped at 0.8                -> -0.8
#   r=1.5 A=-1: unclipped term is smaller     -> -1.5
#   r=0.5 A=+2: unclipped term is smaller     -> 1.0
# L_CLIP = 3.3 / 5 = 0.66, loss/policy = -0.66; |r - 1| > 0.2 for 4 of 5 -> clipfrac 0.8.
EXPECTED_PG = -0.66
# d loss/policy / d new_log_prob = -A r / 5 where the unclipped term is active, else 0.
EXPECTED_PG_GRAD = [-0.44, 0.0, 0.0, 0.3, -0.2, 0.0]

OLD_V = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
NEW_V = [1.1, 2.0, 0.0, 0.5, 0.0, 50.0]
RET = [2.0, 2.0, 2.0, -1.0, 0.0, -50.0]
# Value clipping (clip 0.2): max((v - R)^2, (v_old + clip(v - v_old) - R)^2):
#   0.81 (inside), max(0, 0.64), max(4, 1.44), max(2.25, 1.44), 0  -> mean 1.54, x0.5 = 0.77
# Unclipped: (0.81 + 0 + 4 + 2.25 + 0) / 5 = 1.412, x0.5 = 0.706.
EXPECTED_V_CLIPPED = 0.77
EXPECTED_V_UNCLIPPED = 0.706
ENTROPY = [1.0, 2.0, 3.0, 4.0, 5.0, 100.0]  # masked mean 3


def _inputs(requires_grad: bool = True) -> dict[str, torch.Tensor]:
    old_lp = torch.tensor([-1.0, -0.5, -2.0, -1.5, -0.3, -1.0])
    new_lp = (old_lp + torch.tensor(RATIOS).log()).requires_grad_(requires_grad)
    return {
        "new_log_probs": new_lp,
        "old_log_probs": old_lp,
        "advantages": torch.tensor(ADV),
        "new_values": torch.tensor(NEW_V, requires_grad=requires_grad),
        "old_values": torch.tensor(OLD_V),
        "returns": torch.tensor(RET),
        "mask": MASK,
        "entropy": torch.tensor(ENTROPY, requires_grad=requires_grad),
    }


def test_clipped_surrogate_hand_values_and_gradients() -> None:
    x = _inputs()
    loss, extras = ppo_loss(**x, clip_coef=CLIP, clip_value=True, vf_coef=0.5, ent_coef=0.01, norm_adv=False)
    assert extras["loss/policy"].item() == pytest.approx(EXPECTED_PG, rel=1e-5)
    assert extras["loss/value"].item() == pytest.approx(EXPECTED_V_CLIPPED, rel=1e-5)
    assert extras["policy/entropy"].item() == pytest.approx(3.0)
    assert extras["ppo/clipfrac"].item() == pytest.approx(0.8)
    kl = sum((r - 1.0) - math.log(r) for r in RATIOS[:5]) / 5
    assert extras["ppo/approx_kl"].item() == pytest.approx(kl, rel=1e-5)
    assert loss.item() == pytest.approx(EXPECTED_PG + 0.5 * EXPECTED_V_CLIPPED - 0.01 * 3.0, rel=1e-5)
    loss.backward()
    torch.testing.assert_close(x["new_log_probs"].grad, torch.tensor(EXPECTED_PG_GRAD))
    torch.testing.assert_close(x["entropy"].grad, torch.tensor([-0.01 / 5] * 5 + [0.0]))
    # Value gradient 0.5 * vf * 2 (v - R) / 5 where the unclipped branch is the max, 0 where clipped wins.
    # Step 1: the clipped branch wins but its clip is saturated (v - v_old = 1 > 0.2), so its gradient is 0.
    expected_v_grad = torch.tensor(
        [0.5 * (1.1 - 2.0) / 5, 0.0, 0.5 * (0.0 - 2.0) / 5, 0.5 * 1.5 / 5, 0.0, 0.0]
    )
    torch.testing.assert_close(x["new_values"].grad, expected_v_grad)


def test_value_loss_without_clipping() -> None:
    _, extras = ppo_loss(
        **_inputs(False), clip_coef=CLIP, clip_value=False, vf_coef=0.5, ent_coef=0.0, norm_adv=False
    )
    assert extras["loss/value"].item() == pytest.approx(EXPECTED_V_UNCLIPPED, rel=1e-5)


def test_advantage_normalisation_over_masked_batch() -> None:
    x = _inputs(False)
    x["new_log_probs"] = x["old_log_probs"] + torch.tensor([0.05, -0.05, 0.1, 0.0, -0.1, 2.0])
    x["advantages"] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 1000.0])  # the masked 1000 must not count
    _, extras = ppo_loss(**x, clip_coef=CLIP, clip_value=False, vf_coef=0.5, ent_coef=0.0, norm_adv=True)
    adv = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    adv_hat = (adv - 3.0) / (math.sqrt(2.5) + 1e-8)  # unbiased std of 1..5 = sqrt(2.5)
    ratio = torch.tensor([0.05, -0.05, 0.1, 0.0, -0.1]).exp()  # all inside [0.8, 1.2]
    expected = -(ratio * adv_hat).mean().item()
    assert extras["loss/policy"].item() == pytest.approx(expected, rel=1e-5)
    assert extras["ppo/clipfrac"].item() == 0.0


def test_masked_steps_get_no_gradient_and_bf16_is_cast_up() -> None:
    x = _inputs(False)
    for key in ("new_log_probs", "new_values", "entropy"):
        x[key] = x[key].bfloat16().requires_grad_(True)
    loss, _ = ppo_loss(**x, clip_coef=CLIP, clip_value=True, vf_coef=0.5, ent_coef=0.01, norm_adv=True)
    assert loss.dtype == torch.float32
    loss.backward()
    for key in ("new_log_probs", "new_values", "entropy"):
        assert x[key].grad[5].item() == 0.0, key
        assert torch.isfinite(x[key].grad.float()).all(), key


def test_shape_mismatch_names_the_argument() -> None:
    x = _inputs(False)
    x["returns"] = x["returns"][:-1]
    with pytest.raises(ValueError, match="returns"):
        ppo_loss(**x, clip_coef=CLIP, clip_value=True, vf_coef=0.5, ent_coef=0.01, norm_adv=False)


def test_clipped_surrogate_is_ppo_without_value_and_entropy() -> None:
    """GRPO's surrogate (``clipped_surrogate``) is PPO's policy term: same loss, gradient and metrics."""
    x = _inputs(False)
    new_lp = x["new_log_probs"].detach().clone().requires_grad_(True)
    ppo, ppo_metrics = ppo_loss(
        **{**x, "new_log_probs": new_lp}, clip_coef=CLIP, clip_value=False, vf_coef=0.0, ent_coef=0.0,
        norm_adv=False,
    )  # fmt: skip
    (grad_ppo,) = torch.autograd.grad(ppo, new_lp)
    surrogate, metrics = clipped_surrogate(
        new_lp, x["old_log_probs"], x["advantages"], x["mask"], clip_coef=CLIP
    )
    (grad_surrogate,) = torch.autograd.grad(surrogate, new_lp)
    torch.testing.assert_close(surrogate, ppo)
    torch.testing.assert_close(grad_surrogate, grad_ppo)
    assert set(metrics) == {"loss/policy", "ppo/approx_kl", "ppo/clipfrac"}
    for key, value in metrics.items():
        torch.testing.assert_close(value, ppo_metrics[key], msg=key)
    assert grad_surrogate[~x["mask"].bool()].eq(0).all()  # masked steps get no gradient
