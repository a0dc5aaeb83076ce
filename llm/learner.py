"""The sequence-level learner: one sampled batch -> advantages -> method loss -> optimiser steps.

All methods share this path, the EM view of RL fine-tuning (an E-step weighs sampled completions, an
M-step fits them by weighted maximum likelihood): reward -> advantage ``A(x, y)`` -> per-sequence
weights -> weighted teacher-forced NLL of the whole completion (GRPO, Shao et al. 2024: PPO's clipped
ratio surrogate, Schulman et al. 2017, eq. 7, instead).
V-MPO is :func:`agent.vmpo.vmpo_sample_loss`, the Atari learner's own function, on per-completion
log-probs and the per-token KL to the reference; the duals are :class:`agent.duals.LagrangeMultiplier`.

Dropout (Srivastava et al. 2014): sampling and the ``pi_old``/``pi_ref`` forward passes run in eval mode;
the M-step forward runs in train mode (dropout on) only when ``algo.mstep_dropout`` is set. The M-step
weights are fixed by the E-step, so a dropout mask there gives an unbiased weighted-NLL gradient (no
ratio of two forward passes, unlike PPO's).

Metrics are named here, where they are computed, and logged verbatim by ``llm.trainer``: TRL's names
under ``train/`` (``train/reward``, ``train/kl`` ...), the losses' own (``loss/...``, ``vmpo/...``,
``dar/...``, ``awr/...``, ``ppo/...``), and ``sft/...`` for the warm start.

Data parallel (torchrun, ``agent.distributed``): each rank samples its own prompts (whole groups stay on
one rank), the E-step and batch means run over every rank's sequences, and the gradients of the policy,
the duals and the value head are averaged over ranks after each backward pass (``BatchAxis
.average_gradients``: one flat all-reduce; the Hugging Face model is not wrapped in DDP because its
forward is reached through ``generate``-style helpers, not one ``forward`` call).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from agent.distributed import LOCAL, BatchAxis
from agent.duals import LagrangeMultiplier
from agent.vmpo import Penalty, vmpo_sample_loss
from llm.advantages import group_mean_advantages, group_reward_std, value_advantages
from llm.losses import (
    awr_loss,
    dar_loss,
    grpo_loss,
    reference_kl_loss,
    sequence_log_probs,
    sft_loss,
    token_kl,
)
from llm.rollout import Rollout, completion_log_probs
from networks.precision import autocast

__all__ = ["SequenceLearner"]


def _hidden_size(model: nn.Module) -> int:
    config = model.config
    for key in ("hidden_size", "n_embd", "d_model"):
        if isinstance(getattr(config, key, None), int):
            return int(getattr(config, key))
    raise ValueError(f"cannot find the hidden size of {type(model).__name__} for the value head")


class SequenceLearner(nn.Module):
    """Owns the policy, the optional reference ``pi_ref``, the value head ``V(x)``, the duals and optimisers.

    Args:
        policy: an HF causal LM.
        algo: ``LLMAlgoConfig``.
        sft_lr: learning rate of :meth:`sft_step` (a separate Adam, dropped after the warm start).
    """

    def __init__(self, policy: nn.Module, algo: Any, sft_lr: float, bf16: bool = False) -> None:
        super().__init__()
        self.policy = policy
        self.algo = algo
        self.bf16 = bf16  # the forward passes in bf16 autocast (log-softmax and losses stay fp32)
        v = algo.vmpo
        self.eta = LagrangeMultiplier(v.eta_init, mode=v.dual_param)
        self.alpha = LagrangeMultiplier(v.alpha_init, mode=v.dual_param)
        self.value_head = nn.Linear(_hidden_size(policy), 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.ref: nn.Module | None = None
        self.axis: BatchAxis = LOCAL
        self.num_updates = 0
        self.policy_opt = torch.optim.Adam(policy.parameters(), lr=algo.lr)
        self.sft_opt = torch.optim.Adam(policy.parameters(), lr=sft_lr)
        self.dual_opt = torch.optim.Adam([self.eta.raw, self.alpha.raw], lr=v.dual_lr)
        self.value_opt = torch.optim.Adam(self.value_head.parameters(), lr=algo.value_lr)

    def distribute(self, axis: BatchAxis) -> None:
        """Train as one of ``axis.world`` replicas: rank 0's parameters are copied to every rank now."""
        self.axis = axis
        if axis.distributed:
            for tensor in [*self.parameters(), *self.buffers()]:
                torch.distributed.broadcast(tensor.data, src=0, group=axis.group)

    def _backward(self, share: torch.Tensor, params: list[nn.Parameter]) -> None:
        """Gradients of the global loss from this rank's share (mean over ranks of ``world * share``)."""
        (share * self.axis.world).backward()
        self.axis.average_gradients(params)

    def _log_probs(self, model: nn.Module, batch: Rollout, **kwargs: bool) -> Any:
        """:func:`llm.rollout.completion_log_probs` in this learner's precision: under bf16 autocast the
        model body runs in bf16 and the log-probs come back fp32 (the log-softmax upcasts the logits);
        ``logits`` for a KL term are upcast here, so every tensor the losses see is fp32."""
        device = next(model.parameters()).device
        with autocast(device, self.bf16):
            token_lp, logits, features = completion_log_probs(model, batch, **kwargs)
        return token_lp, (logits.float() if logits is not None else None), features

    # ------------------------------------------------------------------ reference policy
    @property
    def needs_ref(self) -> bool:
        a = self.algo
        return (
            a.method == "dar"
            or (a.method == "vmpo" and a.vmpo.kl_to_ref)
            or (a.method == "grpo" and a.grpo.kl_coef > 0)
        )

    def refresh_ref(self) -> None:
        """``pi_ref <- pi_theta`` (a frozen copy); no-op when the method needs no reference."""
        if not self.needs_ref:
            return
        self.ref = copy.deepcopy(self.policy).eval()
        self.ref.requires_grad_(False)

    # ------------------------------------------------------------------ SFT warm start
    def sft_step(self, batch: Rollout) -> dict[str, float]:
        """One SFT step: the EM special case ``q(y'|x) = delta(y' = y)`` (every reference completion weight
        1/B) on the weighted-NLL M-step; -> ``sft/loss``, ``sft/nll_per_token``."""
        self.policy.train(self.algo.mstep_dropout)
        token_lp, _, _ = self._log_probs(self.policy, batch)
        seq_lp = sequence_log_probs(token_lp, batch.completion_mask)
        loss, _ = sft_loss(seq_lp, torch.ones_like(seq_lp, dtype=torch.bool))
        self.sft_opt.zero_grad(set_to_none=True)
        self._backward(loss / self.axis.world, list(self.policy.parameters()))  # the mean over ranks
        nn.utils.clip_grad_norm_(self.policy.parameters(), self.algo.max_grad_norm)
        self.sft_opt.step()
        tokens = batch.completion_mask.sum().clamp_min(1)
        return {
            "sft/loss": float(loss.detach()),
            "sft/nll_per_token": float(-token_lp.detach().sum() / tokens),
        }

    # ------------------------------------------------------------------ RL update
    def _advantages(self, rewards: torch.Tensor, group: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if self.algo.advantage == "group_mean":
            return group_mean_advantages(rewards, group, self.algo.normalize_std)
        return value_advantages(rewards, self.value_head(features).squeeze(-1))

    def _fit_value(self, features: torch.Tensor, rewards: torch.Tensor) -> float:
        loss = 0.5 * (self.value_head(features).squeeze(-1) - rewards).pow(2).mean()
        self.value_opt.zero_grad(set_to_none=True)
        self._backward(loss / self.axis.world, list(self.value_head.parameters()))  # the mean over ranks
        self.value_opt.step()
        return float(loss.detach())

    def _method_loss(
        self,
        token_lp: torch.Tensor,
        old_token_lp: torch.Tensor,
        ref_token_lp: torch.Tensor | None,
        adv: torch.Tensor,
        mask: torch.Tensor,
        valid: torch.Tensor,
        logits: torch.Tensor | None,
        ref_logits: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The method's loss (this rank's share) and metrics; ``logits``/``ref_logits`` ``[B, T, V]`` are
        given when the method has a KL term to the reference (V-MPO's trust region, GRPO's penalty)."""
        a = self.algo
        seq_lp = sequence_log_probs(token_lp, mask)
        axis = self.axis
        use_kl = logits is not None and ref_logits is not None
        if a.method == "vmpo":
            kl = token_kl(ref_logits, logits, mask) if use_kl else None
            return vmpo_sample_loss(
                seq_lp, adv, valid, temperature=Penalty(self.eta.value(), a.vmpo.eps_eta),
                topk_fraction=a.vmpo.topk_fraction, kl=kl, kl_mask=mask,
                trust_region=Penalty(self.alpha.value(), a.vmpo.eps_alpha) if use_kl else None, axis=axis,
            )  # fmt: skip
        if a.method == "dar":
            assert ref_token_lp is not None
            ref_seq, old_seq = sequence_log_probs(ref_token_lp, mask), sequence_log_probs(old_token_lp, mask)
            return dar_loss(
                seq_lp, adv, ref_seq, old_seq, valid, a.dar.alpha, a.dar.beta, a.dar.weight_clip, axis
            )
        if a.method == "awr":
            return awr_loss(seq_lp, adv, valid, a.awr.beta, a.awr.weight_clip, axis)
        loss, extras = grpo_loss(token_lp, old_token_lp, adv, mask & valid.unsqueeze(-1), a.grpo.clip_eps)
        loss = loss / axis.world  # the mean of the ranks' token means
        if use_kl:  # a plain penalty: fixed kl_coef with eps 0, gradient kl_coef * dKL
            kl_loss, kl_extras = reference_kl_loss(a.grpo.kl_coef, ref_logits, logits, mask, 0.0, axis)
            loss, extras = loss + kl_loss, {**extras, **kl_extras}
        return loss, extras

    def update(self, rollout: Rollout, rewards: torch.Tensor) -> dict[str, float]:
        """One RL update on a sampled batch; returns scalar metrics, named for logging (TRL's names under
        ``train/`` where they exist, the method loss's own namespaces)."""
        a = self.algo
        mask = rollout.completion_mask
        rewards = rewards.float().to(mask.device)
        use_kl = self.ref is not None and a.method in ("vmpo", "grpo")
        with torch.no_grad():
            self.policy.eval()
            old_token_lp, _, features = self._log_probs(self.policy, rollout, with_prompt_features=True)
            assert features is not None
            ref_token_lp, ref_logits = None, None
            if self.ref is not None:
                ref_token_lp, ref_logits, _ = self._log_probs(self.ref, rollout, with_logits=use_kl)
            adv = self._advantages(rewards, rollout.group, features)
            zero_std = group_reward_std(rewards, rollout.group) == 0
            # A group whose completions all got the same reward has A = 0 everywhere under the group-mean
            # baseline: no information on which completion is better, so it is left out of the E-step.
            skip = a.skip_zero_std_groups and a.advantage == "group_mean"
            valid = ~zero_std if skip else torch.ones_like(zero_std)
        metrics: dict[str, float] = {}
        if a.advantage == "value":
            metrics["loss/value"] = self._fit_value(features, rewards)

        for _ in range(a.update_epochs):
            self.policy.train(a.mstep_dropout)
            token_lp, logits, _ = self._log_probs(self.policy, rollout, with_logits=use_kl)
            loss, extras = self._method_loss(
                token_lp, old_token_lp, ref_token_lp, adv, mask, valid, logits, ref_logits
            )
            self.policy_opt.zero_grad(set_to_none=True)
            self.dual_opt.zero_grad(set_to_none=True)
            self._backward(loss, [*self.policy.parameters(), self.eta.raw, self.alpha.raw])
            grad_norm = nn.utils.clip_grad_norm_(self.policy.parameters(), a.max_grad_norm)
            self.policy_opt.step()
            self.dual_opt.step()
            self.eta.project_()
            self.alpha.project_()
        self.policy.eval()
        self.num_updates += 1
        if a.ref_update_period and self.num_updates % a.ref_update_period == 0:
            self.refresh_ref()

        with torch.no_grad():
            lengths = mask.sum(-1).float()
            metrics.update({k: float(v) for k, v in extras.items()})
            metrics.update(
                {
                    "train/loss": float(self.axis.sum(loss)),
                    "train/reward": float(self.axis.sum(rewards.mean()) / self.axis.world),  # all ranks
                    "train/reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
                    "train/frac_reward_zero_std": float(zero_std.float().mean()),
                    "train/completions/mean_length": float(lengths.mean()),
                    "train/completions/max_length": float(lengths.max()),
                    "train/adv/mean": float(adv.mean()),
                    "train/adv/std": float(adv.std()) if adv.numel() > 1 else 0.0,
                    "train/grad_norm": float(grad_norm),
                    "train/kl_old": float(
                        ((old_token_lp - token_lp.detach()) * mask).sum() / mask.sum().clamp_min(1)
                    ),
                }
            )
            if "vmpo/kl_mean" in metrics:
                metrics["train/kl"] = metrics["vmpo/kl_mean"]
        return metrics

    # ------------------------------------------------------------------ checkpoint state
    def training_state(self) -> dict[str, Any]:
        """Optimiser, dual and value-head state (the policy itself goes through ``save_pretrained``)."""
        return {
            "policy_opt": self.policy_opt.state_dict(),
            "dual_opt": self.dual_opt.state_dict(),
            "value_opt": self.value_opt.state_dict(),
            "eta": self.eta.state_dict(),
            "alpha": self.alpha.state_dict(),
            "value_head": self.value_head.state_dict(),
            "num_updates": self.num_updates,
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.policy_opt.load_state_dict(state["policy_opt"])
        self.dual_opt.load_state_dict(state["dual_opt"])
        self.value_opt.load_state_dict(state["value_opt"])
        self.eta.load_state_dict(state["eta"])
        self.alpha.load_state_dict(state["alpha"])
        self.value_head.load_state_dict(state["value_head"])
        self.num_updates = int(state["num_updates"])
