"""GTrXL unroll forward+backward: our fast path vs a plain reference of the same maths.

The reference (:func:`reference_unroll`) is written here the way one would write the equations down:
the relative position term projects ``R_{i-j}`` for every (query, key) pair (``[T, M+T, d]``), the
attention is an einsum softmax with an explicit boolean window/episode mask, the GRU gate applies each of
its six matrices separately. It reads the parameters of a :class:`networks.gtrxl.TransformerCore`, so the
two paths compute the same function (outputs and gradients equal to 1e-5, ``tests/bench``).

The fast path (``TransformerCore.unroll``) projects the ``M + 1`` distinct distances once and skews
them into place with views (``rel_shift``), fuses the key/value and gate projections, and runs
``scaled_dot_product_attention`` with the mask folded into the additive position bias.

Paper config (GTrXL/V-MPO Atari): 8 layers, d 256, 4 heads x 32, MLP 512, M = 64, T = 63 + 1
(bootstrap), B = 32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench.common import Row, check, interleaved, main, median_ratio
from configs.schema import NetConfig
from networks.gtrxl import GRUGate, TransformerCore, sinusoid_positions

PAPER = dict(d_model=256, num_layers=8, num_heads=4, head_dim=32, mlp_dim=512, memory_length=64)
QUICK = dict(d_model=64, num_layers=2, num_heads=2, head_dim=32, mlp_dim=128, memory_length=16)


# ---------------------------------------------------------------------------------------------- reference


def reference_mask(valid: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """[B, M] valid, [B, T] first -> [B, T, M+T] bool: key j visible to query t (window + same episode).

    Written from the definition: ``0 <= (M + t) - j <= M``; a memory key needs ``valid`` and no episode
    start at or before ``t``; a current key ``s = j - M`` needs no episode start in ``(s, t]``.
    """
    M = valid.shape[1]
    T = first.shape[1]
    starts = torch.cumsum(first.long(), dim=1)  # [B, T] episode starts up to and including t
    t = torch.arange(T)[:, None]
    j = torch.arange(M + T)[None, :]
    in_window = (M + t - j >= 0) & (M + t - j <= M)  # [T, M+T]
    mem_ok = valid[:, None, :] & (starts[:, :, None] == 0)  # [B, T, M]
    s = torch.arange(T)
    cur_ok = (starts[:, :, None] == starts[:, None, :]) & (s[None, :] <= t)  # [B, T, T]: none in (s, t]
    return torch.cat([mem_ok, cur_ok], dim=2) & in_window


def _ln(norm: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _gru_gate(gate: GRUGate, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    w_r, w_z, w_g = gate.w.weight.chunk(3, dim=0)
    u_r, u_z = gate.u_rz.weight.chunk(2, dim=0)
    r = torch.sigmoid(y @ w_r.T + x @ u_r.T)
    z = torch.sigmoid(y @ w_z.T + x @ u_z.T - gate.b_g)
    h_hat = torch.tanh(y @ w_g.T + (r * x) @ gate.u_g.weight.T)
    return (1 - z) * x + z * h_hat


def reference_unroll(
    core: TransformerCore, x: torch.Tensor, first: torch.Tensor, memory: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """GTrXL over a segment, plainly: x [T, B, d], first [T, B], memory [B, L, M, d], valid [B, M]."""
    T, B, d = x.shape
    M = memory.shape[2]
    H, E = core.num_heads, core.head_dim
    mask = reference_mask(valid, first.T)  # [B, T, M+T]
    t_idx = torch.arange(T)[:, None]
    j_idx = torch.arange(M + T)[None, :]
    dist = (M + t_idx - j_idx).clamp(0, M)  # [T, M+T]
    R = sinusoid_positions(M + 1, d, dtype=x.dtype)[dist]  # [T, M+T, d]: R_{i-j} for every pair
    h = x.transpose(0, 1)  # [B, T, d]
    for i, layer in enumerate(core.layers):
        a = layer.attn
        ctx = torch.cat([memory[:, i], h], dim=1)  # [B, M+T, d]
        hn, ctxn = _ln(layer.norm1, h), _ln(layer.norm1, ctx)
        w_k, w_v = a.kv_proj.weight.chunk(2, dim=0)
        q = (hn @ a.q_proj.weight.T).reshape(B, T, H, E)
        k = (ctxn @ w_k.T).reshape(B, M + T, H, E)
        v = (ctxn @ w_v.T).reshape(B, M + T, H, E)
        r = (R @ a.r_proj.weight.T).reshape(T, M + T, H, E)
        content = torch.einsum("bthe,bshe->bhts", q + a.u, k)
        position = torch.einsum("bthe,tshe->bhts", q + a.v, r)
        scores = (content + position) / math.sqrt(E)
        scores = scores.masked_fill(~mask[:, None], float("-inf"))
        attn = torch.einsum("bhts,bshe->bthe", scores.softmax(dim=-1), v).reshape(B, T, H * E)
        y = torch.relu(attn @ a.out_proj.weight.T + a.out_proj.bias)
        x1 = _gru_gate(layer.gate1, h, y)
        lin1, lin2 = layer.mlp[0], layer.mlp[2]
        hidden = torch.relu(_ln(layer.norm2, x1) @ lin1.weight.T + lin1.bias)
        y2 = torch.relu(hidden @ lin2.weight.T + lin2.bias)
        h = _gru_gate(layer.gate2, x1, y2)
    return h.transpose(0, 1)


# ---------------------------------------------------------------------------------------------- inputs


def make_problem(quick: bool, batch: int | None = None, seed: int = 0):
    """A GTrXL core and one learner segment with a full memory and a few episode starts."""
    torch.manual_seed(seed)
    cfg = NetConfig(**(QUICK if quick else PAPER))
    core = TransformerCore(cfg)
    B = batch or (4 if quick else 32)
    T = 16 if quick else 64  # 63 steps + the bootstrap observation, as the learner unrolls
    x = torch.randn(T, B, cfg.d_model)
    first = torch.rand(T, B) < 0.02
    state = core.initial_state(B)
    state["memory"] = torch.randn_like(state["memory"])
    state["valid"] = torch.rand(B, cfg.memory_length) < 0.9
    return core, x, first, state


def fwd_bwd(fn) -> None:
    fn().float().square().mean().backward()


def run(quick: bool) -> list[Row]:
    core, x, first, state = make_problem(quick)
    T, B, _ = x.shape
    fast = lambda: core.unroll(x, first, state)[0]
    ref = lambda: reference_unroll(core, x, first, state["memory"], state["valid"])
    with torch.no_grad():
        err = float((fast() - ref()).abs().max())
    reps = 3 if quick else 5
    times = interleaved({"ref": lambda: fwd_bwd(ref), "fast": lambda: fwd_bwd(fast)}, reps)
    speedup = median_ratio(times["ref"], times["fast"])
    tokens = T * B
    return [
        Row("unroll", "fast / reference fwd+bwd tokens/s (fp32)", speedup, ">= 1.5x", check(speedup, 1.5),
            f"{'quick' if quick else 'paper'} config T={T} B={B}; max |out diff| {err:.1e}; "
            f"{tokens / min(times['fast']):.0f} tokens/s fast"),
    ]  # fmt: skip


if __name__ == "__main__":
    main(run)
