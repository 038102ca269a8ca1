"""Channel and temporal attention gates: squeeze-and-excitation (1-D, 2-D) and CBAM (1-D).
They rescale features; they do not produce attention maps for `capture_attention`."""
from __future__ import annotations

import torch
from torch import nn

from core.errors import ConfigError
from core.models.blocks._checks import check_int


def _hidden(owner: str, channels: int, reduction: int) -> int:
    check_int(owner, "channels", channels)
    check_int(owner, "reduction", reduction)
    return max(1, channels // reduction)


class SqueezeExcite1d(nn.Module):
    """Squeeze-and-excitation: average over time, a two-layer bottleneck MLP, sigmoid
    gates that rescale each channel.

    Args:
        channels: channels C.
        reduction: the MLP's hidden width is max(1, C // reduction).

    Shape: (B, C, T) -> (B, C, T).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = _hidden("SqueezeExcite1d", channels, reduction)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> squeeze (B, C) -> gates (B, C, 1) -> (B, C, T)
        return x * self.fc(x.mean(dim=-1)).unsqueeze(-1)


class SqueezeExcite2d(nn.Module):
    """Squeeze-and-excitation over (freq, time) planes.

    Args:
        channels: channels C.
        reduction: the MLP's hidden width is max(1, C // reduction).

    Shape: (B, C, F, T) -> (B, C, F, T).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = _hidden("SqueezeExcite2d", channels, reduction)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, F, T) -> squeeze (B, C) -> gates (B, C, 1, 1) -> (B, C, F, T)
        return x * self.fc(x.mean(dim=(-2, -1)))[:, :, None, None]


class CBAM1d(nn.Module):
    """Convolutional block attention module, 1-D: a channel gate from average- and
    max-pooled descriptors through a shared MLP, then a temporal gate from a conv over
    the channel-wise average and max.

    Args:
        channels: channels C.
        reduction: hidden width of the shared MLP is max(1, C // reduction).
        spatial_kernel: odd taps of the temporal gate's conv.

    Shape: (B, C, T) -> (B, C, T).
    """

    def __init__(self, channels: int, reduction: int = 8, spatial_kernel: int = 7) -> None:
        super().__init__()
        hidden = _hidden("CBAM1d", channels, reduction)
        check_int("CBAM1d", "spatial_kernel", spatial_kernel)
        if spatial_kernel % 2 == 0:
            raise ConfigError(f"CBAM1d: spatial_kernel={spatial_kernel} must be odd (e.g. 3, 5, 7)")
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.spatial = nn.Conv1d(2, 1, spatial_kernel, padding=spatial_kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channel gate: (B, C, T) -> (B, C) twice -> (B, C, 1)
        channel_gate = torch.sigmoid(self.mlp(x.mean(dim=-1)) + self.mlp(x.amax(dim=-1))).unsqueeze(-1)
        x = x * channel_gate
        # temporal gate: (B, C, T) -> (B, 2, T) -> (B, 1, T)
        stats = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(stats))
