"""Each sequence-level loss against values computed by hand on tiny tensors."""

import math

import pytest
import torch

from agent.vmpo import Penalty, vmpo_sample_loss
from llm.advantages import group_mean_advantages, group_reward_std, value_advantages
from llm.losses import (
    awr_loss,
    dar_loss,
    dar_weights,
    grpo_loss,
    normalized_weight_kl,
    reference_kl_loss,
    sequence_log_probs,
    sft_loss,
)

ALL = torch.ones(4, dtype=torch.bool)


def test_sequence_log_probs_sums_masked_tokens():
    lp = torch.tensor([[-1.0, -2.0, -5.0], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.allclose(sequence_log_probs(lp, mask), torch.tensor([-3.0, -1.5]))


def test_sft_is_uniform_weight_nll():
    seq_lp = torch.tensor([-1.0, -3.0], requires_grad=True)
    loss, _ = sft_loss(seq_lp, torch.ones(2, dtype=torch.bool))
    assert loss.item() == pytest.approx(2.0)  # -(1/2)(-1) - (1/2)(-3)
    loss.backward()
    assert torch.allclose(seq_lp.grad, torch.tensor([-0.5, -0.5]))


def test_sequence_level_vmpo_by_hand():
    """agent.vmpo.vmpo_sample_loss on per-completion log-probs, as llm.learner calls it."""
    seq_lp = torch.tensor([-1.0, -2.0, -3.0, -4.0], requires_grad=True)
    adv = torch.tensor([1.0, 0.0, 2.0, -1.0])
    eta = torch.tensor(1.0, requires_grad=True)
    loss, ex = vmpo_sample_loss(seq_lp, adv, ALL, temperature=Penalty(eta, 0.1), topk_fraction=0.5)
    # k = floor(0.5 * 4) = 2 -> S = {0, 2}; psi = softmax([1, 2]).
    z = math.e + math.e**2
    psi0, psi2 = math.e / z, math.e**2 / z
    l_pi = psi0 * 1.0 + psi2 * 3.0
    l_eta = 0.1 + math.log(z / 2)
    assert loss.item() == pytest.approx(l_pi + l_eta, rel=1e-5)
    assert ex["loss/policy"].item() == pytest.approx(l_pi, rel=1e-5)
    assert ex["vmpo/num_selected"].item() == 2
    assert ex["vmpo/ess"].item() == pytest.approx(1 / (psi0**2 + psi2**2), rel=1e-5)
    loss.backward()
    assert torch.allclose(seq_lp.grad, torch.tensor([-psi0, 0.0, -psi2, 0.0]), atol=1e-6)
    # dL_eta/deta = eps_eta + log(mean exp(A/eta)) - E_psi[A] / eta
    assert eta.grad.item() == pytest.approx(0.1 + math.log(z / 2) - (psi0 * 1 + psi2 * 2), rel=1e-5)


def test_vmpo_invalid_sequences_are_never_selected():
    seq_lp = torch.tensor([-1.0, -2.0, -3.0, -4.0])
    valid = torch.tensor([True, True, False, False])
    adv = torch.tensor([0.0, 1.0, 5.0, 5.0])
    _, ex = vmpo_sample_loss(seq_lp, adv, valid, temperature=Penalty(1.0, 0.1), topk_fraction=0.5)
    assert ex["vmpo/num_selected"].item() == 1
    assert ex["loss/policy"].item() == pytest.approx(2.0)  # only sequence 1, psi = 1


def test_reference_kl_loss_by_hand():
    ref = torch.zeros(1, 1, 2)
    logits = torch.tensor([[[0.0, math.log(3.0)]]], requires_grad=True)
    kl = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    alpha = torch.tensor(2.0, requires_grad=True)
    loss, ex = reference_kl_loss(alpha, ref, logits, torch.ones(1, 1, dtype=torch.bool), eps_alpha=0.1)
    assert ex["vmpo/kl_mean"].item() == pytest.approx(kl, rel=1e-5)
    assert loss.item() == pytest.approx(2.0 * 0.1, rel=1e-5)  # alpha (eps - sg KL) + sg alpha KL
    loss.backward()
    assert alpha.grad.item() == pytest.approx(0.1 - kl, rel=1e-5)


def test_dar_weights_and_loss_by_hand():
    adv, ref, old = torch.tensor([1.0, -1.0]), torch.tensor([-2.0, -3.0]), torch.tensor([-1.0, -3.0])
    # t = 1: log w = 0.5 (ref - old) + A = [0.5, -1]
    w = dar_weights(adv, ref, old, alpha=0.5, beta=0.5, weight_clip=20.0)
    assert torch.allclose(w, torch.tensor([math.exp(0.5), math.exp(-1.0)]))
    seq_lp = torch.tensor([-1.0, -2.0])
    loss, _ = dar_loss(seq_lp, adv, ref, old, torch.ones(2, dtype=torch.bool), 0.5, 0.5, 20.0)
    assert loss.item() == pytest.approx((math.exp(0.5) * 1 + math.exp(-1.0) * 2) / 2, rel=1e-5)
    clipped = dar_weights(adv, ref, old, 0.5, 0.5, weight_clip=1.5)
    assert clipped[0].item() == pytest.approx(1.5)
    # alpha -> 0: DAR's target (He et al. 2025) tends to V-MPO's pi_t exp(A / t) with t = beta, so the
    # weight relative to pi_t is exp(A / beta).
    assert torch.allclose(dar_weights(adv, ref, old, 0.0, 2.0, 20.0), torch.exp(adv / 2.0))


def test_awr_loss_by_hand():
    seq_lp = torch.tensor([-1.0, -2.0])
    loss, ex = awr_loss(
        seq_lp, torch.tensor([1.0, 0.0]), torch.ones(2, dtype=torch.bool), beta=0.5, weight_clip=5
    )
    assert loss.item() == pytest.approx((5.0 * 1 + 1.0 * 2) / 2)  # w = [min(e^2, 5), 1]
    assert ex["awr/weight_max"].item() == pytest.approx(5.0)
    assert ex["awr/kl_psi"].item() == pytest.approx(5 / 6 * math.log(5 / 3) + 1 / 6 * math.log(1 / 3))


def test_normalized_weight_kl_from_uniform():
    n = 4
    assert normalized_weight_kl(torch.ones(n), ALL).item() == pytest.approx(0.0, abs=1e-7)
    one_hot = torch.tensor([0.0, 3.0, 0.0, 0.0])
    assert normalized_weight_kl(one_hot, ALL).item() == pytest.approx(math.log(n))
    # invalid sequences are outside the support: [2, 1] over 2 valid -> p = [2/3, 1/3]
    w, valid = torch.tensor([2.0, 9.0, 1.0, 9.0]), torch.tensor([True, False, True, False])
    expected = 2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3)
    assert normalized_weight_kl(w, valid).item() == pytest.approx(expected)
    assert normalized_weight_kl(w, torch.zeros(4, dtype=torch.bool)).item() == 0.0


def test_grpo_loss_by_hand():
    mask = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0])
    old = torch.full((2, 2), -1.0)
    loss, _ = grpo_loss(old.clone(), old, adv, mask, clip_eps=0.2)
    assert loss.item() == pytest.approx(-1.0 / 3.0)  # ratio 1: -mean over 3 tokens of [1, 1, -1]
    new = old + math.log(1.5)
    loss, ex = grpo_loss(new, old, adv, mask, clip_eps=0.2)
    assert loss.item() == pytest.approx(-(1.2 + 1.2 - 1.5) / 3.0, rel=1e-5)
    assert ex["ppo/clipfrac"].item() == pytest.approx(1.0)


def test_group_advantages():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    assert torch.allclose(group_mean_advantages(r, g), torch.tensor([2, -1, -1, -2, 1, 1]) / 3.0)
    std = group_reward_std(r, g)
    assert torch.allclose(std, torch.full((6,), math.sqrt(1 / 3)))
    norm = group_mean_advantages(r, g, normalize_std=True, eps=0.0)
    assert torch.allclose(norm, group_mean_advantages(r, g) / math.sqrt(1 / 3))
    torch.testing.assert_close(
        value_advantages(torch.tensor([1.0]), torch.tensor([0.25])), torch.tensor([0.75])
    )


def test_shape_errors_are_one_line():
    with pytest.raises(ValueError, match="advantages must have shape") as err:
        vmpo_sample_loss(
            torch.zeros(3),
            torch.zeros(2),
            torch.ones(3, dtype=torch.bool),
            temperature=Penalty(1.0, 0.1),
            topk_fraction=0.5,
        )
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="DAR needs"):
        dar_weights(torch.zeros(1), torch.zeros(1), torch.zeros(1), 0.0, 0.0, 1.0)
