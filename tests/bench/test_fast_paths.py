"""Every fast path equals the bench's plain reference (outputs and gradients), and bf16 stays contained."""

from pathlib import Path

import pytest
import torch

from bench.unroll import make_problem, reference_mask, reference_unroll
from configs.schema import NetConfig
from networks.agent_net import AgentNet
from networks.gtrxl import rel_shift, relative_distance, window_episode_mask
from networks.precision import resolve_bf16


def test_fast_unroll_equals_reference_outputs_and_gradients():
    core, x, first, state = make_problem(quick=True, batch=3)
    x = x.requires_grad_()
    fast = core.unroll(x, first, state)[0]
    grads_fast = torch.autograd.grad(fast.square().sum(), [x, *core.parameters()])
    ref = reference_unroll(core, x, first, state["memory"], state["valid"])
    grads_ref = torch.autograd.grad(ref.square().sum(), [x, *core.parameters()])
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    for g_fast, g_ref in zip(grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(g_fast, g_ref, atol=1e-5, rtol=1e-4)


def test_reference_mask_equals_window_episode_mask():
    torch.manual_seed(1)
    valid, first = torch.rand(4, 6) < 0.7, torch.rand(4, 9) < 0.3
    assert torch.equal(reference_mask(valid, first), window_episode_mask(valid, first))


@pytest.mark.parametrize(("T", "M"), [(1, 0), (1, 5), (5, 7), (9, 3)])
def test_rel_shift_equals_gather_inside_the_window(T, M):
    scores = torch.randn(2, 3, T, M + 1, requires_grad=True)
    dist = relative_distance(T, M)
    inside = (dist >= 0) & (dist <= M)
    ref = scores.gather(-1, dist.clamp(0, M).expand(2, 3, T, M + T))[..., inside]
    out = rel_shift(scores, M + T)[..., inside]
    assert torch.equal(out, ref)
    g = torch.randn_like(out)
    assert torch.equal(torch.autograd.grad(out, scores, g)[0], torch.autograd.grad(ref, scores, g)[0])


def test_cached_step_equals_recomputed_window():
    core, _, _, state = make_problem(quick=True, batch=3)
    state = core.refresh_cache(state)
    x, first = torch.randn(3, core.out_dim), torch.tensor([False, True, False])
    with torch.no_grad():
        cached = core.step(x, first, state)[0]
        recomputed = core.step(x, first, core.refresh_cache(state))[0]
    torch.testing.assert_close(cached, recomputed)


def test_resolve_bf16_choices():
    assert resolve_bf16("off", "cpu") is False
    assert resolve_bf16("on", "cpu") is True
    assert isinstance(resolve_bf16("auto", "cpu"), bool)
    with pytest.raises(ValueError, match=r"train\.bf16"):
        resolve_bf16("maybe", "cpu")


def test_bf16_network_returns_fp32_heads_close_to_fp32():
    torch.manual_seed(0)
    cfg = NetConfig(d_model=32, num_layers=2, num_heads=2, head_dim=16, mlp_dim=64, memory_length=4,
                    torso_out=32)  # fmt: skip
    net = AgentNet(cfg, (4,), 3)
    T, B = 5, 2
    args = (torch.randn(T, B, 4), torch.zeros(T, B, dtype=torch.long), torch.zeros(T, B),
            torch.zeros(T, B, dtype=torch.bool), net.initial_state(B))  # fmt: skip
    logits32, values32, _ = net.unroll(*args)
    net.bf16 = True
    logits16, values16, state = net.unroll(*args)
    assert logits16.dtype == values16.dtype == torch.float32
    assert state["memory"].dtype == torch.float32 and net.popart.mu.dtype == torch.float32
    torch.testing.assert_close(logits16, logits32, atol=0.05, rtol=0.05)
    torch.testing.assert_close(values16, values32, atol=0.05, rtol=0.05)


def test_multinomial_sampling_matches_categorical():
    logits = torch.randn(64, 6)
    torch.manual_seed(3)
    ours = torch.multinomial(logits.float().softmax(-1), 1).squeeze(-1)
    torch.manual_seed(3)
    theirs = torch.distributions.Categorical(logits=logits).sample()
    assert torch.equal(ours, theirs)


@pytest.mark.slow
def test_bf16_learns_cue_recall_as_well_as_fp32(tmp_path: Path):
    """The quick-start config with bf16 on reaches the CI threshold, like fp32 (about 2 x 90 s)."""
    from agent.trainer import Trainer
    from configs import load_config

    def train_quickstart(run_dir: Path, *overrides: str) -> float:
        cfg = load_config("quickstart", ["train.progress=false", f"train.run_dir={run_dir}", *overrides])
        return Trainer(cfg, run_dir / "run").train()["recent_return"]

    MEMORY_THRESHOLD = 0.9  # as tests/agent/test_learning.py
    bf16 = train_quickstart(tmp_path / "bf16", "net.core=gtrxl", "train.bf16=on")
    fp32 = train_quickstart(tmp_path / "fp32", "net.core=gtrxl", "train.bf16=off")
    assert fp32 >= MEMORY_THRESHOLD, f"fp32 reached only {fp32:.3f}"
    assert bf16 >= MEMORY_THRESHOLD, f"bf16 reached only {bf16:.3f} (fp32: {fp32:.3f})"
