r"""Sequence-level losses as pure functions; V-MPO itself is :func:`agent.vmpo.vmpo_sample_loss`, the same
function the Atari learner calls, fed per-completion log-probs (:func:`sequence_log_probs`) and the
per-token KL to the reference (:func:`token_kl`).

Every method shares one M-step form, the weighted teacher-forced NLL of whole completions (V-MPO's
weighted maximum likelihood, Song et al. 2019, eq. 3, with a completion as the sample):
``L_pi = -sum_i w_i log pi_theta(y_i | x_i)`` with ``log pi(y|x) = sum_t log pi(y_t | y_<t, x)`` (the
chain rule over the completion's tokens) and weights ``w`` detached. They differ only in ``w``:

* SFT, read as EM with the E-step ``q(y'|x) = delta(y' = y)`` on the demonstrations: ``w_i = 1 / B`` on
  the reference answers.
* V-MPO (Song et al. 2019, eqs. 3-5, per completion): ``w = psi = softmax_S(A / eta)`` on the top-k set
  ``S``, ``eta`` fitted by the log-sum-exp dual; optional KL trust region to a reference with dual
  ``alpha`` (:func:`agent.vmpo.vmpo_sample_loss`).
* DAR (He et al. 2025, "Direct Advantage Regression": the closed-form optimum of their objective with a
  KL to ``pi_ref`` and one to the sampling policy ``pi_t``, fitted by weighted regression on samples of
  ``pi_t``): ``w_i = (pi_ref / pi_t)^(alpha/t) exp(A_i / t)``, ``t = alpha + beta``, clipped at
  ``weight_clip``, averaged over the batch.
* AWR (Peng et al. 2019, section 3): ``w_i = min(exp(A_i / beta), weight_clip)``, averaged over the
  batch.

GRPO / PPO-seq (Shao et al. 2024, section 4.1.1, eq. 3; the clipped ratio of Schulman et al. 2017,
eq. 7) is the ratio-based baseline: :func:`agent.ppo.ppo_loss` with the sequence advantage broadcast to
every completion token.

Shapes: ``B`` sequences, ``T`` completion tokens. Returns ``(loss, extras)`` with detached 0-d extras.

Data parallel (``agent.distributed``, torchrun): the functions take a ``BatchAxis`` over the sequences of
all ranks. V-MPO's top-k, ``psi`` and ``L_eta`` run on the gathered ``[W*B]`` advantages; batch means
(DAR, AWR, the KL) divide by the global count; the returned loss is this rank's share of the global loss.
GRPO's token mean stays per rank (the share is loss / W, the mean over ranks, as in TRL).
"""

from __future__ import annotations

import math

import torch

from agent.distributed import LOCAL, BatchAxis
from agent.loss_output import LossOutput
from agent.ppo import clipped_surrogate
from agent.vmpo import categorical_kl, effective_sample_size, policy_loss, trust_region_loss

__all__ = [
    "awr_loss",
    "dar_loss",
    "dar_weights",
    "grpo_loss",
    "normalized_weight_kl",
    "reference_kl_loss",
    "sequence_log_probs",
    "sft_loss",
    "token_kl",
]

Extras = dict[str, torch.Tensor]


