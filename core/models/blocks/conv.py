"""Convolution variants from the CNN design guide, 1-D: dilated (optionally causal),
grouped, depthwise-separable and transposed, and `conv1d(kind, ...)`, which lets a zoo model
offer the first three as a hyperparameter (`conv: standard | depthwise_separable | grouped`).

Transposed convolution upsamples; no classifier in the zoo upsamples (they all end in
pooling), so TransposedConv1d is deliberately left out of the zoo: it is here for decoders,
segmentation heads and autoencoders built on these blocks (see docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ConfigError
from core.models.blocks._checks import check_divisible, check_int


class DilatedConv1d(nn.Module):
    """A Conv1d with dilation that keeps the length (stride 1).

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        kernel_size: taps per filter (>= 1).
        dilation: gap between taps; the receptive field is (kernel_size - 1) * dilation + 1.
        causal: pad on the left only, so output t sees inputs <= t (TCN style).
        groups: channel groups (in_channels for a depthwise conv).
        stride: step between outputs; the length becomes ceil(T / stride).

    Shape: (B, C_in, T) -> (B, C_out, ceil(T / stride)), e.g. (8, 6, 128) -> (8, 32, 128).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 dilation: int = 1, causal: bool = False, bias: bool = True, groups: int = 1,
                 stride: int = 1) -> None:
        super().__init__()
        owner = "DilatedConv1d"
        check_int(owner, "in_channels", in_channels)
        check_int(owner, "out_channels", out_channels)
        check_int(owner, "kernel_size", kernel_size)
        check_int(owner, "dilation", dilation)
        check_int(owner, "groups", groups)
        check_int(owner, "stride", stride)
        check_divisible(owner, "in_channels", in_channels, "groups", groups)
        check_divisible(owner, "out_channels", out_channels, "groups", groups)
        self.causal = causal
        total_pad = (kernel_size - 1) * dilation
        # causal: all padding on the left; otherwise split (extra tap on the right)
        self.pad = (total_pad, 0) if causal else (total_pad // 2, total_pad - total_pad // 2)
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias, groups=groups,
                              stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, T) -> (B, C_out, ceil(T / stride))
        return self.conv(F.pad(x, self.pad))


class GroupedConv1d(nn.Module):
    """A Conv1d whose channels are split into `groups` independent groups
    (groups times fewer weights than a dense conv).

    Args:
        in_channels: input channels, divisible by groups.
        out_channels: output channels, divisible by groups.
        kernel_size: taps per filter; length is kept ("same" padding) at stride 1.
        groups: number of channel groups.
        stride: step between outputs; the length becomes ceil(T / stride).

    Shape: (B, C_in, T) -> (B, C_out, ceil(T / stride)), e.g. (8, 32, 128) -> (8, 64, 128) with groups=4.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, groups: int = 2,
                 bias: bool = True, stride: int = 1) -> None:
        super().__init__()
        owner = "GroupedConv1d"
        check_int(owner, "in_channels", in_channels)
        check_int(owner, "out_channels", out_channels)
        check_int(owner, "kernel_size", kernel_size)
        check_int(owner, "groups", groups)
        check_divisible(owner, "in_channels", in_channels, "groups", groups)
        check_divisible(owner, "out_channels", out_channels, "groups", groups)
        self.conv = DilatedConv1d(in_channels, out_channels, kernel_size, bias=bias, groups=groups, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, T) -> (B, C_out, ceil(T / stride))
        return self.conv(x)


class DepthwiseSeparableConv1d(nn.Module):
    """Depthwise conv (one filter per channel) then a pointwise 1x1 conv that mixes
    channels: about kernel_size times cheaper than a dense conv of the same shape.

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        kernel_size: depthwise taps; length is kept ("same" padding) at stride 1.
        dilation: depthwise dilation.
        causal: pad the depthwise conv on the left only (output t sees inputs <= t).
        stride: depthwise stride; the length becomes ceil(T / stride).

    Shape: (B, C_in, T) -> (B, C_out, ceil(T / stride)), e.g. (8, 16, 128) -> (8, 32, 128).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 bias: bool = True, causal: bool = False, stride: int = 1) -> None:
        super().__init__()
        owner = "DepthwiseSeparableConv1d"
        check_int(owner, "in_channels", in_channels)
        check_int(owner, "out_channels", out_channels)
        check_int(owner, "kernel_size", kernel_size)
        check_int(owner, "dilation", dilation)
        self.depthwise = DilatedConv1d(in_channels, in_channels, kernel_size, dilation, causal=causal, bias=bias,
                                       groups=in_channels, stride=stride)
        self.pointwise = nn.Conv1d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, T) -> (B, C_in, T') -> (B, C_out, T')
        return self.pointwise(self.depthwise(x))


class TransposedConv1d(nn.Module):
    """Learned upsampling by an integer factor (a ConvTranspose1d sized so the output is
    exactly `stride` times longer).

    Args:
        in_channels: input channels C_in.
        out_channels: output channels C_out.
        stride: upsampling factor (>= 1).
        kernel_size: taps, at least `stride`; `kernel_size - stride` must be even so the
            padding is symmetric (e.g. stride 2 with kernel 2 or 4).

    Shape: (B, C_in, T) -> (B, C_out, T * stride), e.g. (8, 32, 64) -> (8, 16, 128).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, kernel_size: int = 4,
                 bias: bool = True) -> None:
        super().__init__()
        owner = "TransposedConv1d"
        check_int(owner, "in_channels", in_channels)
        check_int(owner, "out_channels", out_channels)
        check_int(owner, "stride", stride)
        check_int(owner, "kernel_size", kernel_size, low=stride)
        if (kernel_size - stride) % 2:
            raise ConfigError(f"{owner}: kernel_size={kernel_size} with stride={stride}: kernel_size - stride "
                              f"must be even for an output exactly stride times longer "
                              f"(e.g. kernel_size {stride} or {stride + 2})")
        # L_out = (T - 1) * stride - 2 * padding + kernel_size = T * stride
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride,
                                       padding=(kernel_size - stride) // 2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, T) -> (B, C_out, T * stride)
        return self.conv(x)


CONV_KINDS = ("standard", "depthwise_separable", "grouped")


def conv1d(kind: str, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
           causal: bool = False, groups: int = 4, bias: bool = False) -> nn.Module:
    """A length-keeping 1-D conv of the chosen kind (the zoo's `conv` hyperparameter):
    "standard" (DilatedConv1d, dense), "depthwise_separable" (about kernel_size times cheaper)
    or "grouped" (`groups` times fewer weights). (B, C_in, T) -> (B, C_out, ceil(T / stride))."""
    if kind == "standard":
        return DilatedConv1d(in_channels, out_channels, kernel_size, dilation, causal=causal, bias=bias, stride=stride)
    if kind == "depthwise_separable":
        return DepthwiseSeparableConv1d(in_channels, out_channels, kernel_size, dilation, bias=bias, causal=causal,
                                        stride=stride)
    if kind == "grouped":
        if dilation != 1 or causal:
            return DilatedConv1d(in_channels, out_channels, kernel_size, dilation, causal=causal, bias=bias,
                                 groups=groups, stride=stride)
        return GroupedConv1d(in_channels, out_channels, kernel_size, groups=groups, bias=bias, stride=stride)
    raise ConfigError(f"conv={kind!r} is not a known convolution; use one of {', '.join(CONV_KINDS)}")
