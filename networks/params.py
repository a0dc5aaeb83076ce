"""Parameter counts of the network presets: ``python -m networks.params [--config NAME ...]``.

The numbers come from the YAML presets in ``configs/`` (one source of truth); the observation shape and
action count of each preset's environment are stated here, since networks never build environments:
- atari_vmpo: V-MPO single-task Atari TrXL (Song et al. 2019, appendix: network architecture and
  hyperparameters), obs 4x84x84, 18 actions (full set).
- dmlab_vmpo: GTrXL DMLab core (Parisotto et al. 2019), obs 3x72x96, 15 actions (IMPALA action set).
- quickstart: the CPU quick-start on cue recall, obs [5], 4 actions.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from torch import nn

from configs import load_config
from configs.schema import NetConfig
from networks.agent_net import AgentNet

PRESET_SPACES: dict[str, tuple[tuple[int, ...], int]] = {
    "atari_vmpo": ((4, 84, 84), 18),
    "dmlab_vmpo": ((3, 72, 96), 15),
    "quickstart": ((5,), 4),
}


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@dataclass(frozen=True)
class Preset:
    net: NetConfig
    obs_shape: tuple[int, ...]
    num_actions: int


def presets(names: list[str] | None = None) -> dict[str, Preset]:
    """The ``net`` sections of the named YAML presets (default: those in ``PRESET_SPACES``)."""
    named = {}
    for name in names or list(PRESET_SPACES):
        obs_shape, num_actions = PRESET_SPACES.get(name, ((4, 84, 84), 18))
        named[name] = Preset(load_config(name).net, obs_shape, num_actions)
    return named


def parameter_row(name: str, preset: Preset) -> str:
    cfg = preset.net
    net = AgentNet(cfg, preset.obs_shape, preset.num_actions)
    parts = [net.torso, net.input_proj, net.core, nn.ModuleList([net.policy, net.popart])]
    counts = [count_parameters(m) for m in parts]
    heads = f"{cfg.num_heads}x{cfg.head_dim}"
    obs = "x".join(map(str, preset.obs_shape))
    cells = [
        name,
        cfg.core,
        cfg.d_model,
        cfg.num_layers,
        heads,
        cfg.mlp_dim,
        cfg.memory_length,
        obs,
        preset.num_actions,
        *(f"{c:,}" for c in counts),
        f"{count_parameters(net):,}",
    ]
    return "| " + " | ".join(map(str, cells)) + " |"


def parameter_table(named: dict[str, Preset]) -> str:
    """Markdown table of parameter counts, one row per preset."""
    header = (
        "| preset | core | d_model | layers | heads x dim | MLP | memory M | obs | actions | torso "
        "| input proj | core params | heads | total |"
    )
    rule = "|" + "---|" * (header.count("|") - 1)
    return "\n".join([header, rule, *(parameter_row(n, p) for n, p in named.items())])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="*", help="preset names or YAML paths (default: the paper presets)")
    args = parser.parse_args(argv)
    print(parameter_table(presets(args.config)))


if __name__ == "__main__":
    main()
