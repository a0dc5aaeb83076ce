"""One way to build an agent from a config: env shard, network, learner, actor, seeding and precision.

The order matters and is written once, here (the trainer, the benchmarks through the trainer, and the
evaluator's network all come from these functions)::

    make_env(cfg, axis, resumed_updates)   this rank's env slots, reseeded on resume
    build_agent(cfg, env, ...):
      cfg.net.num_tasks = len(env.task_names)   one PopArt value head per task (agent_config)
      torch.manual_seed(train.seed)             the same initial parameters on every rank
      net = build_net(...)                      net.bf16 from train.bf16, before the learner copies the
                                                net (V-MPO's target network is a deepcopy)
      learner = make_learner(net, ...)          optimiser, duals, target network; lr schedule horizon
      restore(checkpoint)                       parameters, optimiser, counters, RNG state
      torch.manual_seed(rank_seed(...))         under torchrun each rank samples its own actions
      learner.distribute(axis)                  DDP: rank 0's parameters broadcast now
      actor = Actor(env, net); learner.actor    the learner refreshes the actor's cache after updates
      (train.overlap: Actor(env, deepcopy(net), own generator); the trainer refreshes it, agent/overlap.py)
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

import envs
from agent.checkpoint import CheckpointError
from agent.distributed import LOCAL, BatchAxis, shard_slots
from agent.learner import Learner, make_learner
from agent.rollout import Actor
from configs import Config
from envs.base import VecEnv
from networks.agent_net import AgentNet
from networks.precision import resolve_bf16

__all__ = ["Agent", "agent_config", "build_agent", "build_net", "make_env", "rank_seed", "restore"]

RESUME_SEED_STRIDE = 10_007  # a resumed run's seeds move by this per update already done
RANK_SEED_STRIDE = 7_919  # rank r's torch seed is train.seed + r * this (+ the resume offset)
ACTOR_SEED_OFFSET = 104_729  # train.overlap: the actor thread's generator seed is the rank's seed + this


@dataclass
class Agent:
    """What :func:`build_agent` returns; ``net`` is shared by the actor and the learner (with
    ``train.overlap`` the actor acts on its own copy, ``actor.net``)."""

    cfg: Config  # the run's config with net.num_tasks set to the env's task count
    net: AgentNet
    learner: Learner
    actor: Actor


def rank_seed(seed: int, rank: int, num_updates: int) -> int:
    """The torch seed of data-parallel rank ``rank`` of a run resumed after ``num_updates`` updates."""
    return seed + RANK_SEED_STRIDE * rank + RESUME_SEED_STRIDE * num_updates


def make_env(cfg: Config, axis: BatchAxis = LOCAL, *, resumed_updates: int = 0) -> VecEnv:
    """This rank's shard of ``env.num_envs`` (global slots ``[first, first + n)``, ``shard_slots``).

    A resumed run cannot restore the emulators' state: it reseeds them (``env.seed + 10_007 *
    updates done``) so that it does not replay the episodes of the first segment.
    """
    num_envs, first_slot = shard_slots(cfg.env.num_envs, axis)
    seed = cfg.env.seed + RESUME_SEED_STRIDE * resumed_updates
    return envs.make(dataclasses.replace(cfg.env, seed=seed), range(first_slot, first_slot + num_envs))


def agent_config(cfg: Config, task_names: Sequence[str]) -> Config:
    """``cfg`` with one PopArt value head per task (``net.num_tasks = len(task_names)``)."""
    if cfg.net.num_tasks == len(task_names):
        return cfg
    return dataclasses.replace(cfg, net=dataclasses.replace(cfg.net, num_tasks=len(task_names)))


def build_net(
    cfg: Config, obs_shape: Sequence[int], num_actions: int, *, device: torch.device | str
) -> AgentNet:
    """The :class:`AgentNet` of ``cfg`` on ``device``, its body precision (``net.bf16``) resolved from
    ``train.bf16`` for that device: training, benchmarks and evaluation act in the same precision."""
    net = AgentNet(cfg.net, tuple(obs_shape), num_actions).to(device)
    net.bf16 = resolve_bf16(cfg.train.bf16, device)
    return net


def restore(learner: Learner, checkpoint: dict[str, Any], env: VecEnv) -> None:
    """Load a training checkpoint into ``learner`` and the torch RNG; refuse another env's spec."""
    expected = (list(env.observation_shape), env.num_actions)
    found = (list(checkpoint["obs_shape"]), int(checkpoint["num_actions"]))
    if expected != found:
        raise CheckpointError(f"checkpoint was trained on obs/actions {found}, this env has {expected}")
    learner.load_training_state(checkpoint["learner"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if torch.cuda.is_available() and checkpoint["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])


def build_agent(
    cfg: Config,
    env: VecEnv,
    *,
    device: torch.device,
    axis: BatchAxis = LOCAL,
    checkpoint: dict[str, Any] | None = None,
) -> Agent:
    """Network, learner and actor for ``env`` (this rank's shard), in the order the module docstring
    draws; ``checkpoint`` (a training checkpoint's payload) resumes the learner and the RNG."""
    cfg = agent_config(cfg, env.task_names)
    torch.manual_seed(cfg.train.seed)  # the same initial parameters on every rank
    net = build_net(cfg, env.observation_shape, env.num_actions, device=device)
    learner = make_learner(net, cfg.algo, task_names=env.task_names).to(device)  # .to keeps Adam's params
    # the linear lr schedule's horizon, fixed at the start of the run (a resumed run restores its own)
    learner.lr_horizon = cfg.algo.lr_anneal_steps or cfg.train.total_steps
    resumed_updates = 0
    if checkpoint is not None:
        restore(learner, checkpoint, env)
        resumed_updates = int(checkpoint["counters"]["num_updates"])
    if axis.distributed:  # each rank samples its own actions
        torch.manual_seed(rank_seed(cfg.train.seed, axis.rank, resumed_updates))
        learner.distribute(axis)
    if cfg.train.overlap:  # acts one update behind on its own copy (agent/overlap.py)
        actor = Actor(env, copy.deepcopy(net).requires_grad_(False).eval(), device,
                      generator=actor_generator(cfg, axis, resumed_updates, device))  # fmt: skip
        learner.lagged_actor = True
    else:
        actor = Actor(env, net, device)
        learner.actor = actor  # its cached memory is re-projected after every update
    return Agent(cfg=cfg, net=net, learner=learner, actor=actor)


def actor_generator(
    cfg: Config, axis: BatchAxis, resumed_updates: int, device: torch.device
) -> torch.Generator:
    """The action sampler of an actor on its own thread: seeded per rank and resume, as the envs are."""
    seed = rank_seed(cfg.train.seed, axis.rank, resumed_updates) + ACTOR_SEED_OFFSET
    return torch.Generator(device=device).manual_seed(seed)
