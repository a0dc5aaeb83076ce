"""Checkpoint -> network ready to act: the config it was trained with, its weights and its env spec.

The checkpoint is read with ``agent.checkpoint.load_checkpoint`` (plain data, ``weights_only``; a run
directory falls back past a corrupt newest checkpoint, as resuming does); the network is built as training
built it (``agent.builder.build_net``: one PopArt head per task, ``train.bf16`` resolved for the device)
and takes the Learner's ``net.`` entries. Every problem is a one-line :class:`CheckpointError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agent.builder import agent_config, build_net
from agent.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, load_latest_valid
from configs import Config, ConfigError, config_from_dict
from networks.agent_net import AgentNet

NET_PREFIX = "net."
REQUIRED_KEYS = ("config", "learner", "obs_shape", "num_actions", "task_names")


@dataclass
class LoadedAgent:
    """A trained network and what it was trained on."""

    path: Path  # the checkpoint file
    cfg: Config
    net: AgentNet  # in eval mode, on the requested device
    obs_shape: tuple[int, ...]
    num_actions: int
    task_names: list[str]
    global_step: int  # env steps of training (0 if the checkpoint does not say)

    @property
    def own_games(self) -> list[str]:
        """The games the agent was trained on: all its tasks if several, else its config's ``env.name``."""
        return list(self.task_names) if len(self.task_names) > 1 else [self.cfg.env.name]


def _network_state(path: Path, payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    learner = payload["learner"]
    module = learner.get("module") if isinstance(learner, dict) else None
    if not isinstance(module, dict):
        raise CheckpointError(f"checkpoint '{path}' has no learner module state ('learner' -> 'module')")
    state = {k.removeprefix(NET_PREFIX): v for k, v in module.items() if k.startswith(NET_PREFIX)}
    if not state:
        raise CheckpointError(f"checkpoint '{path}' holds no network parameters ('{NET_PREFIX}*' keys)")
    return state


def load_agent(path: str | Path, device: torch.device | str = "cpu") -> LoadedAgent:
    """A checkpoint file, or the newest loadable checkpoint of a run directory, as an :class:`AgentNet`.

    Like a resumed training run, a run directory whose newest checkpoint is corrupt falls back to an older
    one (a one-line warning on stderr names both); a checkpoint file given by name is loaded or refused.
    """
    path = Path(path)
    if path.is_dir():
        latest_checkpoint(path)  # a clear error for a directory without checkpoints
        path, payload = load_latest_valid(path)
    else:
        path = latest_checkpoint(path)  # a clear error for a path that does not exist
        payload = load_checkpoint(path, map_location="cpu")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint '{path}' lacks {', '.join(missing)}; is it a training checkpoint?")
    try:
        cfg = config_from_dict(payload["config"], source=f"checkpoint '{path}'")
    except ConfigError as err:
        raise CheckpointError(f"checkpoint '{path}' has an invalid config: {err}") from None
    obs_shape = tuple(int(d) for d in payload["obs_shape"])
    num_actions = int(payload["num_actions"])
    task_names = [str(t) for t in payload["task_names"]]
    cfg = agent_config(cfg, task_names)
    net = build_net(cfg, obs_shape, num_actions, device=device)  # the precision training acted in
    try:
        net.load_state_dict(_network_state(path, payload))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint '{path}' does not match its network config ({first})") from None
    counters = payload.get("counters") or {}
    return LoadedAgent(
        path=path,
        cfg=cfg,
        net=net.eval(),
        obs_shape=obs_shape,
        num_actions=num_actions,
        task_names=task_names,
        global_step=int(counters.get("global_step", 0)),
    )
