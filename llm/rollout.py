"""Sampling groups of completions and teacher-forced log-probabilities of a causal LM.

Shapes (``B`` = prompts x completions per prompt, ``P`` = padded prompt length, ``T`` = completion length):

* prompts are left-padded ``[B, P]`` (so that every prompt ends at column ``P - 1``), completions are
  right-padded ``[B, T]``; ``completion_mask`` is 1 on the generated tokens up to and including the
  first eos, 0 on the padding after it.
* :func:`completion_log_probs` returns per-token ``log pi(y_t | x, y_<t)`` ``[B, T]`` (0 where masked);
  the sequence log-likelihood ``log pi(y | x)`` is its sum over ``T`` (the chain rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llm.models import Codec
from llm.tasks import Example

__all__ = [
    "Rollout",
    "completion_log_probs",
    "completion_mask_from_eos",
    "left_pad",
    "right_pad",
    "sample_completions",
    "sft_batch",
]


@dataclass
class Rollout:
    """A batch of prompts with their completions (sampled, or the references for SFT)."""

    prompt_ids: torch.Tensor  # [B, P] int64, left-padded
    prompt_mask: torch.Tensor  # [B, P] bool
    completion_ids: torch.Tensor  # [B, T] int64, right-padded
    completion_mask: torch.Tensor  # [B, T] bool, 1 up to and including the first eos
    group: torch.Tensor  # [B] int64, index of the prompt each completion answers
    examples: list[Example]  # [B]
    texts: list[str]  # [B] decoded completions (without eos / padding)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists to ``[B, max_len]``; returns ``(ids, mask)``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s) :] = True
    return ids, mask


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists to ``[B, max_len]``; returns ``(ids, mask)``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = True
    return ids, mask


def completion_mask_from_eos(completion_ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """``[B, T]`` bool: True up to and including the first ``eos_id`` of each row (all True if none)."""
    is_eos = (completion_ids == eos_id).long()
    eos_before = torch.cumsum(is_eos, dim=1) - is_eos  # eos strictly before position t
    return eos_before == 0


def _decode(codec: Codec, ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    return [
        codec.decode([t for t, m in zip(row, row_mask) if m])
        for row, row_mask in zip(ids.tolist(), mask.tolist())
    ]


@torch.no_grad()
def sample_completions(
    model: nn.Module,
    codec: Codec,
    examples: Sequence[Example],
    completions_per_prompt: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    greedy: bool = False,
) -> Rollout:
    """``N = completions_per_prompt`` completions ``y ~ pi(.|x)`` per prompt with HF ``generate``.

    The model is put in eval mode (no dropout while sampling) and left in it. ``greedy`` decodes the
    argmax instead of sampling (evaluation).
    """
    from transformers import GenerationConfig

    if completions_per_prompt < 1 or max_new_tokens < 1:
        raise ValueError(
            "need completions_per_prompt >= 1 and max_new_tokens >= 1, "
            f"got {completions_per_prompt} and {max_new_tokens}"
        )
    model.eval()
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = left_pad(
        [codec.encode_prompt(e.prompt, e.question) for e in examples], codec.pad_id
    )
    prompt_ids = prompt_ids.repeat_interleave(completions_per_prompt, 0).to(device)
    prompt_mask = prompt_mask.repeat_interleave(completions_per_prompt, 0).to(device)
    gen = GenerationConfig(
        do_sample=not greedy,
        temperature=temperature if not greedy else None,
        top_k=top_k if not greedy else None,
        top_p=1.0 if not greedy else None,
        max_new_tokens=max_new_tokens,
        pad_token_id=codec.pad_id,
        eos_token_id=codec.eos_id,
    )
    out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask.long(), generation_config=gen)
    completion_ids = out[:, prompt_ids.shape[1] :]
    completion_mask = completion_mask_from_eos(completion_ids, codec.eos_id)
    completion_ids = torch.where(
        completion_mask, completion_ids, torch.full_like(completion_ids, codec.pad_id)
    )
    text_mask = completion_mask & (completion_ids != codec.eos_id)
    group = torch.arange(len(examples), device=device).repeat_interleave(completions_per_prompt)
    return Rollout(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        group=group,
        examples=[e for e in examples for _ in range(completions_per_prompt)],
        texts=_decode(codec, completion_ids, text_mask),
    )


def sft_batch(codec: Codec, examples: Sequence[Example], device: torch.device) -> Rollout:
    """Reference answers as completions (SFT read as EM: the E-step ``q(tau|x) = delta(tau = y)``)."""
    prompt_ids, prompt_mask = left_pad(
        [codec.encode_prompt(e.prompt, e.question) for e in examples], codec.pad_id
    )
    completion_ids, completion_mask = right_pad(
        [codec.encode_answer(e.answer) for e in examples], codec.pad_id
    )
    return Rollout(
        prompt_ids=prompt_ids.to(device),
        prompt_mask=prompt_mask.to(device),
        completion_ids=completion_ids.to(device),
        completion_mask=completion_mask.to(device),
        group=torch.arange(len(examples), device=device),
        examples=list(examples),
        texts=[e.answer for e in examples],
    )


def completion_log_probs(
    model: nn.Module,
    rollout: Rollout,
    with_logits: bool = False,
    with_prompt_features: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Teacher-forced ``log pi(y_t | x, y_<t)`` of the completion tokens (gradient flows to ``model``).

    Returns:
        ``(token_log_probs [B, T] fp32 (0 where masked), logits [B, T, V] or None,
        prompt_features [B, d] or None)``; prompt features are the last layer's hidden state at the
        last prompt token (the input of the value head ``V(x)``), detached.
    """
    input_ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], dim=1)
    attention = torch.cat([rollout.prompt_mask, rollout.completion_mask], dim=1).long()
    position_ids = (attention.cumsum(dim=1) - 1).clamp_min(0)
    p, t = rollout.prompt_ids.shape[1], rollout.completion_ids.shape[1]
    # The LM head runs on the last t + 1 positions only (HF's ``logits_to_keep``): position p-1+t
    # predicts completion token t, so the prompt's logits ([B, P, V], most of the work and memory of
    # the head at a 49k vocabulary) are never formed.
    out = model(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=position_ids,
        output_hidden_states=with_prompt_features,
        use_cache=False,
        logits_to_keep=t + 1,
    )
    logits = out.logits[:, :t]  # columns p-1 .. p+t-2 of the input
    log_pi = F.log_softmax(logits.float(), dim=-1)
    token_lp = log_pi.gather(-1, rollout.completion_ids.unsqueeze(-1)).squeeze(-1)
    token_lp = torch.where(rollout.completion_mask, token_lp, torch.zeros_like(token_lp))
    features = out.hidden_states[-1][:, p - 1].detach().float() if with_prompt_features else None
    return token_lp, (logits if with_logits else None), features
