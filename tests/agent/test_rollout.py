"""Actor unrolls: reset steps masked, episode starts flagged, memory carried across unrolls."""

import torch

import envs
from agent.rollout import Actor
from configs import load_config
from networks.agent_net import AgentNet


def make_actor(core: str = "gtrxl") -> Actor:
    overrides = ["env.name=CueRecall-L3", "env.num_envs=3", "net.d_model=16", "net.num_layers=1",
                 "net.head_dim=8", "net.mlp_dim=16", "net.memory_length=4", "net.torso_out=16"]  # fmt: skip
    cfg = load_config("quickstart", [*overrides, f"net.core={core}"])
    torch.manual_seed(0)
    env = envs.make(cfg.env)
    net = AgentNet(cfg.net, env.observation_shape, env.num_actions)
    return Actor(env, net, torch.device("cpu"))


def test_reset_steps_are_masked_and_next_obs_is_first():
    actor = make_actor()
    traj, stats = actor.rollout(13)
    done = traj.terminated | traj.truncated
    # Episode of 3 steps, then one reset step whose action the env ignores: period 4.
    expected_mask = torch.tensor([1.0, 1, 1, 0] * 3 + [1.0])[:, None].expand(13, 3)
    assert torch.equal(traj.mask, expected_mask)
    assert torch.equal(traj.mask[1:] == 0, done[:-1])  # a reset step follows every episode end
    assert torch.equal(traj.first[1:], traj.mask == 0)  # the obs after a reset step starts an episode
    assert traj.first[0].all()  # the very first observation
    assert len(stats.returns) == 3 * 3 and set(stats.lengths.tolist()) == {3}
    assert traj.obs.shape == (14, 3, 5) and traj.action.shape == (13, 3)


def test_memory_is_carried_across_unrolls_and_matches_the_learner_view():
    actor = make_actor()
    first, _ = actor.rollout(6)
    second, _ = actor.rollout(6)
    net = actor.net
    with torch.no_grad():
        # Unroll over the first segment's T real steps (drop the bootstrap input) from its stored memory.
        inputs = [x[:6] for x in first.inputs()[:4]]
        _, _, final = net.unroll(*inputs, first.initial_state)
    assert torch.equal(final["valid"], second.initial_state["valid"])
    torch.testing.assert_close(final["memory"], second.initial_state["memory"], atol=1e-6, rtol=1e-6)
