"""One way to build an agent from a config: env shard, network, learner, actor, seeding and precision.

The order matters and is written once, here (the trainer, the benchmarks through the trainer, and the
evaluator's network all come from these functions)::

    thread_split(cfg)                      torch threads of learner and actor thread, envpool's workers
                                           (train.torch_threads=0: split_cores of this process's cores)
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
import os
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

__all__ = [
    "Agent",
    "ThreadSplit",
    "agent_config",
    "build_agent",
    "build_net",
    "make_env",
    "rank_seed",
    "restore",
    "split_cores",
    "thread_split",
    "usable_cores",
]

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


@dataclass(frozen=True)
class ThreadSplit:
    """Thread counts of one training process (0 = the library's default)."""

    learner: int  # torch intra-op threads of the main thread (the learner; also the actor without overlap)
    actor: int  # torch intra-op threads of the actor thread (train.overlap)
    envs: int  # envpool worker threads (env.num_threads)


def split_cores(cores: int, overlap: bool) -> ThreadSplit:
    """The rule of ``train.torch_threads=0``: how ``cores`` usable cores are shared.

    Without overlap one thread acts, steps the envs and learns in turn, and envpool's workers run only
    while it waits in ``env.step``: nothing runs beside the learner, so it and envpool may each use every
    core (what torch's own default gave before this rule). With ``train.overlap`` the learner runs beside
    the acting side, whose two parts take turns (the actor thread waits while envpool steps): the cores
    are halved between the learner and the acting side, an odd one to the learner, the larger part on the
    presets. So on 2 cores: learner 1, actor 1, envpool 1 with overlap; learner 2, envpool 2 without.
    A machine shared with other jobs (two runs at a time) needs ``train.torch_threads=1``: torch's OpenMP
    threads wait for each other at every op, and a learner with more threads than free cores crawls
    (40-60x slower per iteration, docs/performance.md "Threads").
    """
    cores = max(1, cores)
    if not overlap:
        return ThreadSplit(learner=cores, actor=cores, envs=cores)  # the actor is the learner's thread
    acting = max(1, cores // 2)
    return ThreadSplit(learner=max(1, cores - acting), actor=acting, envs=acting)


def usable_cores() -> int:
    """Cores this process may use: its CPU affinity (taskset, cgroup cpusets), divided among the local
    ranks ``torchrun`` started (``LOCAL_WORLD_SIZE``), at most ``OMP_NUM_THREADS`` where that is set
    (torchrun sets it to 1 for several ranks, as a user may)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cores //= max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        cores = min(cores, int(omp))
    return max(1, cores)


def thread_split(cfg: Config, cores: int | None = None) -> ThreadSplit:
    """The thread counts of ``cfg``: with ``train.torch_threads > 0`` the config's own (learner
    ``torch_threads``, actor ``train.actor_threads``, envpool ``env.num_threads``); with 0,
    :func:`split_cores` of ``cores`` (default :func:`usable_cores`), but an ``env.num_threads > 0`` wins."""
    if cfg.train.torch_threads:
        return ThreadSplit(cfg.train.torch_threads, cfg.train.actor_threads, cfg.env.num_threads)
    split = split_cores(usable_cores() if cores is None else cores, cfg.train.overlap)
    return dataclasses.replace(split, envs=cfg.env.num_threads or split.envs)


def make_env(cfg: Config, axis: BatchAxis = LOCAL, *, resumed_updates: int = 0) -> VecEnv:
    """This rank's shard of ``env.num_envs`` (global slots ``[first, first + n)``, ``shard_slots``), with
    the envpool worker threads of :func:`thread_split`.

    A resumed run cannot restore the emulators' state: it reseeds them (``env.seed + 10_007 *
    updates done``) so that it does not replay the episodes of the first segment.
    """
    num_envs, first_slot = shard_slots(cfg.env.num_envs, axis)
    seed = cfg.env.seed + RESUME_SEED_STRIDE * resumed_updates
    env_cfg = dataclasses.replace(cfg.env, seed=seed, num_threads=thread_split(cfg).envs)
    return envs.make(env_cfg, range(first_slot, first_slot + num_envs))


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
