"""LSTM and feed-forward cores through the shared core interface."""

from __future__ import annotations

import torch

from configs import load_config
from networks.agent_net import make_core
from networks.recurrent import FeedForwardCore, LSTMCore


def seq(T: int = 6, B: int = 3, d: int = 4):
    torch.manual_seed(0)
    x = torch.randn(T, B, d)
    first = torch.zeros(T, B, dtype=torch.bool)
    first[0] = True
    first[3, 1] = True
    return x, first


def test_lstm_step_unroll_and_reset() -> None:
    core = LSTMCore(4, 5)
    x, first = seq()
    y, final = core.unroll(x, first, core.initial_state(3))
    state, steps = core.initial_state(3), []
    for t in range(len(x)):
        out, state = core.step(x[t], first[t], state)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps), y)
    assert set(final) == {"h", "c"} and final["h"].shape == (3, 5)
    # a reset makes the state before it irrelevant; without a reset history matters
    y2, _ = core.unroll(x[3:], first[3:], {"h": torch.randn(3, 5), "c": torch.randn(3, 5)})
    assert torch.equal(y2[:, 1], y[3:, 1]) and not torch.allclose(y2[:, 0], y[3:, 0])


def test_ff_ignores_history() -> None:
    core = FeedForwardCore(4, 8)
    x, first = seq()
    x2 = x.clone()
    x2[:3] += 5.0
    first[:] = False
    y, state = core.unroll(x, first, core.initial_state(3))
    y2, _ = core.unroll(x2, first, state)
    assert state == {} and torch.equal(y[3:], y2[3:])
    step_out, _ = core.step(x[4], first[4], {})
    torch.testing.assert_close(step_out, y[4])


def test_lstm_forget_bias_shifts_the_forget_gate_only() -> None:
    """forget_bias is added to the forget-gate slice of the bias (PyTorch's gate order i, f, g, o), as
    Sonnet's LSTM adds it; every other parameter is PyTorch's init for the same seed."""
    torch.manual_seed(0)
    plain = LSTMCore(4, 5, forget_bias=0.0)
    torch.manual_seed(0)
    biased = LSTMCore(4, 5, forget_bias=1.0)
    shift = torch.zeros(20)
    shift[5:10] = 1.0
    torch.testing.assert_close(biased.cell.bias_ih - plain.cell.bias_ih, shift)
    for name in ("weight_ih", "weight_hh", "bias_hh"):
        assert torch.equal(getattr(biased.cell, name), getattr(plain.cell, name))


def test_net_config_reaches_the_lstm_forget_bias() -> None:
    biases = []
    for value in ("0.0", "3.0"):
        torch.manual_seed(0)
        cfg = load_config("quickstart", ["net.core=lstm", f"net.lstm_forget_bias={value}"]).net
        biases.append(make_core(cfg).cell.bias_ih.detach())
    hidden = biases[0].shape[0] // 4
    torch.testing.assert_close(
        biases[1][hidden : 2 * hidden] - biases[0][hidden : 2 * hidden], torch.full((hidden,), 3.0)
    )
