"""Residual blocks, 1-D (signals) and 2-D (time-frequency images): basic
(conv-BN-ReLU-conv-BN + skip, then ReLU) and bottleneck (1x1 reduce, kxk, 1x1 expand)."""
from __future__ import annotations

import torch
from torch import nn

from core.errors import ConfigError
from core.models.blocks._checks import check_choice, check_divisible, check_int
from core.models.blocks.conv import CONV_KINDS, conv1d
from core.models.blocks.dropout import dropout_layer


def _pair(owner: str, name: str, value: int | tuple[int, int]) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2:
        raise ConfigError(f"{owner}: {name}={value!r} must be an int or a pair (freq, time)")
    for v in pair:
        check_int(owner, name, v)
    return pair  # type: ignore[return-value]


def _odd(owner: str, name: str, kernel: tuple[int, ...]) -> None:
    if any(k % 2 == 0 for k in kernel):
        raise ConfigError(f"{owner}: {name}={kernel if len(kernel) > 1 else kernel[0]} must be odd "
                          f"so padding keeps the length centred (e.g. 3, 5, 7)")


def _conv1d(kind: str, in_ch: int, out_ch: int, kernel_size: int, stride: int, groups: int) -> nn.Module:
    """The block's k-tap conv: a plain nn.Conv1d for "standard" (so trained weights keep their
    names), else core.models.blocks.conv.conv1d of that kind."""
    if kind == "standard":
        return nn.Conv1d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
    return conv1d(kind, in_ch, out_ch, kernel_size, stride=stride, groups=groups)


def _shortcut(conv: type, norm: type, in_ch: int, out_ch: int, stride) -> nn.Module:
    """Identity, or a strided 1x1 conv + BN when channels or length change."""
    if in_ch == out_ch and stride in (1, (1, 1)):
        return nn.Identity()
    return nn.Sequential(conv(in_ch, out_ch, 1, stride=stride, bias=False), norm(out_ch))


class BasicBlock1d(nn.Module):
    """conv(k)-BN-ReLU-conv(k)-BN + shortcut, then ReLU (ResNet-18/34 style).

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out (the shortcut gets a 1x1 conv when they differ).
        kernel_size: odd taps per conv.
        stride: stride of the first conv; the length becomes ceil(T / stride).
        dropout: dropout between the two convs (0 = none).
        conv: "standard", "depthwise_separable" or "grouped" k-tap convs (core.models.blocks.conv).
        groups: channel groups of "grouped" convs (in and out channels divisible by it).

    Shape: (B, C_in, T) -> (B, C_out, ceil(T / stride)), e.g. (8, 32, 128) -> (8, 64, 64) with stride 2.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dropout: float = 0.0, conv: str = "standard", groups: int = 4) -> None:
        super().__init__()
        owner = "BasicBlock1d"
        check_int(owner, "in_channels", in_channels)
        check_int(owner, "out_channels", out_channels)
        check_int(owner, "kernel_size", kernel_size)
        check_int(owner, "stride", stride)
        check_choice(owner, "conv", conv, CONV_KINDS)
        _odd(owner, "kernel_size", (kernel_size,))
        self.conv1 = _conv1d(conv, in_channels, out_channels, kernel_size, stride, groups)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.drop = dropout_layer(dropout)
        self.conv2 = _conv1d(conv, out_channels, out_channels, kernel_size, 1, groups)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.shortcut = _shortcut(nn.Conv1d, nn.BatchNorm1d, in_channels, out_channels, stride)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, T) -> (B, C_out, ceil(T / stride))
        out = self.drop(self.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck1d(nn.Module):
    """1x1 reduce - BN-ReLU - conv(k) - BN-ReLU - 1x1 expand - BN + shortcut, then ReLU.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out, divisible by `reduction`.
        kernel_size: odd taps of the middle conv.
        stride: stride of the middle conv; the length becomes ceil(T / stride).
        reduction: width of the middle conv is out_channels // reduction (ResNet-50 uses 4).
        conv: the middle conv: "standard", "depthwise_separable" or "grouped" (ResNeXt-style).
        groups: channel groups of a "grouped" middle conv (the middle width divisible by it).

    Shape: (B, C_in, T) -> (B, C_out, ceil(T / stride)), e.g. (8, 64, 128) -> (8, 128, 64).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 reduction: int = 4, conv: str = "standard", groups: int = 4) -> None:
        super().__init__()
        owner = "Bottleneck1d"
        check_int(owner, "in_channels", in_channels)
        check_int(owner, "out_channels", out_channels)
        check_int(owner, "kernel_size", kernel_size)
        check_int(owner, "stride", stride)
        check_int(owner, "reduction", reduction)
        check_choice(owner, "conv", conv, CONV_KINDS)
        _odd(owner, "kernel_size", (kernel_size,))
        check_divisible(owner, "out_channels", out_channels, "reduction", reduction)
        mid = out_channels // reduction
        self.reduce = nn.Sequential(nn.Conv1d(in_channels, mid, 1, bias=False), nn.BatchNorm1d(mid), nn.ReLU())
        self.conv = nn.Sequential(_conv1d(conv, mid, mid, kernel_size, stride, groups), nn.BatchNorm1d(mid), nn.ReLU())
        self.expand = nn.Sequential(nn.Conv1d(mid, out_channels, 1, bias=False), nn.BatchNorm1d(out_channels))
        self.shortcut = _shortcut(nn.Conv1d, nn.BatchNorm1d, in_channels, out_channels, stride)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, T) -> (B, mid, T) -> (B, mid, T') -> (B, C_out, T')
        return self.relu(self.expand(self.conv(self.reduce(x))) + self.shortcut(x))


