"""agent.builder: one way to build env, network, learner and actor; the learner refreshes the actor."""

from __future__ import annotations

import pytest
import torch

from agent.builder import build_agent, build_net, make_env, rank_seed
from agent.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from agent.learner import PPOLearner, VMPOLearner
from agent.train import main
from configs import load_config
from eval.loading import load_agent
from networks.precision import resolve_bf16
from tests.agent.test_trainer import TINY

CPU = torch.device("cpu")


@pytest.mark.parametrize("algo", ["vmpo", "ppo"])
def test_build_agent_shares_one_net_and_sets_tasks_and_precision_before_the_copy(algo):
    cfg = load_config("quickstart", [*TINY, f"algo.name={algo}", "net.num_tasks=3", "train.bf16=on"])
    env = make_env(cfg)
    try:
        agent = build_agent(cfg, env, device=CPU)
    finally:
        env.close()
    assert agent.cfg.net.num_tasks == len(env.task_names) == 1  # one PopArt head per task of the env
    assert agent.net.popart.mu.shape == (1,)
    assert agent.actor.net is agent.net is agent.learner.net and agent.learner.actor is agent.actor
    assert agent.net.bf16 is True
    assert isinstance(agent.learner, {"vmpo": VMPOLearner, "ppo": PPOLearner}[algo])
    if algo == "vmpo":
        assert agent.learner.target_net.bf16 is True  # copied after the precision was set


def test_build_agent_is_seeded_by_the_config():
    cfg = load_config("quickstart", TINY)
    params = []
    for _ in range(2):
        env = make_env(cfg)
        try:
            torch.manual_seed(12345)  # whatever came before does not matter
            net = build_agent(cfg, env, device=CPU).net
            params.append(torch.cat([p.flatten() for p in net.parameters()]))
        finally:
            env.close()
    assert torch.equal(params[0], params[1])
    assert rank_seed(3, 0, 0) == 3 and rank_seed(3, 1, 2) == 3 + 7_919 + 2 * 10_007


def test_the_learner_refreshes_the_actors_cache_after_each_update():
    cfg = load_config("quickstart", [*TINY, "algo.vmpo.update_epochs=1"])
    env = make_env(cfg)
    try:
        agent = build_agent(cfg, env, device=CPU)
        agent.net.eval()
        traj, _ = agent.actor.rollout(cfg.algo.unroll_length)
        agent.net.train()
        before = {k: v.clone() for k, v in agent.actor.state.items()}
        metrics = agent.learner.update(traj)
    finally:
        env.close()
    expected = agent.net.refresh_cache(before)  # the memory re-projected with the new parameters
    assert expected.keys() == agent.actor.state.keys()
    for key, value in expected.items():
        torch.testing.assert_close(agent.actor.state[key], value, msg=key)
    assert any(not torch.equal(before[k], expected[k]) for k in expected)  # the cache did change
    assert "loss/total" in metrics and "vmpo/eta" in metrics and "learner/lr" in metrics


def test_popart_metrics_are_named_by_task_where_computed():
    cfg = load_config("quickstart", [*TINY, "algo.popart=true", "algo.vmpo.update_epochs=1"])
    env = make_env(cfg)
    try:
        agent = build_agent(cfg, env, device=CPU)
        traj, _ = agent.actor.rollout(cfg.algo.unroll_length)
        metrics = agent.learner.update(traj)
    finally:
        env.close()
    (task,) = env.task_names
    assert {f"popart/mu/{task}", f"popart/sigma/{task}"} <= metrics.keys()
    assert not [k for k in metrics if k.startswith("popart/") and "_" in k.split("/")[1]]


def test_a_checkpoint_of_another_env_is_refused_and_the_evaluator_builds_the_same_net(tmp_path):
    args = [*TINY, f"train.run_dir={tmp_path}", "train.run_name=r", "train.total_steps=32"]
    assert main(["--config", "quickstart", *args]) == 0
    payload = load_checkpoint(latest_checkpoint(tmp_path / "r"))
    cfg = load_config("quickstart", TINY)
    env = make_env(cfg)
    try:
        with pytest.raises(CheckpointError, match="trained on obs/actions"):
            build_agent(cfg, env, device=CPU, checkpoint={**payload, "num_actions": 99})
    finally:
        env.close()
    loaded = load_agent(tmp_path / "r")
    assert loaded.net.bf16 == resolve_bf16(loaded.cfg.train.bf16, CPU)  # the precision training acted in
    built = build_net(loaded.cfg, loaded.obs_shape, loaded.num_actions, device=CPU)
    assert built.state_dict().keys() == loaded.net.state_dict().keys()
