r"""V-MPO losses as pure functions of tensors (Song et al. 2019, "V-MPO: On-Policy Maximum a Posteriori
Policy Optimization for Discrete and Continuous Control"; equation numbers as in the paper).

The V-MPO objective (Song et al. 2019, eqs. 1-2) is

.. math::
    \mathcal{L}(\phi, \theta, \eta, \alpha) = \mathcal{L}_V(\phi)
        + \underbrace{\mathcal{L}_\pi(\theta) + \mathcal{L}_\eta(\eta)
        + \mathcal{L}_\alpha(\theta, \alpha)}_{\mathcal{L}_{\text{V-MPO}}}.

This module provides the three V-MPO terms; the value loss :math:`\mathcal{L}_V` (regression on
:func:`agent.returns.n_step_returns`) belongs to the learner.

* E-step (non-parametric policy): keep the top-k advantages ``S`` (:func:`topk_mask`), weight them by
  ``psi_i = softmax_S(A_i / eta)`` (:func:`e_step_weights`, eq. 3), and fit ``eta`` with the dual
  ``L_eta = eta * eps_eta + eta * log(mean_S exp(A / eta))`` (:func:`temperature_loss`, eq. 4).
* M-step (parametric projection): weighted maximum likelihood ``L_pi = -sum psi log pi(a|s)``
  (:func:`policy_loss`, eq. 3) under a KL trust region to the old (target) policy with dual ``alpha``
  (:func:`categorical_kl`, :func:`trust_region_loss`, eq. 5).

Conventions:

* :func:`vmpo_sample_loss` is the one place the parts are chained (top-k -> psi -> ``L_pi``, ``L_eta``,
  ``L_alpha`` -> diagnostics), on log-probabilities of taken samples: :func:`vmpo_loss` feeds it the
  agent's per-step log-probs and categorical KL, ``llm.learner`` a language model's per-completion
  log-probs and per-token KL to its reference.
* The parts take flat ``[N]`` tensors (any shape works: reductions are over all elements);
  :func:`vmpo_loss` takes the learner's time-major ``[T, B]`` tensors. Duals travel with their bounds
  (:class:`Penalty`); options after the tensors are keyword-only.
* ``eta`` and ``alpha`` are positive 0-d tensors (``agent.duals.LagrangeMultiplier.value()``) or floats.
* All maths is fp32 (bf16 inputs are cast up); stop-gradients are applied *inside* each function as
  documented, so the caller passes raw tensors.
* No host synchronisation (no ``.item()``), no device-specific code: CPU and CUDA alike.
* Losses return ``(loss, extras)`` (:class:`LossOutput` for the composed ones); ``extras`` holds
  detached 0-d fp32 tensors named for logging.
* Data parallel (``agent.distributed``): :func:`trust_region_loss` and :func:`vmpo_loss` take a
  :class:`~agent.distributed.BatchAxis`. The E-step runs on the gathered global batch and the returned
  loss is this rank's *share*: the shares of all ranks sum to the loss of the concatenated batch. The
  default ``LOCAL`` axis is the single-process case, where share = loss. ``extras`` are global values.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from agent.distributed import LOCAL, BatchAxis
from agent.loss_output import Extras, LossOutput
from agent.masked import masked_mean

__all__ = [
    "LossOutput",
    "Penalty",
    "categorical_kl",
    "e_step_diagnostics",
    "e_step_weights",
    "effective_sample_size",
    "entropy_floor_loss",
    "policy_loss",
    "temperature_loss",
    "topk_mask",
    "trust_region_loss",
    "vmpo_loss",
    "vmpo_sample_loss",
]


def _as_fp32_scalar(x: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """A 0-d fp32 tensor on ``like``'s device (keeps the autograd graph of a tensor input)."""
    if isinstance(x, torch.Tensor):
        return x.float().reshape(())
    return torch.tensor(float(x), dtype=torch.float32, device=like.device)


