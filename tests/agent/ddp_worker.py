"""torchrun worker of tests/agent/test_distributed.py (not a test module).

Every rank collects the same [T, 4] trajectories (same seeds), then runs V-MPO updates twice: once as a
single-process learner on the whole batch (the reference) and once as a DDP replica on its own two
columns. It saves both learners' parameters and metrics for the test to compare.
"""

from __future__ import annotations

import dataclasses
import sys

import torch

import envs
from agent import distributed
from agent.learner import make_learner
from agent.rollout import Actor
from agent.vmpo import Penalty, vmpo_sample_loss
from configs import load_config
from networks.agent_net import AgentNet

OVERRIDES = [
    "env.num_envs=4", "algo.unroll_length=8", "algo.n_step=4", "net.d_model=32", "net.num_layers=2",
    "net.num_heads=2", "net.head_dim=16", "net.mlp_dim=32", "net.memory_length=8", "net.torso_out=32",
    "algo.popart=true", "algo.vmpo.update_epochs=2", "algo.vmpo.target_update_period=2", "net.num_tasks=2",
]  # fmt: skip
UPDATES = 3


def main(out: str) -> None:
    axis = distributed.init_from_env()
    torch.set_num_threads(1)
    cfg = load_config("quickstart", OVERRIDES)
    env = envs.make(cfg.env)

    def build():
        torch.manual_seed(0)
        net = AgentNet(cfg.net, tuple(env.observation_shape), env.num_actions)
        return net, make_learner(net, cfg.algo)

    ref_net, reference = build()
    _, learner = build()
    learner.distribute(axis)
    actor = Actor(env, ref_net, torch.device("cpu"))
    reference.actor = actor  # the reference's updates refresh the actor's cache
    columns = torch.arange(axis.rank * 2, axis.rank * 2 + 2)
    ref_metrics, metrics = [], []
    for _ in range(UPDATES):
        torch.manual_seed(1)  # the same actions on every rank
        traj, _ = actor.rollout(cfg.algo.unroll_length)
        traj = dataclasses.replace(traj, task_id=torch.arange(4).remainder(2).expand_as(traj.task_id).clone())
        ref_metrics.append(reference.update(traj))
        metrics.append(learner.update(traj.select(columns)))
    torch.save(
        {
            "sequence": sequence_vmpo(axis),
            "reference": {k: v.detach().clone() for k, v in reference.state_dict().items()},
            "ddp": {k: v.detach().clone() for k, v in learner.state_dict().items()},
            "ref_metrics": ref_metrics,
            "metrics": metrics,
            "digest": distributed.parameter_digest(learner),
        },
        f"{out}/rank{axis.rank}.pt",
    )
    distributed.shutdown(axis)


def sequence_vmpo(axis: distributed.BatchAxis) -> dict[str, torch.Tensor]:
    """The LLM adapter's sequence-level V-MPO on 8 sequences, 4 per rank, against one process on all 8."""
    g = torch.Generator().manual_seed(3)
    seq_lp, adv, valid = (
        torch.randn(8, generator=g),
        torch.randn(8, generator=g),
        torch.rand(8, generator=g) > 0.2,
    )
    ref_lp, ref_eta = seq_lp.clone().requires_grad_(True), torch.tensor(0.7, requires_grad=True)
    ref_loss, _ = vmpo_sample_loss(ref_lp, adv, valid, temperature=Penalty(ref_eta, 0.1), topk_fraction=0.5)
    ref_loss.backward()
    mine = slice(4 * axis.rank, 4 * axis.rank + 4)
    lp, eta = seq_lp[mine].clone().requires_grad_(True), torch.tensor(0.7, requires_grad=True)
    share, _ = vmpo_sample_loss(
        lp, adv[mine], valid[mine], temperature=Penalty(eta, 0.1), topk_fraction=0.5, axis=axis
    )
    share.backward()
    return {
        "ref_loss": ref_loss.detach(), "loss": axis.sum(share),
        "ref_grad": ref_lp.grad[mine], "grad": lp.grad,
        "ref_eta_grad": ref_eta.grad, "eta_grad": axis.sum(eta.grad),
    }  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1])
