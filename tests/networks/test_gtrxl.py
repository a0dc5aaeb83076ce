"""Transformer cores: cached step == unroll == an independent full-history recompute; receptive field
L*M, cut by episode starts; init near identity; TrXL vs TrXL-I; refresh_cache; SDPA vs explicit softmax."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from configs.schema import NetConfig
from networks.gtrxl import GRUGate, SigmoidOutputGate, StepState, TransformerCore, window_episode_mask

VARIANTS = [("gtrxl", "gru"), ("gtrxl", "sigmoid_output"), ("trxl", "gru"), ("trxl_i", "gru")]


def tiny_cfg(core: str = "gtrxl", gate: str = "gru", memory_length: int = 3, **kw) -> NetConfig:
    base = dict(d_model=12, num_layers=2, num_heads=2, head_dim=5, mlp_dim=16, memory_length=memory_length)
    return NetConfig(core=core, gate=gate, **{**base, **kw})


def make_core(core: str, gate: str, memory_length: int = 3, seed: int = 0, **kw) -> TransformerCore:
    torch.manual_seed(seed)
    net = TransformerCore(tiny_cfg(core, gate, memory_length, **kw)).double()
    with torch.no_grad():  # make every term matter: non-trivial u, v, LayerNorm affine and gate biases
        for name, p in net.named_parameters():
            if name.endswith((".u", ".v", "norm1.weight", "norm2.bias", "b_g")):
                p.add_(0.3 * torch.randn_like(p))
    return net


# ----------------------------------------------------------------------------------------------------------
# Independent reference: whole history, explicit loops over (batch, query), the window + episode mask.


def ref_sinusoid(num: int, dim: int) -> torch.Tensor:
    R = torch.zeros(num, dim, dtype=torch.float64)
    half = dim // 2
    for d in range(num):
        for k in range(half):
            angle = d / 10000 ** (2 * k / dim)
            R[d, k], R[d, half + k] = math.sin(angle), math.cos(angle)
    return R


def ref_attention(attn, a_in: torch.Tensor, episode: torch.Tensor, M: int) -> torch.Tensor:
    """a_in [B, N, d] normed inputs of the whole history, episode [B, N] ids -> attention output [B, N, d]."""
    B, N, d = a_in.shape
    H, E = attn.num_heads, attn.head_dim
    q = (a_in @ attn.q_proj.weight.T).view(B, N, H, E)
    k, v = (a_in @ attn.kv_proj.weight.T).view(B, N, 2, H, E).unbind(2)
    pos = (ref_sinusoid(M + 1, d) @ attn.r_proj.weight.T).view(M + 1, H, E)  # W_r R_{i-j}
    out = torch.zeros(B, N, H, E, dtype=a_in.dtype)
    for b in range(B):
        for i in range(N):
            js = [j for j in range(N) if 0 <= i - j <= M and episode[b, j] == episode[b, i]]
            scores = torch.stack(
                [
                    ((q[b, i] + attn.u) * k[b, j]).sum(-1) + ((q[b, i] + attn.v) * pos[i - j]).sum(-1)
                    for j in js
                ]
            ) / math.sqrt(E)  # [J, H]
            p = scores.softmax(dim=0)
            out[b, i] = (p[:, :, None] * v[b, js]).sum(0)
    return attn.out_proj(out.reshape(B, N, H * E))


def ref_gate(gate: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if isinstance(gate, GRUGate):
        W_r, W_z, W_g = gate.w.weight.chunk(3, dim=0)
        U_r, U_z = gate.u_rz.weight.chunk(2, dim=0)
        r = torch.sigmoid(y @ W_r.T + x @ U_r.T)
        z = torch.sigmoid(y @ W_z.T + x @ U_z.T - gate.b_g)
        h_hat = torch.tanh(y @ W_g.T + (r * x) @ gate.u_g.weight.T)
        return (1 - z) * x + z * h_hat
    if isinstance(gate, SigmoidOutputGate):
        return x + torch.sigmoid(x @ gate.w_g.weight.T - gate.b_g) * y
    return x + y


def ref_forward(core: TransformerCore, core_name: str, x: torch.Tensor, first: torch.Tensor):
    """x [N, B, d] whole history from its first step, first [N, B]
    -> (out [N, B, d], layer inputs [L, B, N, d])."""
    h, episode, M = x.transpose(0, 1), torch.cumsum(first.T.long(), dim=1), core.memory_length
    inputs = []
    for layer in core.layers:
        inputs.append(h)
        if core_name == "trxl":  # post-LN: x1 = LN(x + attn(x)), x2 = LN(x1 + mlp(x1))
            x1 = layer.norm1(h + ref_attention(layer.attn, h, episode, M))
            h = layer.norm2(x1 + layer.mlp(x1))
        else:  # pre-LN + ReLU, gated (gtrxl) or residual (trxl_i)
            y = torch.relu(ref_attention(layer.attn, layer.norm1(h), episode, M))
            x1 = ref_gate(layer.gate1, h, y)
            h = ref_gate(layer.gate2, x1, torch.relu(layer.mlp(layer.norm2(x1))))
    return h.transpose(0, 1), torch.stack(inputs)


def history(N: int = 12, B: int = 3, d: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, B, d, generator=g, dtype=torch.float64)
    first = torch.zeros(N, B, dtype=torch.bool)
    first[0] = True
    first[6, 0] = True  # reset inside the unrolled segment [4, 10)
    first[8, 1] = True
    first[4, 2] = True  # reset on the segment's first step
    return x, first


# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("core_name", "gate"), VARIANTS)
def test_step_unroll_and_full_recompute_agree(core_name: str, gate: str) -> None:
    core = make_core(core_name, gate, memory_length=3)
    x, first = history()
    N, B = first.shape
    with torch.no_grad():
        ref, ref_inputs = ref_forward(core, core_name, x, first)

        state, stepped = core.initial_state(B), []  # cached step() over the whole history
        for t in range(N):
            y, state = core.step(x[t], first[t], state)
            stepped.append(y)
        step_final = state

        state, pieces = core.initial_state(B), []  # step 4, then unroll 6 (two resets), then unroll 2 more
        for t in range(4):
            y, state = core.step(x[t], first[t], state)
            pieces.append(y[None])
        for lo, hi in ((4, 10), (10, N)):
            y, state = core.unroll(x[lo:hi], first[lo:hi], state)
            pieces.append(y)

        whole, whole_final = core.unroll(x, first, core.initial_state(B))

    torch.testing.assert_close(torch.stack(stepped), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat(pieces), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(whole, ref, atol=1e-5, rtol=0)
    # final memory = the last M layer inputs; valid = same episode as the last step
    M = core.memory_length
    for final in (step_final, state, whole_final):
        torch.testing.assert_close(
            final["memory"], ref_inputs[:, :, N - M :].transpose(0, 1), atol=1e-5, rtol=0
        )
        episode = torch.cumsum(first.long(), 0)
        torch.testing.assert_close(final["valid"], (episode[N - M :] == episode[-1]).T)
        torch.testing.assert_close(final["k"], core.refresh_cache(final)["k"], atol=1e-5, rtol=0)


def core_outputs(core: TransformerCore, x: torch.Tensor, first: torch.Tensor, mode: str) -> torch.Tensor:
    """Outputs [T, B, d] of ``core`` over x [T, B, d] from an empty memory: one ``unroll`` (``"unroll"``),
    ``unroll`` over 2-step segments carrying the memory (``"segments"``), or cached ``step`` (``"step"``)."""
    B = x.shape[1]
    state, ys = core.initial_state(B), []
    with torch.no_grad():
        if mode == "unroll":
            return core.unroll(x, first, state)[0]
        if mode == "segments":
            for lo in range(0, len(x), 2):
                y, state = core.unroll(x[lo : lo + 2], first[lo : lo + 2], state)
                ys.append(y)
            return torch.cat(ys)
        for t in range(len(x)):
            y, state = core.step(x[t], first[t], state)
            ys.append(y)
        return torch.stack(ys)


def perturbed_step(L: int, M: int, s: int, reset: int | None = None):
    """A history x [T, B, d] (T = s + L*M + 5, one episode from t=0, or a second one from ``reset``) and
    a copy x2 with random noise added to step ``s`` only."""
    T, B, d = s + L * M + 5, 2, 12
    g = torch.Generator().manual_seed(10 * L + M)
    x = torch.randn(T, B, d, generator=g, dtype=torch.float64)
    first = torch.zeros(T, B, dtype=torch.bool)
    first[0] = True
    if reset is not None:
        first[reset] = True
    x2 = x.clone()
    x2[s] += torch.randn(B, d, generator=g, dtype=torch.float64)
    return x, x2, first


CHANGED = 1e-10  # far above float64 rounding; measured >= 1e-7 at t = s + L*M, L = 3 (a hop shrinks it ~100x)


@pytest.mark.parametrize("M", [1, 3])
@pytest.mark.parametrize("L", [1, 2, 3])
def test_receptive_field_is_num_layers_times_memory_length(L: int, M: int) -> None:
    """Perturbing step ``s`` changes exactly the outputs at ``s <= t <= s + L*M`` (Dai et al. 2019, 3.2).

    A layer's query at ``t`` sees its inputs at ``t - M .. t``; those are the previous layer's outputs,
    which saw their own window, so ``L`` layers see ``L*M`` steps back (not ``M``). Before ``s`` the
    outputs are the same computation on the same inputs (the same bits); beyond ``s + L*M`` the perturbed
    step reaches them only through masked attention weights. Checked through one ``unroll``, 2-step
    ``unroll`` segments (the memory carries the field across segments) and the cached ``step``.
    """
    s = 4
    x, x2, first = perturbed_step(L, M, s)
    core = make_core("gtrxl", "gru", memory_length=M, num_layers=L)
    end = s + L * M  # the last output the perturbation reaches
    for mode in ("unroll", "segments", "step"):
        a, b = core_outputs(core, x, first, mode), core_outputs(core, x2, first, mode)
        assert torch.equal(a[:s], b[:s]), mode  # causal
        change = (a - b).abs().amax(dim=(1, 2))  # [T]
        assert (change[s : end + 1] > CHANGED).all(), (mode, change.tolist())
        torch.testing.assert_close(
            a[end + 1 :], b[end + 1 :], atol=1e-12, rtol=0, msg=lambda m, mode=mode: f"{mode}: {m}"
        )


@pytest.mark.parametrize("M", [1, 3])
@pytest.mark.parametrize("L", [1, 2, 3])
def test_episode_start_cuts_the_receptive_field(L: int, M: int) -> None:
    """An episode start at ``r`` (``s < r <= s + L*M``) hides step ``s`` from every output at ``t >= r``.

    Exactly: every layer's query at ``t >= r`` attends only keys of its own episode, which by induction
    over the layers do not depend on step ``s``; the other keys get a ``-inf`` score (``masked_fill``),
    hence an attention weight ``exp(-inf) = 0`` and a contribution ``0 * v = 0`` for any finite ``v``.
    """
    s = 4
    r = s + max(1, L * M // 2)
    x, x2, first = perturbed_step(L, M, s, reset=r)
    core = make_core("gtrxl", "gru", memory_length=M, num_layers=L)
    for mode in ("unroll", "segments", "step"):
        a, b = core_outputs(core, x, first, mode), core_outputs(core, x2, first, mode)
        assert torch.equal(a[:s], b[:s]), mode
        change = (a - b).abs().amax(dim=(1, 2))
        assert (change[s:r] > CHANGED).all(), (mode, change.tolist())
        assert torch.equal(a[r:], b[r:]), (mode, change.tolist())


def test_mask_query_always_sees_itself() -> None:
    valid = torch.tensor([[True, False, True]])
    first = torch.tensor([[True, False, True, True]])
    mask = window_episode_mask(valid, first)  # [1, 4, 7]
    assert mask[0, :, 3:].diagonal().all()
    assert not mask[0, :, :3].any()  # reset at t=0 hides all memory
    assert mask[0, 1, 3] and not mask[0, 2, 4]


def test_zero_memory_length_is_reactive() -> None:
    core = make_core("gtrxl", "gru", memory_length=0)
    x, first = history()
    with torch.no_grad():
        y, final = core.unroll(x, first, core.initial_state(3))
        y_each = torch.stack([core.step(x[t], first[t], core.initial_state(3))[0] for t in range(len(x))])
    torch.testing.assert_close(y, y_each, atol=1e-10, rtol=0)
    assert final["memory"].shape == (3, 2, 0, 12)


def test_sdpa_matches_explicit_softmax_with_gradients() -> None:
    """The additive attn_mask carries the positional term: its gradient must reach u, v and W_r."""
    fast = make_core("gtrxl", "gru").float()
    slow = copy.deepcopy(fast)
    for layer in slow.layers:
        layer.attn.use_sdpa = False
    x, first = history()
    state = fast.initial_state(3)
    state["memory"].normal_()
    state["valid"][:] = True
    outs = []
    for net in (fast, slow):
        y, _ = net.unroll(x.float(), first, state)
        y.square().sum().backward()
        outs.append(y)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    for (name, p), q in zip(fast.named_parameters(), slow.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=name)
    assert (
        fast.layers[0].attn.v.grad.abs().sum() > 0 and fast.layers[0].attn.r_proj.weight.grad.abs().sum() > 0
    )


def relative_change(gate_bias: float) -> float:
    torch.manual_seed(0)
    cfg = NetConfig(
        d_model=64, num_layers=1, num_heads=4, head_dim=16, mlp_dim=256, memory_length=8, gate_bias=gate_bias
    )
    layer = TransformerCore(cfg).layers[0]
    x = torch.randn(4, 16, 64)
    mem = torch.zeros(4, 0, 4, 16)
    mask = window_episode_mask(torch.zeros(4, 0, dtype=torch.bool), torch.zeros(4, 16, dtype=torch.bool))
    with torch.no_grad():
        y, _, _ = layer(x, mem, mem, mask)
    return float((y - x).norm() / x.norm())


def test_gtrxl_layer_starts_near_identity() -> None:
    """GTrXL 3.2: b_g = 2 biases z towards 0, so g(x, y) ~ x at initialisation."""
    near, far = relative_change(2.0), relative_change(0.0)
    assert near < far
    assert near < 0.35, near  # measured 0.26 for b_g = 2 (0.76 for b_g = 0), two gated sub-layers


def test_trxl_and_trxl_i_differ_only_in_layernorm_placement() -> None:
    torch.manual_seed(0)
    post = TransformerCore(tiny_cfg("trxl")).double()
    pre = TransformerCore(tiny_cfg("trxl_i")).double()
    assert {k: v.shape for k, v in post.state_dict().items()} == {
        k: v.shape for k, v in pre.state_dict().items()
    }
    pre.load_state_dict(post.state_dict())
    x, first = history()
    with torch.no_grad():
        a, _ = post.unroll(x, first, post.initial_state(3))
        b, _ = pre.unroll(x, first, pre.initial_state(3))
    assert (a - b).abs().max() > 1e-3  # with LayerNorm they are different functions
    for net in (post, pre):  # remove LayerNorm and TrXL-I's ReLU on the sub-layer outputs (GTrXL 3.1)
        for layer in net.layers:
            layer.norm1, layer.norm2, layer.act = nn.Identity(), nn.Identity(), nn.Identity()
    with torch.no_grad():
        a, _ = post.unroll(x, first, post.initial_state(3))
        b, _ = pre.unroll(x, first, pre.initial_state(3))
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_refresh_cache_after_parameter_change() -> None:
    core = make_core("gtrxl", "gru", memory_length=4)
    x, first = history()
    state = core.initial_state(3)
    with torch.no_grad():
        for t in range(8):
            _, state = core.step(x[t], first[t], state)
        for p in core.parameters():  # a "learner update"
            p.add_(0.1 * torch.randn_like(p))
        stale, _ = core.step(x[8], first[8], state)
        learner, _ = core.unroll(x[8:9], first[8:9], state)
        fresh, _ = core.step(x[8], first[8], core.refresh_cache(state))
    assert (stale - learner[0]).abs().max() > 1e-4
    torch.testing.assert_close(fresh, learner[0], atol=1e-10, rtol=0)


# ----------------------------------------------------------------------------------------------------------
# Ring-buffer memory: step writes one slot per layer in place; unroll reads/writes the same ring layout.


def test_ring_pointer_states_mix_step_and_unroll_and_concatenate() -> None:
    """M=4 over 11 steps (pointer wraps, ends at pos 3); envs at different ring positions are concatenated."""
    core = make_core("gtrxl", "gru", memory_length=4)
    x, first = history(N=11)
    N, B = first.shape
    with torch.no_grad():
        ref, _ = ref_forward(core, "gtrxl", x, first)
        stepped, state = [], core.initial_state(B)
        for t in range(N):
            y, state = core.step(x[t], first[t], state)
            stepped.append(y)
        _, unrolled = core.unroll(x, first, core.initial_state(B))
        # env 0 from a state 2 steps later than envs 1, 2 (different ring pointers), joined along dim 0
        s9 = core.initial_state(B)
        for t in range(9):
            _, s9 = core.step(x[t], first[t], s9)
        s9 = {k: v.clone() for k, v in s9.items()}
        _, s7 = core.unroll(x[:7], first[:7], core.initial_state(B))
        mixed = {k: torch.cat([s9[k][:1], s7[k][1:]]) for k in s9}
        assert mixed["pos"].tolist() == [1, 3, 3]
        y0, _ = core.unroll(x[9:, :1], first[9:, :1], {k: v[:1] for k, v in mixed.items()})
        y12 = []
        rest = {k: v[1:] for k, v in mixed.items()}
        for t in range(7, N):
            y, rest = core.step(x[t, 1:], first[t, 1:], rest)
            y12.append(y)
    torch.testing.assert_close(torch.stack(stepped), ref, atol=1e-5, rtol=0)
    assert state["pos"].tolist() == [N % 4] * B
    for key in ("memory", "valid", "k", "v", "pos"):  # step and unroll leave the same ring layout
        torch.testing.assert_close(state[key], unrolled[key], atol=1e-5, rtol=0)
    torch.testing.assert_close(y0, ref[9:, :1], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack(y12), ref[7:, 1:], atol=1e-5, rtol=0)


def test_step_copies_a_plain_state_once_then_writes_in_place() -> None:
    core = make_core("gtrxl", "gru", memory_length=5)
    x, first = history()
    with torch.no_grad():
        _, plain = core.unroll(x[:4], first[:4], core.initial_state(3))
        before = {k: v.clone() for k, v in plain.items()}
        _, s1 = core.step(x[4], first[4], plain)
        for k in before:  # a plain state (unroll's, initial_state, {k: v[idx]}) is never modified
            assert torch.equal(plain[k], before[k]), k
        assert isinstance(s1, StepState) and s1["memory"].data_ptr() != plain["memory"].data_ptr()
        ptrs = {k: s1[k].data_ptr() for k in ("memory", "k", "v")}
        _, s2 = core.step(x[5], first[5], s1)
        _, s2 = core.step(x[6], first[6], core.refresh_cache(s2))
        assert isinstance(s2, StepState)
        assert s2["memory"].data_ptr() == ptrs["memory"]  # the ring is updated in place, no O(M) copy
        _, s3 = core.step(x[7], first[7], s2)
        assert s3["k"].data_ptr() == s2["k"].data_ptr()


def test_position_table_cache_follows_parameter_updates() -> None:
    core = make_core("gtrxl", "gru", memory_length=4)
    x, first = history()
    with torch.no_grad():
        state = core.initial_state(3)
        for t in range(6):
            _, state = core.step(x[t], first[t], state)
        for layer in core.layers:
            layer.attn.r_proj.weight.mul_(1.5)  # in-place update: the cached W_r R must be recomputed
        keep = {k: v.clone() for k, v in state.items()}
        y_step, _ = core.step(x[6], first[6], state)
        y_unroll, _ = core.unroll(x[6:7], first[6:7], keep)
    torch.testing.assert_close(y_step, y_unroll[0], atol=1e-10, rtol=0)


def test_bf16_step_keeps_fp32_ring_storage() -> None:
    torch.manual_seed(0)
    core = TransformerCore(tiny_cfg(memory_length=4))
    x, first = history()
    state = core.initial_state(3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        state = core.refresh_cache(state)
        for t in range(6):
            _, state = core.step(x[t].float(), first[t], state)
        _, unrolled = core.unroll(x[:6].float(), first[:6], core.initial_state(3))
    for key in ("memory", "k", "v"):
        assert state[key].dtype == unrolled[key].dtype == torch.float32, key
        torch.testing.assert_close(state[key], unrolled[key], atol=0.1, rtol=0.1)


@pytest.mark.parametrize("M", [1, 7])
def test_step_attention_over_the_ring_equals_attention_over_the_concatenated_window(M: int) -> None:
    """``attn.step`` (ring read in place as a strided slice, current token joined by its score only) ==
    ``attn.forward`` over ``[memory in chronological order; current]``, gradients included."""
    torch.manual_seed(3)
    B, L, d, H, E = 4, 3, 12, 3, 5
    attn = make_core("gtrxl", "gru", memory_length=M, num_heads=H, head_dim=E).layers[0].attn
    cache_k, cache_v = torch.randn(2, B, L, M, H, E, dtype=torch.float64)
    mem_k, mem_v = cache_k[:, 1], cache_v[:, 1]  # [B, M, H, E], strided like the core's layer slice
    h = torch.randn(B, 1, d, dtype=torch.float64)
    k, v = attn.project_kv(h)
    pos = torch.tensor([0, 1 % M, (M - 1), 3 % M])  # a different ring pointer per env
    valid = torch.rand(B, M) < 0.7
    first = torch.tensor([False, False, True, False])

    slots = torch.arange(M)
    chrono = (pos[:, None] + slots[None, :]) % M  # chronological c is ring slot (pos + c) mod M
    key_index = torch.cat([M - (slots[None, :] - pos[:, None]) % M, torch.zeros(B, 1, dtype=torch.long)], 1)
    bias = torch.zeros(B, 1, M + 1, dtype=torch.float64)
    bias[:, 0, :M].masked_fill_(~valid | first[:, None], float("-inf"))
    fast = attn.step(h, mem_k, mem_v, k, v, bias, key_index[:, None].expand(B, H, M + 1))

    def take(x: torch.Tensor) -> torch.Tensor:  # ring slots -> chronological
        return torch.take_along_dim(x, chrono[:, :, None, None], dim=1)

    mask = torch.cat(
        [torch.take_along_dim(valid, chrono, 1) & ~first[:, None], torch.ones(B, 1, dtype=torch.bool)], 1
    )
    ref = attn(h, torch.cat([take(mem_k), k], 1), torch.cat([take(mem_v), v], 1), mask[:, None])
    torch.testing.assert_close(fast, ref, atol=1e-12, rtol=0)
    params = [attn.u, attn.v, *(m.weight for m in (attn.q_proj, attn.kv_proj, attn.r_proj, attn.out_proj))]
    g = torch.randn_like(ref)
    for a, b in zip(
        torch.autograd.grad(fast, params, g, retain_graph=True),
        torch.autograd.grad(ref, params, g),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_bf16_step_attends_in_fp32_close_to_the_fp32_step() -> None:
    """Under autocast the fp32 ring is read as it is (attention in fp32, projections in bf16)."""
    torch.manual_seed(0)
    core = TransformerCore(tiny_cfg(memory_length=4))
    x, first = history()
    x = x.float()
    with torch.no_grad():
        s32, s16 = core.initial_state(3), core.initial_state(3)
        for t in range(8):
            y32, s32 = core.step(x[t], first[t], s32)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y16, s16 = core.step(x[t], first[t], s16)
            assert s16["k"].dtype == torch.float32
            torch.testing.assert_close(y16.float(), y32, atol=0.05, rtol=0.05)