def sequence_log_probs(token_log_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log pi(y|x) = sum_t mask_t log pi(y_t|y_<t, x)``: ``[B, T] -> [B]`` fp32."""
    if token_log_probs.shape != mask.shape:
        raise ValueError(f"token_log_probs {tuple(token_log_probs.shape)} != mask {tuple(mask.shape)}")
    lp = token_log_probs.float()
    return torch.where(mask.bool(), lp, torch.zeros_like(lp)).sum(dim=-1)


def _check_batch(seq_log_probs: torch.Tensor, **others: torch.Tensor) -> None:
    for name, x in others.items():
        if x.shape != seq_log_probs.shape:
            raise ValueError(f"{name} must have shape {tuple(seq_log_probs.shape)}, got {tuple(x.shape)}")


def sft_loss(seq_log_probs: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, Extras]:
    """SFT as the EM special case (E-step ``q = delta(tau = y)``, M-step maximum likelihood): weight ``1/B``
    each, through the same :func:`agent.vmpo.policy_loss` M-step. ``seq_log_probs`` ``[B]`` of the
    references."""
    _check_batch(seq_log_probs, valid=valid)
    v = valid.bool()
    psi = v.float() / v.sum().clamp_min(1).float()
    loss = policy_loss(seq_log_probs, psi)
    return loss, {"loss/policy": loss.detach()}


def token_kl(ref_logits: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token ``KL(pi_ref(.|s_t) || pi_theta(.|s_t))`` ``[B, T]`` (:func:`agent.vmpo.categorical_kl`),
    for the trust region of V-MPO (``vmpo_sample_loss(kl=..., kl_mask=mask)``) and GRPO's KL penalty.

    Args: ``ref_logits``, ``logits`` ``[B, T, V]``; ``mask`` ``[B, T]`` completion tokens.
    """
    if ref_logits.shape != logits.shape or logits.shape[:-1] != mask.shape:
        raise ValueError(
            f"ref_logits {tuple(ref_logits.shape)}, logits {tuple(logits.shape)}, mask {tuple(mask.shape)}: "
            "need [B, T, V], [B, T, V], [B, T]"
        )
    return categorical_kl(ref_logits, logits)


def reference_kl_loss(
    alpha: torch.Tensor | float,
    ref_logits: torch.Tensor,
    logits: torch.Tensor,
    mask: torch.Tensor,
    eps_alpha: float,
    axis: BatchAxis = LOCAL,
) -> tuple[torch.Tensor, Extras]:
    r"""KL to a reference policy with multiplier ``alpha`` (the form of V-MPO's ``L_alpha``, Song et al. 2019,
    eq. 5), per token:
    ``alpha (eps_alpha - sg[KL]) + sg[alpha] KL``, ``KL = mean_{mask}`` of :func:`token_kl`, through
    :func:`agent.vmpo.trust_region_loss`. GRPO's penalty is this with a fixed float ``alpha`` and
    ``eps_alpha = 0``; V-MPO's trust region goes through :func:`agent.vmpo.vmpo_sample_loss` instead.
    """
    return trust_region_loss(alpha, token_kl(ref_logits, logits, mask), mask, eps_alpha, axis)


def _weighted_mean_nll(
    seq_log_probs: torch.Tensor, w: torch.Tensor, valid: torch.Tensor, axis: BatchAxis, name: str
) -> tuple[torch.Tensor, Extras, torch.Tensor]:
    """The M-step ``-mean_valid w_i log pi_theta(y_i|x_i)`` over every rank's valid sequences (DAR, AWR):
    (this rank's share of the loss, weight statistics under ``name/``, the global count of valid ones)."""
    count = axis.sum(valid.sum()).clamp_min(1).float()  # valid sequences of all ranks
    loss = policy_loss(seq_log_probs, w / count)
    extras = {
        "loss/policy": axis.sum(loss),
        f"{name}/weight_mean": axis.sum(w.sum()) / count,
        f"{name}/weight_max": axis.max(w.max()),
        f"{name}/ess": effective_sample_size(w),
        f"{name}/kl_psi": normalized_weight_kl(w, valid),
    }
    return loss, extras, count


def normalized_weight_kl(w: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``KL(p || U)`` of the normalised weights ``p = w / sum(w)`` from the uniform ``U`` over the valid
    sequences: ``sum_i p_i log p_i + log n`` (0 = all equal, ``log n`` = one sequence takes all). The
    fixed-temperature analogue of V-MPO's ``vmpo/kl_psi`` (which is taken over the top-k set ``S``).
    This rank's sequences; ``[B]`` -> 0-d; 0 when no valid sequence has weight (no host sync)."""
    v = valid.bool()
    wv = torch.where(v, w.detach().float(), 0.0)
    total = wv.sum()
    p = wv / total.clamp_min(1e-30)
    kl = (p * p.clamp_min(1e-30).log()).sum() + v.sum().clamp_min(1).float().log()
    return torch.where(total > 0, kl, torch.zeros_like(kl))


def dar_weights(
    advantages: torch.Tensor,
    ref_seq_log_probs: torch.Tensor,
    old_seq_log_probs: torch.Tensor,
    alpha: float,
    beta: float,
    weight_clip: float,
) -> torch.Tensor:
    r"""DAR importance weights (He et al. 2025, the weighted-regression objective on samples of ``pi_t``):

    .. math::
        w_i = \min\Big(\big(\tfrac{\pi_{ref}(y_i|x_i)}{\pi_t(y_i|x_i)}\big)^{\alpha/t}
              \exp\big(\tfrac{A_i}{t}\big),\ w_{max}\Big), \qquad t = \alpha + \beta,

    i.e. the closed-form target ``pi_ref^(alpha/t) pi_t^(beta/t) exp(A/t)`` (their optimal policy, up to
    its normaliser) divided by the sampling policy ``pi_t``. Clipping is done in log space (no overflow).
    All inputs detached; ``[B]``.
    """
    if alpha < 0 or beta < 0 or alpha + beta <= 0 or weight_clip <= 0:
        raise ValueError(
            f"DAR needs alpha, beta >= 0 with alpha + beta > 0 and weight_clip > 0; "
            f"got alpha={alpha}, beta={beta}, weight_clip={weight_clip}"
        )
    t = alpha + beta
    log_ratio = ref_seq_log_probs.detach().float() - old_seq_log_probs.detach().float()
    log_w = (alpha / t) * log_ratio + advantages.detach().float() / t
    return torch.exp(log_w.clamp_max(math.log(weight_clip)))


def dar_loss(
    seq_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    ref_seq_log_probs: torch.Tensor,
    old_seq_log_probs: torch.Tensor,
    valid: torch.Tensor,
    alpha: float,
    beta: float,
    weight_clip: float,
    axis: BatchAxis = LOCAL,
) -> tuple[torch.Tensor, Extras]:
    """DAR M-step ``-mean_valid w_i log pi_theta(y_i|x_i)`` with :func:`dar_weights` (He et al. 2025)."""
    _check_batch(
        seq_log_probs, advantages=advantages, ref_seq_log_probs=ref_seq_log_probs,
        old_seq_log_probs=old_seq_log_probs, valid=valid,
    )  # fmt: skip
    v = valid.bool()
    w = torch.where(
        v, dar_weights(advantages, ref_seq_log_probs, old_seq_log_probs, alpha, beta, weight_clip), 0.0
    )
    loss, extras, count = _weighted_mean_nll(seq_log_probs, w, v, axis, "dar")
    extras["dar/clipfrac"] = axis.sum((w >= weight_clip * (1 - 1e-6)).float().sum()) / count
    return loss, extras


def awr_loss(
    seq_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    valid: torch.Tensor,
    beta: float,
    weight_clip: float,
    axis: BatchAxis = LOCAL,
) -> tuple[torch.Tensor, Extras]:
    """AWR M-step ``-mean_valid min(exp(A_i / beta), w_max) log pi_theta(y_i|x_i)`` (Peng et al. 2019)."""
    _check_batch(seq_log_probs, advantages=advantages, valid=valid)
    if beta <= 0 or weight_clip <= 0:
        raise ValueError(
            f"AWR needs beta > 0 and weight_clip > 0, got beta={beta}, weight_clip={weight_clip}"
        )
    v = valid.bool()
    log_w = (advantages.detach().float() / beta).clamp_max(math.log(weight_clip))
    w = torch.where(v, torch.exp(log_w), 0.0)
    loss, extras, _ = _weighted_mean_nll(seq_log_probs, w, v, axis, "awr")
    return loss, extras


def grpo_loss(
    token_log_probs: torch.Tensor,
    old_token_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
) -> LossOutput:
    r"""GRPO / PPO-seq clipped surrogate (Shao et al. 2024, eq. 3, without its KL term):
    :func:`agent.ppo.clipped_surrogate`.

    The sequence advantage ``A_i`` ``[B]`` is broadcast to every completion token; the ratio is per token
    ``pi_theta(y_t|.) / pi_old(y_t|.)``; the mean is over all completion tokens of the batch (token-level
    normalisation, where eq. 3 averages each completion over its own length). No value or entropy term.

    Args: ``token_log_probs``, ``old_token_log_probs``, ``mask`` ``[B, T]``; ``advantages`` ``[B]``.
    """
    if token_log_probs.shape != old_token_log_probs.shape or token_log_probs.shape != mask.shape:
        raise ValueError(
            f"token_log_probs {tuple(token_log_probs.shape)}, old_token_log_probs "
            f"{tuple(old_token_log_probs.shape)} and mask {tuple(mask.shape)} must match"
        )
    if advantages.shape != mask.shape[:1]:
        raise ValueError(f"advantages must have shape {tuple(mask.shape[:1])}, got {tuple(advantages.shape)}")
    adv = advantages.detach().float().unsqueeze(-1).expand_as(token_log_probs)
    return clipped_surrogate(token_log_probs, old_token_log_probs, adv, mask, clip_coef=clip_eps)
