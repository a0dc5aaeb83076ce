"""AgentNet: step == unroll through torso/embedding; no information crosses an episode reset."""

from __future__ import annotations

import pytest
import torch

from configs.schema import NetConfig
from networks.agent_net import AgentNet

OBS, A, T, B = (6,), 5, 8, 2


def tiny_net(core: str) -> AgentNet:
    torch.manual_seed(0)
    cfg = NetConfig(
        core=core,
        d_model=16,
        num_layers=2,
        num_heads=2,
        head_dim=8,
        mlp_dim=32,
        memory_length=3,
        torso_out=16,
        lstm_hidden=16,
        num_tasks=2,
    )
    return AgentNet(cfg, OBS, A).double()


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(T, B, *OBS, generator=g, dtype=torch.float64)
    prev_action = torch.randint(0, A, (T, B), generator=g)
    prev_reward = torch.randn(T, B, generator=g, dtype=torch.float64)
    first = torch.zeros(T, B, dtype=torch.bool)
    first[4, 0] = True  # env 0 starts a new episode at t = 4
    return obs, prev_action, prev_reward, first


def warm_state(net: AgentNet):
    """A stored state with a non-empty memory (from an earlier unroll)."""
    obs, prev_action, prev_reward, first = inputs(seed=1)
    first[0] = True
    with torch.no_grad():
        return net.unroll(obs, prev_action, prev_reward, first, net.initial_state(B))[2]


def perturb_old_episode(obs, prev_action, prev_reward):
    """Change env 0's inputs of the previous episode, including the stale prev_action/prev_reward at t=4."""
    obs, prev_action, prev_reward = obs.clone(), prev_action.clone(), prev_reward.clone()
    obs[:4, 0] += 3.0
    prev_action[:5, 0] = (prev_action[:5, 0] + 1) % A
    prev_reward[:5, 0] -= 7.0
    return obs, prev_action, prev_reward


def step_all(net, obs, prev_action, prev_reward, first, state):
    outs = []
    with torch.no_grad():
        for t in range(T):
            logits, value, state = net.step(obs[t], prev_action[t], prev_reward[t], first[t], state)
            outs.append(torch.cat([logits, value], -1))
    return torch.stack(outs)


@pytest.mark.parametrize("core", ["gtrxl", "trxl", "trxl_i", "lstm", "ff"])
def test_step_matches_unroll(core: str) -> None:
    net = tiny_net(core)
    state = warm_state(net)
    obs, prev_action, prev_reward, first = inputs()
    stepped = step_all(net, obs, prev_action, prev_reward, first, state)
    with torch.no_grad():
        logits, value, _ = net.unroll(obs, prev_action, prev_reward, first, state)
    assert logits.shape == (T, B, A) and value.shape == (T, B, 2)
    torch.testing.assert_close(stepped, torch.cat([logits, value], -1), atol=1e-10, rtol=0)


@pytest.mark.parametrize("core", ["gtrxl", "trxl", "trxl_i", "lstm"])
def test_no_leak_across_reset_forward(core: str) -> None:
    net = tiny_net(core)
    state = warm_state(net)
    obs, prev_action, prev_reward, first = inputs()
    changed = perturb_old_episode(obs, prev_action, prev_reward)
    other_state = {k: v + 1.0 if v.is_floating_point() else v for k, v in state.items()}
    other_state = net.refresh_cache(other_state)  # memory of env 0's previous episode changed too
    with torch.no_grad():
        a = torch.cat(net.unroll(obs, prev_action, prev_reward, first, state)[:2], -1)
        b = torch.cat(net.unroll(*changed, first, other_state)[:2], -1)
    sa = step_all(net, obs, prev_action, prev_reward, first, state)
    sb = step_all(net, *changed, first, other_state)
    for x, y in ((a, b), (sa, sb)):
        assert torch.equal(x[4:, 0], y[4:, 0])  # exactly nothing changes after the reset
        assert not torch.allclose(x[:4, 0], y[:4, 0])  # the perturbation mattered before it


@pytest.mark.parametrize("core", ["gtrxl", "lstm"])
def test_no_gradient_across_reset(core: str) -> None:
    net = tiny_net(core)
    state = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in warm_state(net).items()}
    obs, prev_action, prev_reward, first = inputs()
    obs.requires_grad_()
    prev_reward.requires_grad_()
    logits, value, _ = net.unroll(obs, prev_action, prev_reward, first, state)
    (logits[4:, 0].square().sum() + value[4:, 0].square().sum()).backward()
    assert torch.count_nonzero(obs.grad[:4, 0]) == 0
    assert torch.count_nonzero(prev_reward.grad[:5, 0]) == 0  # includes the stale reward at the reset step
    assert torch.count_nonzero(obs.grad[:, 1]) == 0  # other environment
    assert obs.grad[4:, 0].abs().sum() > 0
    for name, s in state.items():
        if s.requires_grad and s.grad is not None:
            assert torch.count_nonzero(s.grad[0]) == 0, name


def test_initial_state_is_batch_first_and_indexable() -> None:
    net = tiny_net("gtrxl")
    state = net.initial_state(B)
    assert state["memory"].shape == (B, 2, 3, 16) and state["valid"].shape == (B, 3)
    assert state["k"].shape == state["v"].shape == (B, 2, 3, 2, 8)
    idx = torch.tensor([1])
    sub = {k: v[idx] for k, v in warm_state(net).items()}
    obs, prev_action, prev_reward, first = inputs()
    with torch.no_grad():
        full = net.unroll(obs, prev_action, prev_reward, first, warm_state(net))[0][:, 1]
        part = net.unroll(obs[:, idx], prev_action[:, idx], prev_reward[:, idx], first[:, idx], sub)[0][:, 0]
    torch.testing.assert_close(full, part, atol=1e-12, rtol=0)
