"""LLM loop on the tiny model (``configs/llm_tiny_vmpo.yaml``): KV cache in generation, M-step vs sampling.

- samples/s of HF ``generate`` with ``use_cache=True`` over ``use_cache=False`` (same prompts, same
  sampling settings, ``min_new_tokens = max_new_tokens`` so that both produce the same number of tokens),
  at the config's ``max_new_tokens`` and at a longer completion where the cache matters more;
- tokens/s of ``SequenceLearner.update`` (the whole V-MPO update: old log-probs, E-step, M-step
  gradient steps) over tokens/s of ``sample_completions`` (cached generation), on the same batch and
  the same completion tokens: > 1 means the update is faster than sampling.
"""

from __future__ import annotations

import torch

from bench.common import Row, interleaved, main, median_ratio
from configs import load_config
from configs.llm_schema import LLMConfig
from llm.learner import SequenceLearner
from llm.models import load_policy
from llm.rollout import left_pad, sample_completions
from llm.trainer import make_task_from_config


def run(quick: bool) -> list[Row]:
    reps = 3 if quick else 9
    cfg = load_config("llm_tiny_vmpo", schema=LLMConfig)
    torch.manual_seed(cfg.train.seed)
    task = make_task_from_config(cfg.task)
    policy, codec = load_policy(cfg.model, task.alphabet())
    learner = SequenceLearner(policy, cfg.algo, cfg.train.sft_lr)
    s = cfg.sample
    examples = task.sample(s.prompts_per_batch)
    n = s.prompts_per_batch * s.completions_per_prompt
    rows = []

    from transformers import GenerationConfig

    ids, mask = left_pad([codec.encode_prompt(e.prompt, e.question) for e in examples], codec.pad_id)
    ids = ids.repeat_interleave(s.completions_per_prompt, 0)
    mask = mask.repeat_interleave(s.completions_per_prompt, 0).long()
    lengths = (s.max_new_tokens,) if quick else (s.max_new_tokens, 32)
    for new in lengths:

        def gen(use_cache: bool, new: int = new):
            config = GenerationConfig(do_sample=True, temperature=s.temperature, top_k=None, top_p=1.0,
                                      max_new_tokens=new, min_new_tokens=new, use_cache=use_cache,
                                      pad_token_id=codec.pad_id, eos_token_id=codec.eos_id)  # fmt: skip
            with torch.no_grad():
                return policy.generate(input_ids=ids, attention_mask=mask, generation_config=config)

        policy.eval()
        times = interleaved({"off": lambda: gen(False), "on": lambda: gen(True)}, reps)
        ratio = median_ratio(times["off"], times["on"])  # (samples/s cache on) / (samples/s cache off)
        rows.append(Row("llm", f"generate samples/s KV cache on / off, {new} new tokens", ratio, "", None,
                        f"{n} samples, prompt {ids.shape[1]} tokens, tiny GPT-2 d=64 x2"))  # fmt: skip

    state = {}

    def sample():
        state["rollout"] = sample_completions(policy, codec, examples, s.completions_per_prompt,
                                              s.max_new_tokens, s.temperature, s.top_k)  # fmt: skip

    def update():
        r = state["rollout"]
        rewards = torch.tensor([task.reward(e, y) for e, y in zip(r.examples, r.texts, strict=True)])
        learner.update(r, rewards)

    times = interleaved({"sample": sample, "update": update}, reps)
    ratio = median_ratio(times["sample"], times["update"])  # same tokens: (update tok/s) / (sample tok/s)
    tokens = int(state["rollout"].completion_mask.sum())
    note = f"{n} samples, ~{tokens} completion tokens, update_epochs={cfg.algo.update_epochs}"
    rows.append(Row("llm", "V-MPO update tokens/s / generation tokens/s", ratio, "", None, note))
    return rows


if __name__ == "__main__":
    main(run)
