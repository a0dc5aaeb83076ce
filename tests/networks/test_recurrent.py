"""LSTM and feed-forward cores through the shared core interface."""

from __future__ import annotations

import torch

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
