r"""PPO loss as a pure function of tensors (Schulman et al. 2017, "Proximal Policy Optimization
Algorithms"; CleanRL ``ppo_atari_envpool``).

Full objective to minimise, the negative of ``L^{CLIP+VF+S}`` (Schulman et al. 2017, eq. 9):

.. math::
    \mathcal{L}(\theta, \phi) = -L^{CLIP}(\theta) + c_1 L^{VF}(\phi) - c_2 \mathbb{E}_t[S_t].

Semantics follow CleanRL's ``ppo_atari_envpool.py`` (``vf_coef = c_1``, ``ent_coef = c_2``, value loss
with the 0.5 factor, optional value clipping with the same ``clip_coef``, per-minibatch advantage
normalisation with the unbiased std and ``+ 1e-8``), extended with a ``mask`` so that autoreset steps
(NEXT_STEP autoreset, see :mod:`agent.returns`) are excluded from every mean. Maths is fp32.
"""

from __future__ import annotations

import torch

from agent.loss_output import LossOutput
from agent.masked import masked_mean

__all__ = ["clipped_surrogate", "ppo_loss"]


def clipped_surrogate(
    new_log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_coef: float,
) -> LossOutput:
    r"""PPO's clipped ratio surrogate ``-L^CLIP`` (Schulman et al. 2017, eq. 7), used by PPO and GRPO.

    .. math::
        r_t = \exp(\ell_{\theta,t} - \ell_{old,t}), \qquad
        -L^{CLIP} = \mathbb{E}_t[\max(-r_t A_t,\ -\mathrm{clip}(r_t, 1-\epsilon, 1+\epsilon) A_t)],

    the expectation a mean over ``mask``; masked entries get ratio 1 and no gradient (no nan).

    Args:
        new_log_probs: log-probabilities under the current parameters (carry the gradient), any shape.
        old_log_probs: the behaviour log-probabilities, same shape; detached inside.
        advantages: same shape (the caller normalises or broadcasts them); detached inside.
        mask: bool/0-1, same shape.
        clip_coef: ``epsilon``.

    Returns:
        :class:`~agent.loss_output.LossOutput`: the 0-d fp32 ``-L^CLIP``; metrics ``loss/policy``,
        ``ppo/approx_kl`` (the ``E[(r - 1) - log r]`` estimator), ``ppo/clipfrac`` (``|r - 1| > epsilon``).
    """
    m = mask.bool()
    for name, x in (
        ("new_log_probs", new_log_probs),
        ("old_log_probs", old_log_probs),
        ("advantages", advantages),
    ):
        if x.shape != m.shape:
            raise ValueError(f"{name} must have the mask's shape {tuple(m.shape)}, got {tuple(x.shape)}")
    logratio = new_log_probs.float() - old_log_probs.detach().float()
    logratio = torch.where(m, logratio, torch.zeros_like(logratio))  # masked steps: ratio 1, no nan
    ratio = logratio.exp()
    adv = advantages.detach().float()
    # -min(r A, clip(r) A) = max(-r A, -clip(r) A).
    pg_loss = masked_mean(
        torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef)), m
    )
    with torch.no_grad():
        metrics = {
            "loss/policy": pg_loss.detach(),
            "ppo/approx_kl": masked_mean((ratio - 1.0) - logratio, m),
            "ppo/clipfrac": masked_mean(((ratio - 1.0).abs() > clip_coef).float(), m),
        }
    return LossOutput(pg_loss, metrics)


