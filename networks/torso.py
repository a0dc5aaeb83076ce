"""Observation encoders (torsos): images -> IMPALA ResNet (or the DQN encoder) or a small grid encoder,
vectors -> MLP.

All take batch-first observations and return [B, torso_out] features after a ReLU.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from configs.schema import NetConfig

IMPALA_CHANNELS = (16, 32, 32)


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(relu(x)))) (Espeholt et al. 2018, Fig. 3)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaStack(nn.Module):
    """conv3x3 -> maxpool 3x3 stride 2 -> 2 residual blocks; halves the spatial size (rounding up)."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.res = nn.Sequential(ResidualBlock(channels), ResidualBlock(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.pool(self.conv(x)))


class ImpalaTorso(nn.Module):
    """IMPALA ResNet (Espeholt et al. 2018, Fig. 3; the V-MPO Atari/DMLab torso): 3 stacks with 16/32/32
    channels (15 conv layers), ReLU, flatten, dense to ``out_dim``, ReLU.

    Input uint8 [B, C, H, W] in [0, 255]; scaled by 1/255 here. Output [B, out_dim].
    """

    def __init__(self, obs_shape: tuple[int, int, int], out_dim: int):
        super().__init__()
        c, h, w = obs_shape
        stacks = []
        for channels in IMPALA_CHANNELS:
            stacks.append(ImpalaStack(c, channels))
            c, h, w = channels, (h + 1) // 2, (w + 1) // 2
        self.stacks = nn.Sequential(*stacks)
        self.fc = nn.Linear(c * h * w, out_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.to(self.fc.weight.dtype) / 255.0  # [B, C, H, W]
        x = torch.relu(self.stacks(x))  # [B, 32, H/8, W/8]
        return torch.relu(self.fc(rearrange(x, "b c h w -> b (c h w)")))


class NatureTorso(nn.Module):
    """The DQN network's encoder (Mnih et al. 2015; CleanRL's Atari PPO): conv 8x8/4 (32), conv 4x4/2
    (64), conv 3x3/1 (64), ReLU after each, flatten, dense to ``out_dim``, ReLU. About 13x cheaper than
    the IMPALA ResNet on 84x84 frames, which is what makes millions of Atari frames possible on a CPU.

    Input uint8 [B, C, H, W] in [0, 255]; scaled by 1/255 here. Output [B, out_dim].
    """

    def __init__(self, obs_shape: tuple[int, int, int], out_dim: int):
        super().__init__()
        c, h, w = obs_shape
        self.convs = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
        )
        for kernel, stride in ((8, 4), (4, 2), (3, 1)):
            h, w = (h - kernel) // stride + 1, (w - kernel) // stride + 1
        if min(h, w) < 1:
            raise ValueError(f"net.torso='nature' needs frames of at least 36x36, got obs_shape={obs_shape}")
        self.fc = nn.Linear(64 * h * w, out_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.convs(obs.to(self.fc.weight.dtype) / 255.0)  # [B, 64, 7, 7] for 84x84
        return torch.relu(self.fc(rearrange(x, "b c h w -> b (c h w)")))


class GridTorso(nn.Module):
    """Encoder for small symbolic grids such as MiniGrid's 7x7x3 (object, colour, state) observations.

    Cell values are *categories* (object 5 is not "more" than object 4), so each channel value is looked
    up in its own embedding table (``C x 256`` entries cover any uint8), the per-channel embeddings are
    concatenated, then two 3x3 convolutions, flatten, dense to ``out_dim``. A small RGB image also works:
    the lookup is then a learned per-intensity code.

    Input integer [B, C, H, W] with values in [0, 255]. Output [B, out_dim].
    """

    NUM_VALUES = 256

    def __init__(self, obs_shape: tuple[int, int, int], out_dim: int, embed_dim: int = 8, channels: int = 32):
        super().__init__()
        c, h, w = obs_shape
        self.embed = nn.Embedding(c * self.NUM_VALUES, embed_dim)
        self.register_buffer("offsets", torch.arange(c).view(1, c, 1, 1) * self.NUM_VALUES, persistent=False)
        self.convs = nn.Sequential(
            nn.Conv2d(c * embed_dim, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
        )
        self.fc = nn.Linear(channels * h * w, out_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        e = self.embed(obs.long() + self.offsets)  # [B, C, H, W, E]
        x = self.convs(rearrange(e, "b c h w e -> b (c e) h w"))
        return torch.relu(self.fc(rearrange(x, "b c h w -> b (c h w)")))


class MLPTorso(nn.Module):
    """Two ReLU layers for vector observations [B, *obs_shape] (float, or int one-hot; flattened)."""

    def __init__(self, obs_shape: tuple[int, ...], out_dim: int):
        super().__init__()
        d_in = 1
        for n in obs_shape:
            d_in *= n
        self.net = nn.Sequential(nn.Linear(d_in, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim), nn.ReLU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.flatten(1).to(self.net[0].weight.dtype))


def make_torso(cfg: NetConfig, obs_shape: tuple[int, ...]) -> nn.Module:
    """Pick the torso named by ``cfg.torso``; ``auto``: [C, H, W] with min(H, W) >= 32 -> impala,
    smaller [C, H, W] -> grid, anything else (vectors) -> mlp."""
    obs_shape = tuple(obs_shape)
    kind = cfg.torso
    if kind == "auto":
        if len(obs_shape) == 3:
            kind = "impala" if min(obs_shape[1:]) >= 32 else "grid"
        else:
            kind = "mlp"
    if kind in ("impala", "nature", "grid") and len(obs_shape) != 3:
        raise ValueError(f"net.torso={kind!r} needs [C, H, W] observations, got obs_shape={obs_shape}")
    if kind == "impala":
        return ImpalaTorso(obs_shape, cfg.torso_out)
    if kind == "nature":
        return NatureTorso(obs_shape, cfg.torso_out)
    if kind == "grid":
        return GridTorso(obs_shape, cfg.torso_out)
    return MLPTorso(obs_shape, cfg.torso_out)
