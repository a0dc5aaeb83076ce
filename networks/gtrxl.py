"""Transformer cores: GTrXL, TrXL-I and TrXL with a sliding-window memory and a key/value cache.

References
- Dai et al. 2019, Transformer-XL, section 3.3: relative positional encodings,
  ``score(i, j) = (q_i + u) . k_j + (q_i + v) . W_r R_{i-j}``.
- Parisotto et al. 2019, Stabilizing Transformers for Reinforcement Learning (GTrXL), section 3 "Gated
  Transformer Architectures": identity map reordering (TrXL-I, section 3.1) and gating layers (section 3.2).

Attention semantics (the contract the tests check)
- Query at absolute time ``i`` attends key ``j`` iff ``0 <= i - j <= M`` (sliding window, ``M`` =
  ``memory_length``) and ``j`` is in the same episode as ``i``. A query always sees itself.
- That window is per layer: the core's receptive field is ``L * M`` steps (Dai et al. 2019, section 3.2),
  since layer ``l``'s memory holds layer ``l - 1``'s outputs; memory resets at episode starts cut it.
- The memory of a layer is its last ``M`` *inputs* (detached), kept in a ring buffer: ``pos`` is the slot
  that holds the oldest step, which the next step overwrites, so slot ``m`` holds the step at distance
  ``M - ((m - pos) mod M)`` from the next query (``pos = 0``: oldest first). ``step`` writes one slot per
  layer in place (O(1) copies) and attends over the ring where it lies, the current token joining
  through its score (no O(M) concatenation per layer); ``unroll`` reads the ring in chronological order
  and writes its final state back at ``pos + T`` (one O(M) gather per segment), so both leave the same
  layout. Slots not yet filled, or from an earlier episode, are marked invisible by ``valid``.
  Worked examples, checked by ``tests/networks/test_ring_layout.py``: the ring over eight steps with an
  episode start (:meth:`TransformerCore.step`), the same steps unrolled (:func:`window_episode_mask`), ring
  order vs oldest first (:func:`_ring_index`) and the relative shift (:func:`rel_shift`).
- ``step`` (one token, cached keys/values), ``unroll`` (``T`` tokens from a stored memory) and a
  full-history recompute with the window mask are the same function.

Core state (batch-first so that ``{k: v[idx]}`` selects environments and states concatenate on dim 0)::

    memory [B, L, M, d]      layer inputs, detached (ring slots)
    valid  [B, M] bool       slot is filled and in the episode of the last processed step
    k, v   [B, L, M, H, Dh]  keys/values of the memory, projected with the parameters at caching time
    pos    [B] long          ring slot of the oldest step (absent = 0)

``step`` returns a :class:`StepState` (a ``dict``) whose ``memory``/``k``/``v`` the *next* ``step`` updates
in place, one slot per layer: a state returned by ``step`` is consumed by stepping from it (reusing it
afterwards reads the overwritten slot). Any other state (``initial_state``, ``unroll``'s, a plain dict
such as ``{k: v.clone()}`` or ``{k: v[idx]}``) is copied once by the first ``step`` and never modified.
``refresh_cache`` keeps the kind of state it is given.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from configs.schema import NetConfig

State = dict[str, torch.Tensor]


class StepState(dict):
    """A state returned by :meth:`TransformerCore.step`: the next ``step`` writes its memory in place."""


TRANSFORMER_CORES = ("gtrxl", "trxl", "trxl_i")


# ----------------------------------------------------------------------------------------------------------
# Masks and positions


def window_episode_mask(valid: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """Visibility of keys ``[memory; current]`` for each current query.

    Args:
        valid: [B, M] bool, memory slot visible to the query that follows it (absent a reset).
        first: [B, T] bool, step ``t`` is the first of a new episode.

    Returns:
        [B, T, M + T] bool, ``True`` where query ``t`` (absolute time ``M + t``) may attend key ``j``:
        ``0 <= (M + t) - j <= M`` and key ``j`` is in the query's episode.

    Worked example: :meth:`TransformerCore.unroll` of steps 3..7 (``T = 5``) from the state before step 3 of
    the example in :meth:`TransformerCore.step` (``M = 4``, ``pos = 3``, an episode starts at step 6). Read
    oldest first, slots ``3 0 1 2`` hold steps ``. 0 1 2`` (``.``: never written) with ``valid = 0 1 1 1``,
    so ``first = 0 0 0 1 0`` gives (1 = visible; memory keys, then the current steps)::

        key j           0 1 2 3 | 4 5 6 7 8
        step held       . 0 1 2 | 3 4 5 6 7
        query step 3    0 1 1 1 | 1 0 0 0 0
        query step 4    0 1 1 1 | 1 1 0 0 0
        query step 5    0 0 1 1 | 1 1 1 0 0
        query step 6    0 0 0 0 | 0 0 0 1 0
        query step 7    0 0 0 0 | 0 0 0 1 1

    Step 5 no longer sees step 0 (distance 5 > M); step 6 starts an episode and sees only itself. Each
    row is the ``visible`` column of the same step in :meth:`TransformerCore.step`'s table, read oldest
    first. The last row's last ``M`` entries (steps 4..7: ``0 0 1 1``) become the final ``valid``, written
    back in ring order at ``pos + T = 0``: the "after 7" row there.
    """
    M = valid.shape[1]
    T = first.shape[1]
    episode = torch.cumsum(first.long(), dim=1)  # [B, T], 0 = the episode the memory belongs to
    mem_episode = torch.where(valid, 0, -1)  # [B, M], -1 never matches a query
    key_episode = torch.cat([mem_episode, episode], dim=1)  # [B, M + T]
    dist = relative_distance(T, M, valid.device)  # [T, M + T]
    in_window = (dist >= 0) & (dist <= M)
    same_episode = key_episode[:, None, :] == episode[:, :, None]  # [B, T, M + T]
    return same_episode & in_window


def relative_distance(T: int, M: int, device: torch.device | None = None) -> torch.Tensor:
    """[T, M + T] long, ``i - j`` between query ``t`` (absolute ``M + t``) and key ``j``."""
    return (M + torch.arange(T, device=device))[:, None] - torch.arange(M + T, device=device)[None, :]


def rel_shift(scores: torch.Tensor, num_keys: int) -> torch.Tensor:
    """[..., T, M+1] scores by distance ``r`` -> [..., T, M+T] by key ``j``, with distance ``M + t - j``.

    Transformer-XL's skew trick (Dai et al. 2019, appendix B) with views only (pad + reshape + slice; its
    backward is a pad too, no scatter): reversing the distances puts distance ``M + t - j`` of row ``t`` at
    column ``j - t``, and flattening rows of width ``M+T+1`` read back at width ``M+T`` shifts row ``t``
    right by ``t``. Entries outside the window (``j < t`` or ``j > M + t``) come out as 0, from the padding;
    they are masked anyway.

    Worked example with ``T = 3`` queries and ``M = 2`` (3 distances, 5 keys); the score of row ``t`` at
    distance ``r`` is ``10 (t + 1) + r``, so its last digit is its distance:

    >>> scores = 10 * torch.arange(1, 4)[:, None] + torch.arange(3)  # [T, M+1], column = distance r
    >>> scores
    tensor([[10, 11, 12],
            [20, 21, 22],
            [30, 31, 32]])
    >>> F.pad(scores.flip(-1), (0, 3))  # [T, M+T+1], column c = distance M - c
    tensor([[12, 11, 10,  0,  0,  0],
            [22, 21, 20,  0,  0,  0],
            [32, 31, 30,  0,  0,  0]])
    >>> rel_shift(scores, num_keys=5)  # flattened, read back at width M+T: row t moves right by t
    tensor([[12, 11, 10,  0,  0],
            [ 0, 22, 21, 20,  0],
            [ 0,  0, 32, 31, 30]])
    >>> relative_distance(3, 2)  # what each entry must hold: its last digit above, where 0 <= . <= M
    tensor([[ 2,  1,  0, -1, -2],
            [ 3,  2,  1,  0, -1],
            [ 4,  3,  2,  1,  0]])
    """
    *lead, T, R = scores.shape  # R = M + 1
    width = num_keys + 1
    padded = F.pad(scores.flip(-1), (0, width - R))  # [..., T, M+T+1], column c = distance M - c
    flat = padded.reshape(*lead, T * width)[..., : T * num_keys]
    return flat.reshape(*lead, T, num_keys)


def sinusoid_positions(num: int, dim: int, device=None, dtype=None) -> torch.Tensor:
    """[num, dim] sinusoidal encodings ``R_d`` of distances ``d = 0..num-1`` (Vaswani et al. 2017, 3.5).

    Layout ``[sin(d w_0), .., sin(d w_{dim/2-1}), cos(d w_0), ..]`` with ``w_k = 10000^(-2k/dim)``
    (Transformer-XL's ``PositionalEmbedding``).
    """
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim))
    angles = torch.arange(num, device=device, dtype=torch.float64)[:, None] * inv_freq[None, :]
    enc = torch.cat([angles.sin(), angles.cos()], dim=-1)[:, :dim]
    return enc.to(dtype or torch.get_default_dtype())


# ----------------------------------------------------------------------------------------------------------
# Attention


class RelativeMultiHeadAttention(nn.Module):
    """Multi-head attention with Transformer-XL relative positions (Dai et al. 2019, section 3.3).

    ``score(i, j) = [(q_i + u) . k_j + (q_i + v) . W_r R_{i-j}] / sqrt(Dh)``, softmax over visible keys.
    The positional term and the mask enter ``scaled_dot_product_attention`` as an additive float
    ``attn_mask``; ``use_sdpa=False`` computes the same with an explicit einsum softmax (the reference
    the tests compare against, gradients included). Acting (:meth:`step`: one token, ring-ordered cache)
    has its own path that reads the cache in place (tested equal to :meth:`forward`).
    """

    def __init__(self, d_model: int, num_heads: int, head_dim: int, use_sdpa: bool = True):
        super().__init__()
        self.num_heads, self.head_dim, self.use_sdpa = num_heads, head_dim, use_sdpa
        inner = num_heads * head_dim
        self.q_proj = nn.Linear(d_model, inner, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.r_proj = nn.Linear(d_model, inner, bias=False)  # W_r
        self.u = nn.Parameter(torch.randn(num_heads, head_dim) * 0.02)  # content bias
        self.v = nn.Parameter(torch.randn(num_heads, head_dim) * 0.02)  # position bias
        self.out_proj = nn.Linear(inner, d_model)
        self._pos_cache: tuple[tuple, torch.Tensor] | None = None  # acting: W_r R for the last M seen

    def position_table(self, M: int, d: int, q: torch.Tensor) -> torch.Tensor:
        """``W_r R_r`` for distances ``r = 0..M`` as [H, M+1, Dh] in ``q``'s dtype.

        Without autograd (acting) it is cached, keyed on the weight's storage and version counter (an
        optimizer step or ``load_state_dict`` bumps it) and on the autocast state, so each ``step`` does
        not redo the O(M d^2) projection.
        """
        w = self.r_proj.weight
        key = None
        if not torch.is_grad_enabled():
            dev = q.device.type
            ac = torch.is_autocast_enabled(dev) and torch.get_autocast_dtype(dev)
            key = (M, d, q.device, q.dtype, ac, w.data_ptr(), w._version)
            if self._pos_cache is not None and self._pos_cache[0] == key:
                return self._pos_cache[1]
        R = sinusoid_positions(M + 1, d, device=q.device, dtype=w.dtype)
        pos = rearrange(self.r_proj(R), "r (h e) -> h r e", h=self.num_heads).to(q.dtype)
        if key is not None:
            self._pos_cache = (key, pos)
        return pos

    def project_kv(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, S, d] (already layer-normed where the variant does so) -> keys, values [B, S, H, Dh]."""
        k, v = rearrange(self.kv_proj(h), "b s (two h e) -> two b s h e", two=2, h=self.num_heads)
        return k, v

    def forward(
        self,
        h: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Attend from the current tokens to ``[memory; current]`` (memory in chronological order).

        Args:
            h: [B, T, d] current (normed) layer inputs, used for the queries.
            k, v: [B, M + T, H, Dh] keys/values of memory then current tokens.
            mask: [B, T, M + T] bool visibility (see :func:`window_episode_mask`).
        Returns:
            [B, T, d]
        """
        T = h.shape[1]
        M = k.shape[1] - T
        q = rearrange(self.q_proj(h), "b t (h e) -> b h t e", h=self.num_heads)
        pos = self.position_table(M, h.shape[-1], q)  # W_r R [H, M+1, Dh]
        pos_scores = torch.einsum("bhte,hre->bhtr", q + self.v[:, None].to(q.dtype), pos)  # [B, H, T, M+1]
        pos_scores = rel_shift(pos_scores, M + T)  # [B, H, T, M+T]: entry (t, j) = distance M + t - j
        scale = 1.0 / math.sqrt(self.head_dim)
        bias = (pos_scores * scale).masked_fill(~mask[:, None], float("-inf"))
        q_content = q + self.u[:, None].to(q.dtype)
        k, v = rearrange(k, "b s h e -> b h s e"), rearrange(v, "b s h e -> b h s e")
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q_content, k.to(q.dtype), v.to(q.dtype), attn_mask=bias)
        else:
            scores = torch.einsum("bhte,bhse->bhts", q_content, k.to(q.dtype)) * scale + bias
            out = torch.einsum("bhts,bhse->bhte", scores.softmax(dim=-1), v.to(q.dtype))
        return self.out_proj(rearrange(out, "b h t e -> b t (h e)"))

    def step(
        self,
        h: torch.Tensor,
        mem_k: torch.Tensor,
        mem_v: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor,
        key_index: torch.Tensor,
    ) -> torch.Tensor:
        """One query attending to the ring memory and to itself, without concatenating them (acting).

        The same function as :meth:`forward` with ``T = 1`` over ``[memory; current]``, but the memory is
        read where it lies (a strided slice of the cache) and the current key joins through its score only:
        the scores ``[B, H, M + 1]`` are concatenated, never the keys/values ``[B, M, H, Dh]``. All heads
        read the ring in one ``baddbmm`` / ``bmm`` each, against a block-diagonal ``[B, H, H * Dh]`` query
        matrix (the off-diagonal blocks are zeros; the diagonal blocks of the value product are kept), so
        the only O(M) work per layer is one pass over the keys, one over the values, and O(M) element-wise
        ops on the ``[B, H, M + 1]`` scores. The attention runs in the cache's dtype with autocast off
        (under bf16 autocast the fp32 ring is read as it is, not cast to bf16 each step).

        Args:
            h: [B, 1, d] current (normed) layer input, used for the query.
            mem_k, mem_v: [B, M, H, Dh] cached keys/values in ring order.
            k, v: [B, 1, H, Dh] key/value of the current token.
            bias: [B, 1, M + 1] additive mask in the cache's dtype: 0 (visible) or -inf; last = current.
            key_index: [B, H, M + 1] long distance of each key (ring slots, then the current token: 0).
        Returns:
            [B, 1, d]
        """
        B, M, H, E = mem_k.shape
        dtype = mem_k.dtype
        q = self.q_proj(h)  # [B, 1, H * Dh]
        dev = q.device.type
        with torch.autocast(dev, enabled=False) if torch.is_autocast_enabled(dev) else nullcontext():
            q = q.reshape(B, H, E).to(dtype)
            scale = 1.0 / math.sqrt(E)
            pos = self.position_table(M, h.shape[-1], q)  # W_r R [H, M+1, Dh]
            pos_scores = torch.einsum("bhe,hre->bhr", (q + self.v.to(dtype)) * scale, pos)  # by distance
            scores = pos_scores.gather(-1, key_index).add_(bias)  # [B, H, M+1] by key: ring, current
            q_content = (q + self.u.to(dtype)) * scale  # [B, H, Dh]
            q_blocks = q_content.new_zeros(B, H, H, E)  # row h: q_h in column block h
            q_blocks.diagonal(dim1=1, dim2=2).copy_(q_content.transpose(1, 2))
            ring_k, ring_v = mem_k.reshape(B, M, H * E), mem_v.reshape(B, M, H * E)  # views of the slice
            mem_scores = torch.baddbmm(scores[..., :M], q_blocks.view(B, H, H * E), ring_k.transpose(1, 2))
            cur_scores = scores[..., M:] + (q_content * k[:, 0].to(dtype)).sum(-1, keepdim=True)
            p = torch.cat([mem_scores, cur_scores], dim=-1).softmax(dim=-1)  # [B, H, M+1]
            out = torch.bmm(p[..., :M], ring_v).view(B, H, H, E).diagonal(dim1=1, dim2=2)  # [B, Dh, H]
            out = out.transpose(1, 2) + p[..., M:] * v[:, 0].to(dtype)  # [B, H, Dh]
        return self.out_proj(out.reshape(B, 1, H * E))


# ----------------------------------------------------------------------------------------------------------
# Gates g(x, y): x = residual stream, y = sub-layer output


class ResidualGate(nn.Module):
    """g(x, y) = x + y (TrXL, TrXL-I)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


class GRUGate(nn.Module):
    """GRU-type gate (GTrXL section 3.2)::

        r = σ(W_r y + U_r x),  z = σ(W_z y + U_z x - b_g),  ĥ = tanh(W_g y + U_g (r ⊙ x)),
        g(x, y) = (1 - z) ⊙ x + z ⊙ ĥ

    ``b_g`` is a learned per-unit bias initialised to ``gate_bias`` (2: the gate starts near identity).
    """

    def __init__(self, d_model: int, gate_bias: float):
        super().__init__()
        self.w = nn.Linear(d_model, 3 * d_model, bias=False)  # [W_r; W_z; W_g] y
        self.u_rz = nn.Linear(d_model, 2 * d_model, bias=False)  # [U_r; U_z] x
        self.u_g = nn.Linear(d_model, d_model, bias=False)  # U_g (r ⊙ x)
        self.b_g = nn.Parameter(torch.full((d_model,), float(gate_bias)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        wr, wz, wg = self.w(y).chunk(3, dim=-1)
        ur, uz = self.u_rz(x).chunk(2, dim=-1)
        r = torch.sigmoid(wr + ur)
        z = torch.sigmoid(wz + uz - self.b_g)
        h_hat = torch.tanh(wg + self.u_g(r * x))
        return (1 - z) * x + z * h_hat


class SigmoidOutputGate(nn.Module):
    """Output gate (GTrXL section 3.2): g(x, y) = x + σ(W_g x - b_g) ⊙ y."""

    def __init__(self, d_model: int, gate_bias: float):
        super().__init__()
        self.w_g = nn.Linear(d_model, d_model, bias=False)
        self.b_g = nn.Parameter(torch.full((d_model,), float(gate_bias)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + torch.sigmoid(self.w_g(x) - self.b_g) * y


def make_gate(cfg: NetConfig) -> nn.Module:
    if cfg.core != "gtrxl":
        return ResidualGate()
    return (
        GRUGate(cfg.d_model, cfg.gate_bias)
        if cfg.gate == "gru"
        else SigmoidOutputGate(cfg.d_model, cfg.gate_bias)
    )


# ----------------------------------------------------------------------------------------------------------
# One layer


class TransformerXLLayer(nn.Module):
    """One transformer layer; the three variants share this code and these parameter names.

    Pre-LN (``gtrxl``, ``trxl_i``; GTrXL eqs. in section 3.1-3.2)::

        y  = act(attn(LN1(x), LN1([memory; x])))      x1 = g1(x, y)
        y2 = act(mlp(LN2(x1)))                         x2 = g2(x1, y2)

    Post-LN (``trxl``, Dai et al. 2019)::

        x1 = LN1(g1(x, act(attn(x, [memory; x]))))     x2 = LN2(g2(x1, act(mlp(x1))))

    with ``act`` = ReLU for pre-LN (GTrXL 3.1: two linear maps would otherwise meet on the identity path)
    and identity for post-LN, ``g`` = residual add except for ``gtrxl``. With ``norm1``, ``norm2`` and
    ``act`` replaced by ``nn.Identity`` the pre-LN and post-LN layers are the same function (tested).
    """

    def __init__(self, cfg: NetConfig, use_sdpa: bool = True):
        super().__init__()
        self.pre_norm = cfg.core in ("gtrxl", "trxl_i")
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.attn = RelativeMultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.head_dim, use_sdpa)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.mlp_dim), nn.ReLU(), nn.Linear(cfg.mlp_dim, cfg.d_model)
        )
        self.act = nn.ReLU() if self.pre_norm else nn.Identity()
        self.gate1 = make_gate(cfg)
        self.gate2 = make_gate(cfg)

    def attn_input(self, x: torch.Tensor) -> torch.Tensor:
        """What queries/keys/values are computed from: LN1(x) for pre-LN, x for post-LN."""
        return self.norm1(x) if self.pre_norm else x

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer inputs [B, S, d] -> keys, values [B, S, H, Dh] (used for the memory)."""
        return self.attn.project_kv(self.attn_input(x))

    def forward(
        self,
        x: torch.Tensor,
        mem_k: torch.Tensor,
        mem_v: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T, d], mem_k/mem_v [B, M, H, Dh] (chronological), mask [B, T, M+T]
        -> (x2 [B, T, d], k, v [B, T, H, Dh])."""
        h = self.attn_input(x)
        k, v = self.attn.project_kv(h)
        y = self.act(self.attn(h, torch.cat([mem_k, k], dim=1), torch.cat([mem_v, v], dim=1), mask))
        return self._gates_and_mlp(x, y), k, v

    def step(
        self,
        x: torch.Tensor,
        mem_k: torch.Tensor,
        mem_v: torch.Tensor,
        bias: torch.Tensor,
        key_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``forward`` for one token against the ring memory (no concatenation of the memory):
        x [B, 1, d], mem_k/mem_v [B, M, H, Dh] (ring order) -> (x2 [B, 1, d], k, v [B, 1, H, Dh]).
        ``bias``, ``key_index``: see :meth:`RelativeMultiHeadAttention.step`."""
        h = self.attn_input(x)
        k, v = self.attn.project_kv(h)
        y = self.act(self.attn.step(h, mem_k, mem_v, k, v, bias, key_index))
        return self._gates_and_mlp(x, y), k, v

    def _gates_and_mlp(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The rest of the layer after attention: x the layer input, y = act(attn(...))."""
        x1 = self.gate1(x, y)
        if not self.pre_norm:
            x1 = self.norm1(x1)
        y2 = self.act(self.mlp(self.norm2(x1) if self.pre_norm else x1))
        x2 = self.gate2(x1, y2)
        if not self.pre_norm:
            x2 = self.norm2(x2)
        return x2


# ----------------------------------------------------------------------------------------------------------
# The core


def _last(x: torch.Tensor, n: int) -> torch.Tensor:
    """Last ``n`` entries along dim 1 (``x[:, -0:]`` would keep everything)."""
    return x[:, x.shape[1] - n :]


def _last_of_pair(old: torch.Tensor, new: torch.Tensor, n: int) -> torch.Tensor:
    """``_last(cat([old, new], 1), n)`` without concatenating what is dropped (detached)."""
    old, new = old.detach(), new.detach()
    if new.shape[1] >= n:
        return _last(new, n)
    return torch.cat([old[:, old.shape[1] - (n - new.shape[1]) :], new], dim=1)


def _ring_pos(state: State) -> torch.Tensor:
    """[B] long ring slot of the oldest step (states without ``pos`` are in chronological order)."""
    pos = state.get("pos")
    if pos is None:
        return torch.zeros(state["valid"].shape[0], dtype=torch.long, device=state["valid"].device)
    return pos


def _ring_index(M: int, offset: torch.Tensor) -> torch.Tensor:
    """[B, M]: ``(offset + i) mod M`` for ``i = 0..M-1``.

    With ``offset = pos`` it lists, oldest first, the slot each chronological index ``c`` is read from; with
    ``offset = -pos``, the chronological index each slot ``m`` holds. Before step 5 of the example in
    :meth:`TransformerCore.step` (``M = 4``, ``pos = 1``) the slots hold steps ``4 1 2 3``:

    >>> pos = torch.tensor([1])
    >>> _ring_index(4, pos)  # chronological c = 0..3 is in slot (pos + c) mod M
    tensor([[1, 2, 3, 0]])
    >>> _ring_index(4, -pos)  # slot m = 0..3 holds chronological (m - pos) mod M
    tensor([[3, 0, 1, 2]])
    >>> _ring_to_chrono(torch.tensor([[4, 1, 2, 3]]), 1, pos)  # what unroll reads
    tensor([[1, 2, 3, 4]])
    >>> _chrono_to_ring(torch.tensor([[1, 2, 3, 4]]), 1, pos)  # and writes back
    tensor([[4, 1, 2, 3]])

    ``step``'s ``key_index`` is the distance ``M - c`` of the step in slot ``m`` from the query:
    ``4 - (3 0 1 2) = 1 4 3 2``.
    """
    return (offset[:, None] + torch.arange(M, device=offset.device)[None, :]) % M


def _gather_slots(x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """``x`` [B, ..., M (at dim), ...] reindexed along ``dim`` by ``index`` [B, M] (per row)."""
    shape = [index.shape[0]] + [1] * (x.dim() - 1)
    shape[dim] = index.shape[1]
    return torch.take_along_dim(x, index.view(shape), dim=dim)


def _ring_to_chrono(x: torch.Tensor, dim: int, pos: torch.Tensor) -> torch.Tensor:
    """Ring slots -> oldest first: chronological ``c`` is slot ``(pos + c) mod M``. Identity when pos == 0."""
    M = x.shape[dim]
    if M == 0 or not bool(pos.any()):
        return x
    return _gather_slots(x, dim, _ring_index(M, pos))


def _chrono_to_ring(x: torch.Tensor, dim: int, pos: torch.Tensor) -> torch.Tensor:
    """Oldest first -> ring slots, oldest at ``pos``: slot ``m`` holds chronological ``(m - pos) mod M``."""
    M = x.shape[dim]
    if M == 0 or not bool(pos.any()):
        return x
    return _gather_slots(x, dim, _ring_index(M, -pos))


class TransformerCore(nn.Module):
    """Stack of :class:`TransformerXLLayer` with a per-layer memory of the last ``M`` layer inputs.

    Interface shared with the recurrent cores: ``initial_state``, ``step``, ``unroll``, ``refresh_cache``,
    ``out_dim``.
    """

    def __init__(self, cfg: NetConfig, use_sdpa: bool = True):
        super().__init__()
        if cfg.core not in TRANSFORMER_CORES:
            raise ValueError(
                f"net.core={cfg.core!r} is not a transformer core; accepted: gtrxl, trxl, trxl_i"
            )
        self.memory_length = cfg.memory_length
        self.num_heads, self.head_dim, self.out_dim = cfg.num_heads, cfg.head_dim, cfg.d_model
        self.layers = nn.ModuleList(TransformerXLLayer(cfg, use_sdpa) for _ in range(cfg.num_layers))

    def initial_state(self, batch_size: int, device=None) -> State:
        """Empty memory: every slot invisible."""
        p = next(self.parameters())
        device = p.device if device is None else device
        B, L, M = batch_size, len(self.layers), self.memory_length
        kv_shape = (B, L, M, self.num_heads, self.head_dim)
        return {
            "memory": torch.zeros(B, L, M, self.out_dim, device=device, dtype=p.dtype),
            "valid": torch.zeros(B, M, dtype=torch.bool, device=device),
            "k": torch.zeros(kv_shape, device=device, dtype=p.dtype),
            "v": torch.zeros(kv_shape, device=device, dtype=p.dtype),
            "pos": torch.zeros(B, dtype=torch.long, device=device),
        }

    def step(self, x: torch.Tensor, first: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One acting step with the key/value cache: O(1) projections and copies, O(M) attention.

        The new token's memory/key/value overwrite the oldest ring slot of each layer in place (after that
        layer's attention, which still sees it). A :class:`StepState` is consumed (the returned state
        shares its ``memory``/``k``/``v``); any other state is copied first (once per chain of steps).
        x [B, d], first [B] bool -> (y [B, d], new_state).

        Worked example: ``M = 4``, one environment, steps 0..7, episodes starting at steps 0 and 6. Row ``t``
        is what the query of step ``t`` sees, before the step writes itself into slot ``pos``: the step each
        slot holds (``.``: never written), ``valid``, ``key_index`` (the distance of each slot's step from
        the query; ``c``: the current token) and the visibility ``bias`` encodes (1: bias 0; 0: -inf)::

            t first | slots   | pos | valid   | key_index | visible
                    | 0 1 2 3 |     | 0 1 2 3 | 0 1 2 3 c | 0 1 2 3 c
            0   1   | . . . . |  0  | 0 0 0 0 | 4 3 2 1 0 | 0 0 0 0 1
            1   0   | 0 . . . |  1  | 1 0 0 0 | 1 4 3 2 0 | 1 0 0 0 1
            2   0   | 0 1 . . |  2  | 1 1 0 0 | 2 1 4 3 0 | 1 1 0 0 1
            3   0   | 0 1 2 . |  3  | 1 1 1 0 | 3 2 1 4 0 | 1 1 1 0 1
            4   0   | 0 1 2 3 |  0  | 1 1 1 1 | 4 3 2 1 0 | 1 1 1 1 1
            5   0   | 4 1 2 3 |  1  | 1 1 1 1 | 1 4 3 2 0 | 1 1 1 1 1
            6   1   | 4 5 2 3 |  2  | 1 1 1 1 | 2 1 4 3 0 | 0 0 0 0 1
            7   0   | 4 5 6 3 |  3  | 0 0 1 0 | 3 2 1 4 0 | 0 0 1 0 1
            after 7 | 4 5 6 7 |  0  | 0 0 1 1 |

        ``key_index[m] = M - ((m - pos) mod M)``: slot ``pos`` holds the oldest step (distance ``M``), the
        slot before it the newest (distance 1). A slot is visible iff ``valid`` and not ``first``; the
        current token always is. At step 4 the ring is full and the query sees steps 0..4 (distances
        4..0); step 4 then overwrites step 0, so step 5 sees 1..5, never step 0 at distance 5: the window
        is ``M``. Step 6 starts an episode: its ``first`` hides the whole ring, and the ``valid`` it leaves
        keeps only its own slot (2), so step 7 sees steps 6 and 7. Unrolling steps 3..7 from row 3's state
        gives the same visibility and the same final state: see :func:`window_episode_mask`.
        """
        M, B = self.memory_length, x.shape[0]
        pos = _ring_pos(state)
        memory, ks, vs = state["memory"], state["k"], state["v"]
        if not isinstance(state, StepState):
            memory, ks, vs = memory.detach().clone(), ks.detach().clone(), vs.detach().clone()
        slots = torch.arange(M, device=x.device)
        # built once for all layers: key distances [B, H, M+1] (slot m holds chronological index
        # c = (m - pos) mod M, at distance M - c from this query; the current token is at 0) and the
        # additive mask [B, 1, M+1] (a reset hides the whole memory; the current token is always visible)
        key_index = x.new_zeros(B, M + 1, dtype=torch.long)
        key_index[:, :M] = M - (slots[None, :] - pos[:, None]) % M
        key_index = key_index[:, None].expand(B, self.num_heads, M + 1)
        bias = ks.new_zeros(B, 1, M + 1)
        bias[:, 0, :M].masked_fill_(~state["valid"] | first[:, None], float("-inf"))
        h = x[:, None]  # [B, 1, d]
        rows = torch.arange(B, device=x.device)
        for i, layer in enumerate(self.layers):
            out, k, v = layer.step(h, ks[:, i], vs[:, i], bias, key_index)
            if M:  # O(1) per layer: the oldest slot takes the current token
                memory[rows, i, pos] = h[:, 0].detach().to(memory.dtype)
                ks[rows, i, pos] = k[:, 0].detach().to(ks.dtype)
                vs[rows, i, pos] = v[:, 0].detach().to(vs.dtype)
            h = out
        oldest = slots[None, :] == pos[:, None]  # now holds the current step
        new_state = StepState(
            memory=memory,
            valid=(state["valid"] & ~first[:, None]) | oldest,
            k=ks,
            v=vs,
            pos=(pos + 1) % M if M else pos,
        )
        return h[:, 0], new_state

    def unroll(self, x: torch.Tensor, first: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Differentiable forward over a segment from its stored memory (learner).

        The memory's keys/values are re-projected from ``state["memory"]`` with the current parameters
        (the cached ``k``/``v`` are not read). x [T, B, d], first [T, B] -> (y [T, B, d], final_state).
        The ring is read in chronological order and the final state is written back in ring order at
        ``pos + T``, the layout ``step`` would have left.
        """
        T = x.shape[0]
        pos = _ring_pos(state)
        memory, valid = _ring_to_chrono(state["memory"], 2, pos), _ring_to_chrono(state["valid"], 1, pos)
        h = rearrange(x, "t b d -> b t d")
        mask = window_episode_mask(valid, rearrange(first, "t b -> b t"))  # [B, T, M + T]
        mems, ks, vs = [], [], []
        for i, layer in enumerate(self.layers):
            mem = memory[:, i].to(h.dtype)
            mem_k, mem_v = layer.project_kv(mem)
            out, k, v = layer(h, mem_k, mem_v, mask)
            with torch.no_grad():  # the next memory (detached): the last M of [memory; current] only
                M = self.memory_length
                mems.append(_last_of_pair(mem, h, M))
                ks.append(_last_of_pair(mem_k, k, M))
                vs.append(_last_of_pair(mem_v, v, M))
            h = out
        final = self._shift_in(state, mask[:, -1], mems, ks, vs)
        new_pos = (pos + T) % self.memory_length if self.memory_length else pos
        final = {
            "memory": _chrono_to_ring(final["memory"], 2, new_pos),
            "valid": _chrono_to_ring(final["valid"], 1, new_pos),
            "k": _chrono_to_ring(final["k"], 2, new_pos),
            "v": _chrono_to_ring(final["v"], 2, new_pos),
            "pos": new_pos,
        }
        return rearrange(h, "b t d -> t b d"), final

    def _shift_in(self, state: State, last_row: torch.Tensor, mems: list, ks: list, vs: list) -> State:
        """New state = the last M slots of ``[memory; current]`` per layer (lists over layers of
        [B, >= M, ...]), oldest first; ``last_row`` [B, M + T] is the mask row of the last query, i.e.
        which of those keys belong to the episode of the last step."""
        M = self.memory_length

        def keep(parts: list[torch.Tensor], old: torch.Tensor) -> torch.Tensor:
            return torch.stack([_last(p, M) for p in parts], dim=1).detach().to(old.dtype)  # [B, L, M, ...]

        return {
            "memory": keep(mems, state["memory"]),
            "valid": _last(last_row, M),
            "k": keep(ks, state["k"]),
            "v": keep(vs, state["v"]),
        }

    @torch.no_grad()
    def refresh_cache(self, state: State) -> State:
        """Re-project the cached keys/values from the stored memory with the current parameters (stored in
        the state's dtype, fp32 under bf16 autocast too)."""
        ks, vs = [], []
        for i, layer in enumerate(self.layers):
            k, v = layer.project_kv(state["memory"][:, i])
            ks.append(k)
            vs.append(v)
        k, v = torch.stack(ks, dim=1).to(state["k"].dtype), torch.stack(vs, dim=1).to(state["v"].dtype)
        return type(state)({**state, "k": k, "v": v})
