"""Parameter counts of the network presets: ``python -m networks.params [--config PATH]``.

Presets (values duplicated from the papers; the YAML presets carry the same numbers):
- atari: V-MPO Atari TrXL (Song et al. 2019; seed 000 section 8): d_model 256, 8 layers, 4 heads x 32,
  MLP 512, memory 64; obs 4x84x84, 18 actions.
- dmlab: GTrXL DMLab-30 (Parisotto et al. 2019): d_model 256, 12 layers, 8 heads x 64, memory 512;
  MLP 512 (not given in seed 000; chosen to match the V-MPO TrXL); obs 3x72x96, 15 actions.
- cpu: quick-start (configs/quickstart.yaml): d_model 64, 2 layers, 2 heads x 32, MLP 128, memory 16;
  vector obs (8 features assumed), 4 actions.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from torch import nn

from configs.schema import NetConfig
from networks.agent_net import AgentNet


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@dataclass(frozen=True)
class Preset:
    net: NetConfig
    obs_shape: tuple[int, ...]
    num_actions: int


def presets() -> dict[str, Preset]:
    atari = NetConfig(d_model=256, num_layers=8, num_heads=4, head_dim=32, mlp_dim=512, memory_length=64)
    dmlab = NetConfig(d_model=256, num_layers=12, num_heads=8, head_dim=64, mlp_dim=512, memory_length=512)
    cpu = NetConfig(
        d_model=64,
        num_layers=2,
        num_heads=2,
        head_dim=32,
        mlp_dim=128,
        memory_length=16,
        torso_out=64,
        lstm_hidden=64,
    )
    return {
        "atari": Preset(atari, (4, 84, 84), 18),
        "dmlab": Preset(dmlab, (3, 72, 96), 15),
        "cpu": Preset(cpu, (8,), 4),
    }


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


def load_net_config(path: str) -> NetConfig:
    """``net:`` section of a YAML preset over the :class:`NetConfig` defaults."""
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    return NetConfig(**(data.get("net") or {}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML preset; its net: section is counted instead of the presets")
    parser.add_argument("--obs-shape", default="4,84,84", help="with --config: observation shape, e.g. 8")
    parser.add_argument("--num-actions", type=int, default=18, help="with --config: number of actions")
    args = parser.parse_args(argv)
    if args.config:
        obs_shape = tuple(int(n) for n in args.obs_shape.split(","))
        named = {args.config: Preset(load_net_config(args.config), obs_shape, args.num_actions)}
    else:
        named = presets()
    print(parameter_table(named))


if __name__ == "__main__":
    main()
