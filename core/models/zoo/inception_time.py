"""inception_time: InceptionTime (Ismail Fawaz et al. 2020), the deep time-series
classification reference — Inception modules (a 1x1 bottleneck, three parallel long convs
and a max-pool branch, concatenated), a residual shortcut every three modules, global
average pooling and a linear head. One network here; the paper's ensemble of five is an
ensemble of five runs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.base import ZooModel
from core.models.blocks._checks import check_int, check_prob
from core.models.blocks.conv import DilatedConv1d
from core.models.blocks.dropout import dropout_layer
from core.models.registry import HParam, ModelSpec, register

MODULES_PER_SHORTCUT = 3  # the paper adds a residual shortcut after every third module


def branch_kernels(kernel_size: int) -> tuple[int, int, int]:
    """The three parallel conv lengths, longest first, as the paper's code derives them
    (kernel_size // 2**i): 40 -> (40, 20, 10)."""
    return tuple(kernel_size // 2 ** i for i in range(3))


class MaxPoolSame1d(nn.Module):
    """Max over `kernel_size` neighbours (odd), stride 1, the length kept (edges padded with -inf).

    Computed as a 2-D pool over a height-1 map: torch.export (torch 2.13) specializes the time
    axis of `max_pool1d` to the exported length, which would fix an exported model's window
    length; `max_pool2d` keeps it dynamic and gives the same numbers.

    Shape: (B, C, T) -> (B, C, T).
    """

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, C, 1, T) -> (B, C, T)
        pooled = F.max_pool2d(x.unsqueeze(2), (1, self.kernel_size), stride=1, padding=(0, self.kernel_size // 2))
        return pooled.squeeze(2)


class InceptionModule(nn.Module):
    """Bottleneck 1x1 conv (skipped on a single-channel input, as in the paper's code), three
    parallel "same"-padded convs of lengths `kernel_sizes` on its output, and a
    max-pool(3) + 1x1 conv branch on the module's input; the four maps are concatenated,
    then BatchNorm + ReLU. Convs carry no bias (BatchNorm follows).

    The paper's BatchNorm over the concatenation is kept as one BatchNorm per branch: BatchNorm
    is per channel, so the two are the same function in training and in eval, and each branch's
    norm then directly follows its conv, which export folds into the conv (core/deploy/export.py).

    Shape: (B, C_in, T) -> (B, 4 * filters, T) for every T >= 1, e.g. (8, 1, 251) -> (8, 128, 251).
    """

    def __init__(self, in_channels: int, filters: int, bottleneck: int, kernel_sizes: tuple[int, ...]) -> None:
        super().__init__()
        use_bottleneck = in_channels > 1
        self.bottleneck = nn.Conv1d(in_channels, bottleneck, 1, bias=False) if use_bottleneck else nn.Identity()
        width = bottleneck if use_bottleneck else in_channels
        # DilatedConv1d at dilation 1 pads (k - 1) // 2 left and k // 2 right: length kept for even k too
        self.convs = nn.ModuleList([nn.Sequential(DilatedConv1d(width, filters, k, bias=False),
                                                  nn.BatchNorm1d(filters)) for k in kernel_sizes])
        self.pool_branch = nn.Sequential(MaxPoolSame1d(3), nn.Conv1d(in_channels, filters, 1, bias=False),
                                         nn.BatchNorm1d(filters))
        self.out_channels = filters * (len(kernel_sizes) + 1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, T) -> 4 x (B, filters, T), each normalized -> (B, 4 * filters, T)
        squeezed = self.bottleneck(x)
        maps = [conv(squeezed) for conv in self.convs] + [self.pool_branch(x)]
        return self.act(torch.cat(maps, dim=1))


class InceptionBlock(nn.Module):
    """Up to three Inception modules in a row, and (when `residual`) a 1x1 conv + BatchNorm
    shortcut from the block's input added to their output, then ReLU.

    Shape: (B, C_in, T) -> (B, 4 * filters, T).
    """

    def __init__(self, in_channels: int, n_modules: int, filters: int, bottleneck: int,
                 kernel_sizes: tuple[int, ...], residual: bool) -> None:
        super().__init__()
        layers = []
        width = in_channels
        for _ in range(n_modules):
            layers.append(InceptionModule(width, filters, bottleneck, kernel_sizes))
            width = layers[-1].out_channels
        self.inceptions = nn.Sequential(*layers)
        self.shortcut = (nn.Sequential(nn.Conv1d(in_channels, width, 1, bias=False), nn.BatchNorm1d(width))
                         if residual else None)
        self.act = nn.ReLU()
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, T) -> (B, 4 * filters, T)
        out = self.inceptions(x)
        if self.shortcut is None:
            return out
        return self.act(out + self.shortcut(x))


class InceptionTime(ZooModel):
    """InceptionTime for multichannel series (one network of the paper's ensemble).

    Args:
        in_channels: sensor channels C.
        num_classes: classes to predict.
        seq_len: window length T (any T >= 1: every conv keeps the length).
        depth: Inception modules in a row (the paper: 6).
        filters: channels of each of the four branches; a module outputs 4 * filters.
        bottleneck: channels of the 1x1 bottleneck conv in front of the long convs (skipped on a
            single-channel input).
        kernel_size: length of the longest of the three parallel convs; the other two are
            kernel_size // 2 and kernel_size // 4 (40 gives 40, 20, 10, the paper's lengths).
        residual: add a 1x1 conv + BatchNorm shortcut after every third module.
        dropout: dropout before the linear head.

    Shape: (B, C, T) -> (B, num_classes), e.g. (8, 1, 150) -> (8, 2).
    """

    def __init__(self, in_channels: int, num_classes: int, seq_len: int, depth: int = 6, filters: int = 32,
                 bottleneck: int = 32, kernel_size: int = 40, residual: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        owner = "inception_time"
        check_int(owner, "depth", depth)
        check_int(owner, "filters", filters)
        check_int(owner, "bottleneck", bottleneck)
        check_int(owner, "kernel_size", kernel_size, low=4)
        check_prob(owner, "dropout", dropout)
        self.kernel_sizes = branch_kernels(kernel_size)
        blocks = []
        width = in_channels
        # modules 1-3, 4-6, ... each form a block; a trailing block of fewer than three modules
        # gets no shortcut (the paper adds one only after modules 3, 6, 9, ...)
        for start in range(0, depth, MODULES_PER_SHORTCUT):
            n = min(MODULES_PER_SHORTCUT, depth - start)
            block = InceptionBlock(width, n, filters, bottleneck, self.kernel_sizes,
                                   residual=residual and n == MODULES_PER_SHORTCUT)
            blocks.append(block)
            width = block.out_channels
        self.blocks = nn.ModuleList(blocks)
        self.num_features = width
        self.head = nn.Sequential(dropout_layer(dropout), nn.Linear(width, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, 4 * filters, T) -> (B, 4 * filters)
        for block in self.blocks:
            x = self.maybe_checkpoint(block, x)
        return x.mean(dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # (B, 4 * filters) -> (B, num_classes)
        return self.head(features)


register("inception_time", ModelSpec(
    name="inception_time",
    builder=InceptionTime,
    input_kind="imu",
    description="InceptionTime (Ismail Fawaz et al. 2020): Inception modules (bottleneck, three parallel "
                "long convs, max-pool branch), a residual shortcut every three modules, global average "
                "pooling, linear head.",
    hparams=(
        HParam("depth", "int", low=1, high=12),
        HParam("filters", "int", low=8, high=64, log=True),
        HParam("bottleneck", "int", low=8, high=64, log=True),
        HParam("kernel_size", "int", low=4, high=80, unit="samples"),
        HParam("residual", "bool"),
        HParam("dropout", "float", low=0.0, high=0.5),
    ),
    supports_checkpointing=True,
    default_input=(6, 128),
))