def ppo_loss(
    new_log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    entropy: torch.Tensor,
    *,
    clip_coef: float,
    clip_value: bool,
    vf_coef: float,
    ent_coef: float,
    norm_adv: bool,
) -> LossOutput:
    r"""PPO's loss: :func:`clipped_surrogate`, the value loss and the entropy bonus (Schulman et al. 2017,
    eq. 9).

    .. math::
        r_t = \exp(\ell_{\theta,t} - \ell_{old,t}), \qquad
        L^{CLIP} = \mathbb{E}_t[\min(r_t \hat A_t,\ \mathrm{clip}(r_t, 1-\epsilon, 1+\epsilon) \hat A_t)],

        L^{VF} = \tfrac12 \mathbb{E}_t[(V_\phi(s_t) - R_t)^2] \quad\text{or, with value clipping,}\quad
        \tfrac12 \mathbb{E}_t[\max((V - R)^2,\ (V_{old} + \mathrm{clip}(V - V_{old}, \pm\epsilon) - R)^2)],

        \text{loss} = -L^{CLIP} + c_1 L^{VF} - c_2 \mathbb{E}_t[S_t].

    ``norm_adv``: :math:`\hat A = (A - \mu_A) / (\sigma_A + 10^{-8})` with mean and unbiased std over the
    masked batch (not in the paper: OpenAI Baselines' PPO2 and CleanRL normalise each minibatch);
    otherwise :math:`\hat A = A`.

    All per-step tensors share one shape (``[T, B]`` or a flat minibatch ``[M]``); every expectation is a
    mean over ``mask``. ``old_log_probs``, ``advantages``, ``old_values`` and ``returns`` are detached
    inside; gradients flow into ``new_log_probs``, ``new_values`` and ``entropy``.

    Args:
        new_log_probs: ``log pi_theta(a_t|s_t)`` under the current parameters.
        old_log_probs: ``log pi_old(a_t|s_t)`` recorded at rollout time.
        advantages: ``A_t`` (e.g. :func:`agent.returns.gae`).
        new_values: ``V_phi(s_t)`` under the current parameters.
        old_values: ``V`` recorded at rollout time (for value clipping).
        returns: critic targets ``R_t`` (e.g. GAE returns).
        mask: bool/0-1, 1 = real transition.
        entropy: per-step policy entropy ``S(pi_theta(.|s_t))``.
        clip_coef: ``epsilon`` of the ratio clip (and of the value clip).
        clip_value: clip the value update as in CleanRL's ``clip_vloss``.
        vf_coef: ``c_1``.
        ent_coef: ``c_2``.
        norm_adv: normalise advantages over the masked batch.

    Returns:
        :class:`~agent.loss_output.LossOutput`: 0-d fp32 loss; metrics ``"loss/policy"`` (``-L^CLIP``),
        ``"loss/value"`` (``L^VF``, incl. the 0.5), ``"policy/entropy"``, ``"ppo/approx_kl"`` (the
        ``E[(r - 1) - log r]`` estimator), ``"ppo/clipfrac"`` (fraction with ``|r - 1| > epsilon``).
    """
    m = mask.bool()
    shape = m.shape
    for name, x in (
        ("new_log_probs", new_log_probs),
        ("old_log_probs", old_log_probs),
        ("advantages", advantages),
        ("new_values", new_values),
        ("old_values", old_values),
        ("returns", returns),
        ("entropy", entropy),
    ):
        if x.shape != shape:
            raise ValueError(f"{name} must have the mask's shape {tuple(shape)}, got {tuple(x.shape)}")

    adv = advantages.detach().float()
    if norm_adv:
        n = m.sum().float()
        mean = masked_mean(adv, m)
        var = masked_mean((adv - mean) ** 2, m) * n / (n - 1.0).clamp_min(1.0)  # unbiased, as torch.std
        adv = (adv - mean) / (var.sqrt() + 1e-8)
    pg_loss, metrics = clipped_surrogate(new_log_probs, old_log_probs, adv, m, clip_coef=clip_coef)

    # Value.
    v_new = new_values.float()
    ret = returns.detach().float()
    v_loss_unclipped = (v_new - ret) ** 2
    if clip_value:
        v_old = old_values.detach().float()
        v_clipped = v_old + torch.clamp(v_new - v_old, -clip_coef, clip_coef)
        v_loss_terms = torch.maximum(v_loss_unclipped, (v_clipped - ret) ** 2)
    else:
        v_loss_terms = v_loss_unclipped
    v_loss = 0.5 * masked_mean(v_loss_terms, m)

    entropy_mean = masked_mean(entropy.float(), m)
    loss = pg_loss - ent_coef * entropy_mean + vf_coef * v_loss

    metrics.update({"loss/value": v_loss.detach(), "policy/entropy": entropy_mean.detach()})
    return LossOutput(loss, metrics)
