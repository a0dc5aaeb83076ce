"""The agent's network: torso -> [features; one_hot(prev_action); prev_reward] -> core -> policy/value.

V-MPO (Song et al. 2019, Atari/DMLab architecture): a ResNet torso, the previous action and reward as
extra inputs, a memory core (LSTM or Transformer-XL; here also GTrXL, Parisotto et al. 2019) and policy
and value heads that branch from the core output. The value head is PopArt-normalised per task.

Two forwards with one semantics:
- ``step``  (actor, under ``torch.no_grad``): obs [B, ...] -> logits [B, A], value [B, K], new state.
- ``unroll`` (learner, differentiable): obs [T, B, ...] time-major from the segment's stored state.
Core states are dicts of batch-first tensors (dim 0 = environment).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from configs.schema import NetConfig
from networks.gtrxl import TransformerCore
from networks.heads import PolicyHead, PopArtValueHead
from networks.init import RELU_GAIN, orthogonal_
from networks.precision import autocast
from networks.recurrent import FeedForwardCore, LSTMCore
from networks.torso import make_torso

State = dict[str, torch.Tensor]


def make_core(cfg: NetConfig) -> nn.Module:
    """Core named by ``cfg.core``; input width ``cfg.d_model``."""
    if cfg.core == "lstm":
        return LSTMCore(cfg.d_model, cfg.lstm_hidden, forget_bias=cfg.lstm_forget_bias)
    if cfg.core == "ff":
        return FeedForwardCore(cfg.d_model, cfg.d_model)
    return TransformerCore(cfg)


class AgentNet(nn.Module):
    """Policy/value network with a memory core; see the module docstring for shapes."""

    def __init__(self, cfg: NetConfig, obs_shape: tuple[int, ...], num_actions: int):
        super().__init__()
        self.cfg, self.obs_shape, self.num_actions = cfg, tuple(obs_shape), num_actions
        self.torso = make_torso(cfg, obs_shape)
        self.input_proj = nn.Linear(cfg.torso_out + num_actions + 1, cfg.d_model)
        self.core = make_core(cfg)
        self.policy = PolicyHead(self.core.out_dim, num_actions)
        self.popart = PopArtValueHead(self.core.out_dim, cfg.num_tasks)
        if cfg.init == "orthogonal":
            self._orthogonal_init()
        # bf16 autocast of torso + core (networks/precision.py); the heads and all outputs stay fp32.
        # Set by agent.builder.build_net from ``train.bf16``; copied with the module (target network).
        self.bf16 = False

    def _orthogonal_init(self) -> None:
        """``net.init=orthogonal`` (networks/init.py): every layer before a ReLU gets gain sqrt(2)."""
        orthogonal_(self.torso, RELU_GAIN)
        orthogonal_(self.input_proj, 1.0)  # no ReLU after the projection
        if isinstance(self.core, FeedForwardCore):
            orthogonal_(self.core, RELU_GAIN)
        orthogonal_(self.policy, 0.01)
        orthogonal_(self.popart, 1.0)

    def initial_state(self, batch_size: int, device=None) -> State:
        """Core state for ``batch_size`` environments at the start of their first episode."""
        return self.core.initial_state(batch_size, device)

    def embed(
        self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor, first: torch.Tensor
    ) -> torch.Tensor:
        """obs [N, ...], prev_action [N] long, prev_reward [N], first [N] bool -> core input [N, d_model].

        The previous action and reward belong to the previous episode where ``first``; they are zeroed
        (any placeholder action, e.g. -1, is accepted there).
        """
        features = self.torso(obs)  # [N, torso_out]
        keep = (~first).to(features.dtype)
        action = F.one_hot(torch.where(first, 0, prev_action).long(), self.num_actions).to(features.dtype)
        reward = prev_reward.to(features.dtype) * keep
        return self.input_proj(torch.cat([features, action * keep[:, None], reward[:, None]], dim=-1))

    def step(
        self,
        obs: torch.Tensor,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        first: torch.Tensor,
        state: State,
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """One acting step -> (logits [B, A], normalised value [B, K], new state)."""
        with autocast(obs.device, self.bf16):
            h, state = self.core.step(self.embed(obs, prev_action, prev_reward, first), first, state)
        h = h.to(torch.promote_types(h.dtype, torch.float32))
        return self.policy(h), self.popart(h), state

    def unroll(
        self,
        obs: torch.Tensor,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        first: torch.Tensor,
        state: State,
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Differentiable forward over [T, B] from the state before ``obs[0]``
        -> (logits [T, B, A], normalised values [T, B, K], final state)."""
        T, B = first.shape
        flat = lambda x: rearrange(x, "t b ... -> (t b) ...")
        with autocast(obs.device, self.bf16):
            x = self.embed(flat(obs), flat(prev_action), flat(prev_reward), flat(first))  # [T*B, d]
            h, state = self.core.unroll(rearrange(x, "(t b) d -> t b d", t=T, b=B), first, state)
        h = h.to(torch.promote_types(h.dtype, torch.float32))  # heads, PopArt, losses: >= fp32
        return self.policy(h), self.popart(h), state

    def refresh_cache(self, state: State) -> State:
        """Re-project cached keys/values with the current parameters (call after each learner update)."""
        with autocast(next(self.parameters()).device, self.bf16):  # same precision as step/unroll
            return self.core.refresh_cache(state)