def topk_mask(advantages: torch.Tensor, valid: torch.Tensor, fraction: float) -> torch.Tensor:
    """Top-k selection of the E-step (Song et al. 2019, section "E-step", "Top-k advantages": the samples
    with the highest 50% of advantages form the set ``D~`` of eqs. 3-4).

    Selects the ``k = max(1, floor(fraction * n_valid))`` largest advantages among the valid entries
    (``k = 0`` only when ``n_valid = 0``). Since ``eta > 0``, ranking ``A / sg[eta]`` equals ranking ``A``,
    so ``eta`` is not needed. Ties are broken deterministically by position: among equal advantages the
    entry with the lower flat index wins. Invalid entries are never selected. No host sync: ``k`` stays a
    tensor.

    Args:
        advantages: ``[N]`` (or any shape) advantages; not differentiated.
        valid: same shape, bool/0-1; 1 = a real transition (the learner's ``mask``).
        fraction: ``rho`` in (0, 1]; the V-MPO paper uses 0.5.

    Returns:
        bool tensor of ``advantages``' shape, True for the selected entries.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"topk fraction must be in (0, 1], got fraction={fraction}")
    if valid.shape != advantages.shape:
        raise ValueError(f"valid shape {tuple(valid.shape)} != advantages shape {tuple(advantages.shape)}")
    a = advantages.detach().float().reshape(-1)
    v = valid.bool().reshape(-1)
    key = torch.where(v, a, torch.full_like(a, -math.inf))
    order = torch.sort(key, descending=True, stable=True).indices  # stable: ties keep index order
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    n_valid = v.sum()
    # floor in float64 with a small tolerance so that e.g. 0.29 * 100 gives 29, not 28.
    k = torch.floor(n_valid.double() * fraction + 1e-9).long().clamp_min(1)
    return ((rank < k) & v).reshape(advantages.shape)


def e_step_weights(
    advantages: torch.Tensor, selected: torch.Tensor, eta: torch.Tensor | float
) -> torch.Tensor:
    r"""Non-parametric E-step weights (Song et al. 2019, eq. 3, derived in section "E-step", eqs. 9-10).

    .. math::
        \psi_i = \frac{\exp(A_i / \eta)}{\sum_{j \in S} \exp(A_j / \eta)} \; (i \in S), \qquad
        \psi_i = 0 \; (i \notin S),

    i.e. eqs. 9-10's ``psi(s,a) ∝ p_old(s,a) exp(A/eta)`` with ``p_old`` the empirical (uniform) distribution
    of the selected samples. Computed as ``exp(log_softmax)`` (max-subtracted, no overflow for any ``A/eta``).
    Stop-gradient on both ``advantages`` and ``eta``: psi is a fixed target for the M-step.

    Args:
        advantages: ``[N]`` advantages ``A``.
        selected: ``[N]`` bool, the top-k set ``S`` (:func:`topk_mask`).
        eta: temperature ``eta > 0`` (0-d tensor or float).

    Returns:
        ``[N]`` fp32 weights, ``sum = 1`` over ``S`` (all zeros if ``S`` is empty), no gradient.
    """
    a = advantages.detach().float()
    sel = selected.bool()
    eta_sg = _as_fp32_scalar(eta, a).detach()
    logits = torch.where(sel, a / eta_sg, torch.full_like(a, -math.inf)).reshape(-1)
    # If S is empty every logit is -inf; replace by zeros so softmax stays finite, then zero out below.
    logits = torch.where(sel.reshape(-1).any(), logits, torch.zeros_like(logits))
    psi = torch.softmax(logits, dim=0).reshape(a.shape)
    return torch.where(sel, psi, torch.zeros_like(psi))


def temperature_loss(
    eta: torch.Tensor | float,
    advantages: torch.Tensor,
    selected: torch.Tensor,
    eps_eta: float,
) -> tuple[torch.Tensor, Extras]:
    r"""Temperature dual ``L_eta`` (Song et al. 2019, eq. 4; derived in their appendix A), max-shifted.

    .. math::
        \mathcal{L}_\eta(\eta) = \eta\,\epsilon_\eta
            + \eta \log\Big(\frac{1}{k}\sum_{i \in S} \exp(A_i/\eta)\Big)
          = \eta\,\epsilon_\eta + \eta\,\big(m + \log \textstyle\sum_{i\in S} e^{u_i - m} - \log k\big),

    with ``u_i = A_i / eta``, ``m = max_S u_i`` and ``k = |S|``; computed as
    ``eta eps_eta + max_S A + eta (log sum_S exp((A_i - max_S A) / eta) - log k)``, where ``max_S A``
    does not depend on ``eta``. Every exponent is ``<= 0``, so the loss is finite for any ``|A|/eta``
    (e.g. 1e3, where it tends to ``eps_eta * eta + max_S A + eta * log(#argmax / k)``) and its gradient
    is exact there too (no difference of two terms of size ``|A|/eta``).

    Its derivative is ``dL/deta = eps_eta - KL(psi || U_S)`` with ``U_S`` uniform on ``S`` (differentiate
    eq. 4: ``eps_eta + log mean_S exp(A/eta) - E_psi[A]/eta``): ``eta`` falls while the E-step KL is below
    ``eps_eta`` (sharper weights) and rises when it exceeds it.

    Args:
        eta: temperature ``eta > 0``, a 0-d tensor carrying the gradient (or a float: no gradient).
        advantages: ``[N]`` advantages; detached inside (gradient only reaches ``eta``).
        selected: ``[N]`` bool top-k set ``S``.
        eps_eta: KL bound ``epsilon_eta`` of the E-step constraint.

    Returns:
        ``(loss, extras)``: 0-d fp32 loss (0 if ``S`` is empty); extras ``"loss/eta"``, ``"vmpo/eta"``,
        ``"vmpo/kl_psi"`` (the E-step ``KL(psi || U_S)`` that the dual drives towards ``eps_eta``).
    """
    a = advantages.detach().float()
    sel = selected.bool()
    eta_t = _as_fp32_scalar(eta, a)
    neg_inf = torch.full_like(a, -math.inf)
    # max_S A is taken out of the log-sum-exp analytically, not as max_S (A / eta) in float32: the
    # gradient w.r.t. eta is then eps_eta + log mean_S e^{z} - E_psi[z] with z = (A - max_S A) / eta <= 0,
    # which stays exact for any |A| / eta (the m-shift of A / eta subtracts two terms of size |A| / eta).
    a_max = torch.where(sel, a, neg_inf).max()
    a_max = torch.where(torch.isfinite(a_max), a_max, torch.zeros_like(a_max))  # S empty -> 0
    # Non-selected entries are replaced before the division so garbage there (inf/nan) cannot leak, and
    # after it by -inf (a constant: exp gives 0 with zero gradient, no 0 * inf).
    z = torch.where(sel, torch.where(sel, a - a_max, torch.zeros_like(a)) / eta_t, neg_inf)
    sum_exp = torch.exp(z).sum()  # >= 1 when S is not empty (the argmax contributes e^0)
    n_sel = sel.sum().float()
    log_mean_exp_z = torch.log(sum_exp.clamp_min(torch.finfo(torch.float32).tiny)) - torch.log(
        n_sel.clamp_min(1.0)
    )
    loss = eta_t * eps_eta + a_max + eta_t * log_mean_exp_z
    loss = torch.where(n_sel > 0, loss, torch.zeros_like(loss))

    with torch.no_grad():
        psi = e_step_weights(a, sel, eta_t)
        # KL(psi || U_S) = sum_S psi log(psi k); 0 log 0 = 0.
        log_ratio = torch.log(psi * n_sel.clamp_min(1.0))
        kl_psi = torch.where(psi > 0, psi * log_ratio, torch.zeros_like(psi)).sum()
    extras = {"loss/eta": loss.detach(), "vmpo/eta": eta_t.detach(), "vmpo/kl_psi": kl_psi}
    return loss, extras


def policy_loss(log_probs: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """M-step weighted maximum likelihood ``L_pi = -sum_i psi_i log pi(a_i|s_i)`` (Song et al. 2019, eq. 3).

    Args:
        log_probs: ``[N]`` ``log pi_theta(a|s)`` of the taken actions (carries the gradient).
        psi: ``[N]`` E-step weights (:func:`e_step_weights`); detached inside. Entries with ``psi = 0`` are
            excluded from value and gradient (a ``-inf`` log-prob there gives no nan).

    Returns:
        0-d fp32 loss.
    """
    w = psi.detach().float()
    lp = torch.where(w > 0, log_probs.float(), torch.zeros_like(w))
    return -(w * lp).sum()


def categorical_kl(logits_old: torch.Tensor, logits_new: torch.Tensor) -> torch.Tensor:
    """``KL(pi_old || pi_new)`` of categorical distributions given by logits, over the last axis.

    ``sum_a p_old(a) (log p_old(a) - log p_new(a))``, computed from ``log_softmax`` in fp32. ``logits_old``
    (the target/behaviour policy) is detached inside: the KL only trains ``logits_new``. Actions with
    ``p_old = 0`` contribute 0.

    Args:
        logits_old: ``[..., A]`` logits of ``pi_old``.
        logits_new: ``[..., A]`` logits of ``pi_new`` (carries the gradient).

    Returns:
        ``[...]`` fp32 KL, ``>= 0``.
    """
    logp_old = F.log_softmax(logits_old.detach().float(), dim=-1)
    logp_new = F.log_softmax(logits_new.float(), dim=-1)
    p_old = logp_old.exp()
    terms = torch.where(p_old > 0, p_old * (logp_old - logp_new), torch.zeros_like(p_old))
    return terms.sum(dim=-1)


def _mean_constraint_loss(
    multiplier: torch.Tensor,
    x: torch.Tensor,
    valid: torch.Tensor,
    bound: float,
    *,
    upper: bool,
    axis: BatchAxis,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Lagrangian of ``mean_valid x <= bound`` (``upper``) or ``>= bound``, V-MPO's form (eq. 5):
    ``m (bound - sg[x-bar]) + sg[m] x-bar``, negated for a lower bound. The multiplier gets only the first
    term (``dL/dm = bound - x-bar``, or its negative), ``x`` only the second. -> (this rank's share of the
    loss, 0 when nothing is valid on any rank; ``sg[x-bar]``, the global mean)."""
    share = axis.mean_share(x, valid)  # this rank's part of the global mean (the mean when local)
    mean = axis.sum(share)  # sg[x-bar], the same on every rank
    loss = multiplier * (bound - mean) / axis.world + multiplier.detach() * share
    loss = loss if upper else -loss
    any_valid = axis.sum(valid.sum()) > 0
    return torch.where(any_valid, loss, torch.zeros_like(loss)), mean  # no valid state: no constraint


def trust_region_loss(
    alpha: torch.Tensor | float,
    kl: torch.Tensor,
    valid: torch.Tensor,
    eps_alpha: float,
    axis: BatchAxis = LOCAL,
) -> tuple[torch.Tensor, Extras]:
    r"""M-step KL trust region with Lagrange multiplier ``alpha`` (Song et al. 2019, eq. 5; section "M-step",
    eqs. 13-15).

    .. math::
        \mathcal{L}_\alpha(\theta, \alpha) = \alpha\,(\epsilon_\alpha - \mathrm{sg}[\overline{KL}])
            + \mathrm{sg}[\alpha]\,\overline{KL}, \qquad
        \overline{KL} = \operatorname{mean}_{\text{valid}} KL(\pi_{old} \| \pi_\theta),

    averaged over the whole valid batch (not only the top-k set). ``dL/dalpha = eps_alpha - KL``: negative
    when the constraint is violated (KL > eps_alpha), so gradient descent grows ``alpha``; the policy
    receives ``alpha * dKL/dtheta`` and ``alpha`` gets no gradient from that second term.

    Args:
        alpha: multiplier ``alpha > 0``, 0-d tensor carrying the gradient (or a float).
        kl: ``[N]`` per-state ``KL(pi_old || pi_theta)`` (:func:`categorical_kl`), carrying the gradient.
        valid: ``[N]`` bool/0-1 mask of real transitions.
        eps_alpha: trust-region bound ``epsilon_alpha``.
        axis: the batch axis over ranks; the mean KL is over every rank's valid states and the loss is
            this rank's share (the alpha term, replicated on all ranks, is divided by the world size).

    Returns:
        ``(loss, extras)``: 0-d fp32 loss (0 if nothing is valid); extras ``"loss/alpha"``, ``"vmpo/alpha"``,
        ``"vmpo/kl_mean"``, ``"vmpo/kl_max"``.
    """
    kl = kl.float()
    v = valid.bool()
    alpha_t = _as_fp32_scalar(alpha, kl)
    loss, kl_mean = _mean_constraint_loss(alpha_t, kl, v, eps_alpha, upper=True, axis=axis)
    with torch.no_grad():
        kl_max = torch.where(v, kl, torch.zeros_like(kl)).max() if kl.numel() else kl.new_zeros(())
        kl_max = axis.max(kl_max)
    extras = {
        "loss/alpha": axis.sum(loss),
        "vmpo/alpha": alpha_t.detach(),
        "vmpo/kl_mean": kl_mean,
        "vmpo/kl_max": kl_max,
    }
    return loss, extras


def entropy_floor_loss(
    beta: torch.Tensor | float,
    entropy: torch.Tensor,
    valid: torch.Tensor,
    min_entropy: float,
    axis: BatchAxis = LOCAL,
) -> tuple[torch.Tensor, Extras]:
    r"""A lower bound on the policy's mean entropy, ``mean H(pi_theta) >= H_min``, with Lagrange multiplier
    ``beta`` (the constrained form of an entropy bonus, as the automatic temperature of Haarnoja et al. 2018,
    "Soft Actor-Critic Algorithms and Applications", §5; written as V-MPO writes its trust region, eq. 5):

    .. math::
        \mathcal{L}_\beta(\theta, \beta) = \beta\,(\mathrm{sg}[\bar H] - H_{min})
            - \mathrm{sg}[\beta]\,\bar H, \qquad \bar H = \operatorname{mean}_{\text{valid}} H(\pi_\theta).

    ``dL/dbeta = H - H_min``: negative when the entropy is below the floor, so gradient descent grows
    ``beta``, which then weighs the entropy bonus ``sg[beta] * H`` of the policy; above the floor ``beta``
    decays to its minimum and the policy loss is V-MPO's own.

    Args:
        beta: multiplier ``beta > 0``, 0-d tensor carrying the gradient (or a float).
        entropy: ``[N]`` per-state ``H(pi_theta(.|s))`` carrying the gradient.
        valid: ``[N]`` bool/0-1 mask of real transitions.
        min_entropy: the floor ``H_min`` in nats (``ln |A|`` is the uniform policy's entropy).
        axis: the batch axis over ranks (global mean; this rank's share of the loss).

    Returns:
        ``(loss, extras)``: 0-d fp32 loss (0 if nothing is valid); extras ``"loss/beta"``, ``"vmpo/beta"``.
    """
    entropy = entropy.float()
    beta_t = _as_fp32_scalar(beta, entropy)
    loss, _ = _mean_constraint_loss(beta_t, entropy, valid.bool(), min_entropy, upper=False, axis=axis)
    return loss, {"loss/beta": axis.sum(loss.detach()), "vmpo/beta": beta_t.detach()}


class Penalty(NamedTuple):
    """A Lagrange multiplier together with the bound of its constraint (Song et al. 2019, eqs. 4-5: ``eta``
    with ``epsilon_eta``, ``alpha`` with ``epsilon_alpha``), so that the two can never be swapped apart."""

    value: torch.Tensor | float  # the multiplier > 0 (``LagrangeMultiplier.value()``) or a float
    epsilon: float  # the bound of the constraint it enforces


def effective_sample_size(weights: torch.Tensor) -> torch.Tensor:
    """Kish ESS ``(sum w)^2 / sum w^2`` of non-negative weights (0 if all are 0); for the E-step's
    ``psi`` (sum 1) it is ``1 / sum psi^2``."""
    w = weights.detach().float()
    denom = (w**2).sum()
    return torch.where(denom > 0, w.sum() ** 2 / denom.clamp_min(torch.finfo(torch.float32).tiny), denom)


def e_step_diagnostics(
    advantages: torch.Tensor, valid: torch.Tensor, selected: torch.Tensor, psi: torch.Tensor
) -> Extras:
    """What the E-step saw and kept, on the (gathered) batch; every value is finite, 0 when ``S`` is empty.

    ``vmpo/adv_mean``, ``vmpo/adv_std`` (unbiased) over the valid samples; ``vmpo/adv_topk_mean``,
    ``vmpo/adv_topk_min`` over ``S``; ``vmpo/ess`` (:func:`effective_sample_size` of ``psi``),
    ``vmpo/ess_frac`` (ess / ``|S|``), ``vmpo/num_selected`` (``|S|``).
    """
    with torch.no_grad():
        adv, v, sel = advantages.detach().float(), valid.bool(), selected.bool()
        zero = adv.new_zeros(())
        n_sel = sel.sum().float()
        adv_mean = masked_mean(adv, v)
        n_valid = v.sum().float()
        adv_var = masked_mean((adv - adv_mean) ** 2, v) * n_valid / (n_valid - 1).clamp_min(1.0)
        topk_min = torch.where(sel, adv, torch.full_like(adv, math.inf)).min() if adv.numel() else zero
        ess = effective_sample_size(psi)
        return {
            "vmpo/adv_topk_mean": torch.where(sel, adv, torch.zeros_like(adv)).sum() / n_sel.clamp_min(1.0),
            "vmpo/adv_topk_min": torch.where(n_sel > 0, topk_min, zero),
            "vmpo/adv_mean": adv_mean,
            "vmpo/adv_std": adv_var.sqrt(),
            "vmpo/ess": ess,
            "vmpo/ess_frac": ess / n_sel.clamp_min(1.0),
            "vmpo/num_selected": n_sel,
        }


def vmpo_sample_loss(
    sample_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    valid: torch.Tensor,
    *,
    temperature: Penalty,
    topk_fraction: float,
    kl: torch.Tensor | None = None,
    kl_mask: torch.Tensor | None = None,
    trust_region: Penalty | None = None,
    axis: BatchAxis = LOCAL,
) -> LossOutput:
    r"""V-MPO's policy side ``L_pi + L_eta (+ L_alpha)`` on the log-probabilities of taken samples
    (Song et al. 2019, eqs. 2-5), for control and language models alike.

    A sample is whatever the E-step weighs: one step ``(s_t, a_t)`` of an Atari unroll (``[T, B]``) or one
    whole completion ``y_i`` of a prompt (``[B]``, ``log pi(y|x)`` summed over its tokens):

    1. ``S = topk_mask(A, valid, topk_fraction)``; 2. ``psi = e_step_weights(A, S, eta)``;
    3. ``L_pi = -sum psi log pi_theta(sample)`` (:func:`policy_loss`);
    4. ``L_eta`` (:func:`temperature_loss`) with ``temperature = Penalty(eta, eps_eta)``;
    5. with ``trust_region = Penalty(alpha, eps_alpha)``: ``L_alpha`` on the mean of ``kl`` over ``kl_mask``
       (:func:`trust_region_loss`); ``kl`` is per state (Atari: ``KL(pi_old(.|s_t) || pi_theta(.|s_t))``
       ``[T, B]``) or per token (language model: ``[B, T]`` with the completion mask).

    The batch axis (gathered over data-parallel ranks for the E-step) is the last axis of ``valid``: ``B``
    of ``[T, B]`` or of ``[B]``. Gradients: ``sample_log_probs`` get ``L_pi``; ``kl`` gets ``sg[alpha]``;
    ``eta`` gets ``L_eta`` only; ``alpha`` gets ``alpha (eps_alpha - sg[KL])`` only; ``advantages`` none.

    Returns:
        :class:`LossOutput`: this rank's share of the loss; metrics ``loss/policy``, the temperature's
        (``loss/eta``, ``vmpo/eta``, ``vmpo/kl_psi``), :func:`e_step_diagnostics`, and with a trust region
        ``loss/alpha``, ``vmpo/alpha``, ``vmpo/kl_mean``, ``vmpo/kl_max``.
    """
    for name, x in (("advantages", advantages), ("valid", valid)):
        if x.shape != sample_log_probs.shape:
            raise ValueError(f"{name} must have shape {tuple(sample_log_probs.shape)}, got {tuple(x.shape)}")
    if (kl is None) != (trust_region is None):
        raise ValueError("vmpo_sample_loss needs kl and trust_region together (or neither)")
    dim = valid.dim() - 1  # the batch axis: B of [T, B] or of [B]
    adv = axis.gather(advantages.detach().float(), dim=dim)  # the E-step sees the whole batch
    valid_all = axis.gather(valid.bool(), dim=dim)
    selected = topk_mask(adv, valid_all, topk_fraction)
    psi = e_step_weights(adv, selected, temperature.value)  # sums to 1 over S
    loss_pi = policy_loss(sample_log_probs, axis.local(psi, dim=dim))  # this rank's samples
    loss_eta, metrics = temperature_loss(temperature.value, adv, selected, temperature.epsilon)
    loss = loss_pi + loss_eta / axis.world  # L_eta is the same on every rank: the shares sum to it
    metrics = {"loss/policy": axis.sum(loss_pi.detach()), **metrics}
    if kl is not None and trust_region is not None:
        kl_mask = valid if kl_mask is None else kl_mask
        if kl.shape != kl_mask.shape:
            raise ValueError(f"kl {tuple(kl.shape)} != kl_mask {tuple(kl_mask.shape)}")
        loss_alpha, metrics_alpha = trust_region_loss(
            trust_region.value, kl, kl_mask, trust_region.epsilon, axis
        )
        loss = loss + loss_alpha
        metrics.update(metrics_alpha)
    metrics.update(e_step_diagnostics(adv, valid_all, selected, psi))
    return LossOutput(loss, metrics)


def vmpo_loss(
    logits: torch.Tensor,
    target_logits: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    temperature: Penalty,
    trust_region: Penalty,
    topk_fraction: float,
    ent_coef: float = 0.0,
    entropy_floor: Penalty | None = None,
    axis: BatchAxis = LOCAL,
) -> LossOutput:
    """V-MPO's policy side for discrete actions (Song et al. 2019, eqs. 2-5): the per-step
    log-probabilities of the taken actions and ``KL(pi_old || pi_theta)`` per state, through
    :func:`vmpo_sample_loss`, plus the policy entropy for logging.

    The value loss ``L_V`` is the learner's. Masked (reset) steps get no gradient at all.

    Args:
        logits: ``[T, B, A]`` online policy logits ``pi_theta`` (may be bf16; maths is fp32).
        target_logits: ``[T, B, A]`` logits of ``pi_old`` (target network / behaviour); detached inside.
        actions: ``[T, B]`` int64 actions taken.
        advantages: ``[T, B]`` ``A = G - V`` (e.g. from :func:`agent.returns.n_step_returns`); detached.
        mask: ``[T, B]`` bool/0-1, 1 = real transition (0 at autoreset steps).
        temperature: ``Penalty(eta, eps_eta)``, the E-step temperature and its KL bound.
        trust_region: ``Penalty(alpha, eps_alpha)``, the M-step KL multiplier and its bound.
        topk_fraction: fraction ``rho`` of valid samples kept by the E-step (paper: 0.5).
        ent_coef: weight ``c`` of an entropy bonus ``- c * mean_mask H(pi_theta)`` added to the loss
            (0: the paper's V-MPO, which has none). Weighted maximum likelihood on a few hundred selected
            samples, refitted for several epochs, sharpens the policy even when the advantages carry no
            signal; the bonus is PPO's counterweight (Schulman et al. 2017, eq. 9).
        entropy_floor: ``Penalty(beta, H_min)``: the constraint ``mean H(pi_theta) >= H_min`` with its
            multiplier (:func:`entropy_floor_loss`); ``None``: no floor (the paper's V-MPO).

    Returns:
        :class:`LossOutput` with :func:`vmpo_sample_loss`'s metrics and ``policy/entropy`` (mean over
        ``mask``).
    """
    if logits.shape != target_logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} != target_logits {tuple(target_logits.shape)}")
    for name, x in (("actions", actions), ("advantages", advantages), ("mask", mask)):
        if x.shape != logits.shape[:-1]:
            raise ValueError(f"{name} must have shape {tuple(logits.shape[:-1])}, got {tuple(x.shape)}")
    log_pi = F.log_softmax(logits.float(), dim=-1)  # [T, B, A]
    log_probs = log_pi.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)  # [T, B]
    loss, metrics = vmpo_sample_loss(
        log_probs, advantages, mask, temperature=temperature, topk_fraction=topk_fraction,
        kl=categorical_kl(target_logits, logits), trust_region=trust_region, axis=axis,
    )  # fmt: skip
    entropy = -(log_pi.exp() * log_pi).nan_to_num().sum(-1)  # [T, B]; 0 log 0 = 0 for -inf logits
    entropy_share = axis.mean_share(entropy, mask)  # this rank's share of the global masked mean
    if ent_coef > 0:
        loss = loss - ent_coef * entropy_share
    if entropy_floor is not None:
        loss_beta, metrics_beta = entropy_floor_loss(
            entropy_floor.value, entropy, mask, entropy_floor.epsilon, axis
        )
        loss = loss + loss_beta
        metrics.update(metrics_beta)
    metrics["policy/entropy"] = axis.sum(entropy_share.detach())
    return LossOutput(loss, metrics)