class BasicBlock2d(nn.Module):
    """2-D basic block for (freq, time) images; kernels may be rectangular, e.g. (3, 5).

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        kernel_size: odd (freq, time) taps, or one odd int for both.
        stride: (freq, time) stride of the first conv, or one int for both.
        dropout: 2-D dropout between the convs (0 = none).

    Shape: (B, C_in, F, T) -> (B, C_out, ceil(F / sf), ceil(T / st)),
    e.g. (8, 16, 20, 63) -> (8, 32, 10, 32) with stride 2.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int] = (3, 5),
                 stride: int | tuple[int, int] = 1, dropout: float = 0.0) -> None:
        super().__init__()
        owner = "BasicBlock2d"
        check_int(owner, "in_channels", in_channels)
        check_int(owner, "out_channels", out_channels)
        kernel = _pair(owner, "kernel_size", kernel_size)
        stride = _pair(owner, "stride", stride)
        _odd(owner, "kernel_size", kernel)
        pad = (kernel[0] // 2, kernel[1] // 2)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.drop = dropout_layer(dropout, nn.Dropout2d)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = _shortcut(nn.Conv2d, nn.BatchNorm2d, in_channels, out_channels, stride)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, F, T) -> (B, C_out, F', T')
        out = self.drop(self.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck2d(nn.Module):
    """2-D bottleneck: 1x1 reduce, (kf, kt) conv, 1x1 expand, + shortcut, then ReLU.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out, divisible by `reduction`.
        kernel_size: odd (freq, time) taps of the middle conv, or one odd int.
        stride: (freq, time) stride of the middle conv, or one int.
        reduction: middle width is out_channels // reduction.

    Shape: (B, C_in, F, T) -> (B, C_out, ceil(F / sf), ceil(T / st)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int] = 3,
                 stride: int | tuple[int, int] = 1, reduction: int = 4) -> None:
        super().__init__()
        owner = "Bottleneck2d"
        check_int(owner, "in_channels", in_channels)
        check_int(owner, "out_channels", out_channels)
        check_int(owner, "reduction", reduction)
        kernel = _pair(owner, "kernel_size", kernel_size)
        stride = _pair(owner, "stride", stride)
        _odd(owner, "kernel_size", kernel)
        check_divisible(owner, "out_channels", out_channels, "reduction", reduction)
        mid = out_channels // reduction
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU())
        self.conv = nn.Sequential(nn.Conv2d(mid, mid, kernel, stride=stride, padding=(kernel[0] // 2, kernel[1] // 2),
                                            bias=False), nn.BatchNorm2d(mid), nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(mid, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.shortcut = _shortcut(nn.Conv2d, nn.BatchNorm2d, in_channels, out_channels, stride)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, F, T) -> (B, C_out, F', T')
        return self.relu(self.expand(self.conv(self.reduce(x))) + self.shortcut(x))
