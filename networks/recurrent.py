"""Baseline cores with the transformer core's interface: an LSTM and a memory-less feed-forward core.

- ``LSTMCore``: the V-MPO / IMPALA LSTM baseline (Song et al. 2019; Espeholt et al. 2018), state
  ``{"h", "c"}`` [B, H] reset to zero where ``first``. The unroll is a loop over time because a reset
  can happen at any step (as in IMPALA); it is differentiable end to end.
- ``FeedForwardCore``: ReLU(Linear) per step and no memory: the no-memory control. State is ``{}``.

Core interface: ``initial_state(batch_size, device)``, ``step(x [B, d], first [B], state)``,
``unroll(x [T, B, d], first [T, B], state)``, ``refresh_cache(state)``, ``out_dim``.
"""

from __future__ import annotations

import torch
from torch import nn

State = dict[str, torch.Tensor]


class LSTMCore(nn.Module):
    """LSTM core; the hidden state is zeroed before a step that starts a new episode.

    ``forget_bias`` is added to the forget gate's bias at init (Gers et al. 2000; Jozefowicz et al. 2015,
    section 3), as Sonnet's and TensorFlow's LSTM add it in every step: the cell state starts by keeping
    ``sigmoid(forget_bias)`` of itself per step instead of PyTorch's ~0.5.
    """

    def __init__(self, d_in: int, hidden: int, *, forget_bias: float = 1.0):
        super().__init__()
        self.cell = nn.LSTMCell(d_in, hidden)
        with torch.no_grad():  # PyTorch's gate order: input, forget, cell, output
            self.cell.bias_ih[hidden : 2 * hidden] += forget_bias
        self.out_dim = hidden

    def initial_state(self, batch_size: int, device=None) -> State:
        p = self.cell.weight_ih
        device = p.device if device is None else device
        zeros = torch.zeros(batch_size, self.out_dim, device=device, dtype=p.dtype)
        return {"h": zeros, "c": zeros.clone()}

    def step(self, x: torch.Tensor, first: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x [B, d], first [B] bool -> (h [B, H], {"h", "c"})."""
        keep = (~first).to(x.dtype)[:, None]
        h, c = self.cell(x, (state["h"] * keep, state["c"] * keep))
        return h, {"h": h, "c": c}

    def unroll(self, x: torch.Tensor, first: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x [T, B, d], first [T, B] -> (h [T, B, H], final state)."""
        outs = []
        for t in range(x.shape[0]):
            out, state = self.step(x[t], first[t], state)
            outs.append(out)
        return torch.stack(outs), state

    def refresh_cache(self, state: State) -> State:
        return state


class FeedForwardCore(nn.Module):
    """y = ReLU(W x + b) at every step; ignores history (no-memory control)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.layer = nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU())
        self.out_dim = d_out

    def initial_state(self, batch_size: int, device=None) -> State:
        return {}

    def step(self, x: torch.Tensor, first: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self.layer(x), {}

    def unroll(self, x: torch.Tensor, first: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self.layer(x), {}

    def refresh_cache(self, state: State) -> State:
        return state
