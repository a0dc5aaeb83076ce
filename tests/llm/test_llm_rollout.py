"""Sampling with HF generate, masks, and teacher-forced log-probs (tiny random model, left padding)."""

import pytest
import torch

from configs.llm_schema import LLMAlgoConfig
from llm.learner import SequenceLearner
from llm.models import CharCodec, build_tiny, set_dropout
from llm.rollout import completion_log_probs, completion_mask_from_eos, sample_completions, sft_batch
from llm.tasks import Example, make_task


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on shared cores is fastest single-threaded
    yield
    torch.set_num_threads(threads)


def test_completion_mask_stops_after_first_eos():
    ids = torch.tensor([[5, 1, 0, 0], [5, 6, 7, 8], [1, 1, 1, 1]])
    mask = completion_mask_from_eos(ids, eos_id=1)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_tasks_rewards_and_split():
    task = make_task("addition", max_operand=9, reward="exact_format", seed=0)
    assert len(task.train) + len(task.heldout) == 100
    assert not {e.prompt for e in task.train} & {e.prompt for e in task.heldout}
    ex = Example("3+4=", "7", "What is 3 + 4?")
    assert task.reward(ex, "7") == pytest.approx(1.1) and task.reward(ex, "8") == pytest.approx(0.1)
    assert make_task("reversal", reward="first_number").reward(ex, "it is 7, not 8") == 1.0
    last = make_task("addition", reward="last_number")
    assert last.reward(ex, "3 + 4 = 7") == 1.0 and last.reward(ex, "3 + 4 = 8") == 0.0
    assert last.reward(ex, "To add 3 and 4") == 0.0 and last.reward(ex, "seven") == 0.0
    with pytest.raises(ValueError, match=r"task\.name='nope' is not valid"):
        make_task("nope")


def test_sampled_log_probs_match_generate_scores():
    torch.manual_seed(0)
    codec = CharCodec("0123456789+=")
    model = build_tiny(codec.vocab_size, 32, 1, 2, 32).eval()
    examples = [Example("1+2=", "3", ""), Example("12+13=", "25", "")]  # different lengths: left padding
    r = sample_completions(model, codec, examples, completions_per_prompt=3, max_new_tokens=4)
    assert r.prompt_ids.shape[0] == r.completion_ids.shape[0] == 6 and r.group.tolist() == [0, 0, 0, 1, 1, 1]
    assert r.prompt_mask[:3, 0].logical_not().all()  # the shorter prompt is padded on the left
    token_lp, _, _ = completion_log_probs(model, r)
    # Reference: each sequence alone, without padding.
    for i in range(6):
        p = r.prompt_ids[i][r.prompt_mask[i]]
        c = r.completion_ids[i][r.completion_mask[i]]
        logits = model(input_ids=torch.cat([p, c])[None]).logits[0, len(p) - 1 : -1]
        ref = torch.log_softmax(logits, -1).gather(-1, c[:, None]).squeeze(-1)
        assert torch.allclose(token_lp[i][r.completion_mask[i]], ref, atol=1e-5)


def test_bf16_learner_forward_gives_fp32_log_probs_near_fp32():
    """train.bf16: the body runs in bf16 autocast, the losses get fp32 log-probs and logits."""
    torch.manual_seed(0)
    codec = CharCodec("0123456789+=")
    model = build_tiny(codec.vocab_size, 32, 1, 2, 32).eval()
    r = sample_completions(model, codec, [Example("1+2=", "3", ""), Example("12+13=", "25", "")], 3, 4)
    token_lp, _, _ = completion_log_probs(model, r)
    learner = SequenceLearner(model, LLMAlgoConfig(), sft_lr=1e-3, bf16=True)
    lp16, logits16, _ = learner._log_probs(model, r, with_logits=True)
    assert lp16.dtype == logits16.dtype == torch.float32 and logits16.shape[:2] == token_lp.shape
    assert not torch.equal(lp16, token_lp)  # bf16 matmuls were used
    torch.testing.assert_close(lp16, token_lp, atol=0.05, rtol=0.0)


def test_sft_batch_and_dropout_flag():
    codec = CharCodec("ab=")
    b = sft_batch(codec, [Example("ab=", "ba", ""), Example("a=", "a", "")], torch.device("cpu"))
    assert b.completion_ids.tolist() == [[codec._id["b"], codec._id["a"], 1], [codec._id["a"], 1, 0]]
    model = build_tiny(codec.vocab_size, 16, 1, 2, 16)
    assert set_dropout(model, 0.3) > 0
    assert all(m.p == 0.3 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    model.train()
    a1, _, _ = completion_log_probs(model, b)
    a2, _, _ = completion_log_probs(model, b)
    assert not torch.allclose(a1, a2)  # dropout active in train mode
    with pytest.raises(ValueError, match=r"model\.dropout"):
        set_dropout(model, 1.0)
