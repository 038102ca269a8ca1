"""ConvNeXt-1D block and stochastic depth (DropPath)."""
from __future__ import annotations

import torch
from torch import nn

from core.models.blocks._checks import check_int, check_prob


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch for a random subset of
    examples and scale the rest by 1 / (1 - p); identity in eval.

    Args:
        drop_prob: probability of dropping the branch per example, in [0, 1).

    Shape: (B, ...) -> (B, ...).
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = check_prob("DropPath", "drop_prob", drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, ...) -> (B, ...)
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class ConvNeXtBlock1d(nn.Module):
    """ConvNeXt block for sequences: depthwise large-kernel conv, LayerNorm over
    channels, pointwise MLP (x mlp_ratio, GELU), LayerScale, DropPath, residual.

    Args:
        channels: channels C (kept).
        kernel_size: depthwise taps; length is kept ("same" padding).
        mlp_ratio: hidden width of the pointwise MLP is mlp_ratio * C.
        layer_scale_init: initial value of the per-channel LayerScale (0 = no LayerScale).
        drop_path: stochastic-depth probability of the residual branch.

    Shape: (B, C, T) -> (B, C, T), e.g. (8, 64, 128) -> (8, 64, 128).
    """

    def __init__(self, channels: int, kernel_size: int = 7, mlp_ratio: int = 4,
                 layer_scale_init: float = 1e-6, drop_path: float = 0.0) -> None:
        super().__init__()
        owner = "ConvNeXtBlock1d"
        check_int(owner, "channels", channels)
        check_int(owner, "kernel_size", kernel_size)
        check_int(owner, "mlp_ratio", mlp_ratio)
        check_prob(owner, "drop_path", drop_path)
        self.dwconv = nn.Conv1d(channels, channels, kernel_size, padding="same", groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.pwconv1 = nn.Linear(channels, mlp_ratio * channels)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(mlp_ratio * channels, channels)
        self.gamma = nn.Parameter(torch.full((channels,), float(layer_scale_init))) if layer_scale_init > 0 else None
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> dwconv (B, C, T) -> (B, T, C) -> MLP (B, T, C) -> (B, C, T) + x
        h = self.dwconv(x).transpose(1, 2)
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        if self.gamma is not None:
            h = h * self.gamma
        return x + self.drop_path(h.transpose(1, 2))
