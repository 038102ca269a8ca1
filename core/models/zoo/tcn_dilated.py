"""tcn_dilated: a temporal convolutional network — residual blocks of dilated causal
convs whose dilation doubles per level, so the receptive field grows exponentially."""
from __future__ import annotations

import torch
from torch import nn

from core.models.base import ZooModel
from core.models.blocks._checks import check_choice, check_int, check_prob
from core.models.blocks.conv import conv1d
from core.models.blocks.dropout import dropout_layer
from core.models.registry import HParam, ModelSpec, register

CONVS = ("standard", "depthwise_separable")


class TemporalBlock(nn.Module):
    """Two dilated causal convs (each + BN + ReLU + dropout) and a residual (1x1 conv
    when widths change), then ReLU.

    Shape: (B, C_in, T) -> (B, C_out, T); output t sees only inputs <= t.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, dropout: float,
                 conv: str = "standard") -> None:
        super().__init__()
        self.net = nn.Sequential(
            conv1d(conv, in_channels, out_channels, kernel_size, dilation=dilation, causal=True),
            nn.BatchNorm1d(out_channels), nn.ReLU(), dropout_layer(dropout),
            conv1d(conv, out_channels, out_channels, kernel_size, dilation=dilation, causal=True),
            nn.BatchNorm1d(out_channels), nn.ReLU(), dropout_layer(dropout))
        self.residual = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, T) -> (B, C_out, T)
        return self.relu(self.net(x) + self.residual(x))


class TCNDilated(ZooModel):
    """Dilated causal residual conv network.

    Args:
        in_channels: sensor channels C.
        num_classes: classes to predict.
        seq_len: window length T (any length).
        channels: width of every level.
        levels: residual blocks; level i has dilation 2**i. Receptive field
            1 + 2 (kernel_size - 1)(2**levels - 1) samples.
        kernel_size: taps per causal conv.
        dropout: dropout inside the blocks.
        pool: "mean" over time, or "last" (the last step, which has seen the whole window
            when the receptive field covers it).
        conv: the causal convs: "standard" or "depthwise_separable" (a causal depthwise conv and a
            1x1 mix: about kernel_size times fewer weights and FLOPs).

    Shape: (B, C, T) -> (B, num_classes), e.g. (8, 6, 128) -> (8, 6).
    """

    def __init__(self, in_channels: int, num_classes: int, seq_len: int, channels: int = 64, levels: int = 6,
                 kernel_size: int = 3, dropout: float = 0.1, pool: str = "mean", conv: str = "standard") -> None:
        super().__init__()
        owner = "tcn_dilated"
        check_int(owner, "channels", channels)
        check_int(owner, "levels", levels)
        check_int(owner, "kernel_size", kernel_size, low=2)
        check_prob(owner, "dropout", dropout)
        self.pool = check_choice(owner, "pool", pool, ("mean", "last"))
        check_choice(owner, "conv", conv, CONVS)
        self.blocks = nn.ModuleList([TemporalBlock(in_channels if i == 0 else channels, channels, kernel_size,
                                                   2 ** i, dropout, conv) for i in range(levels)])
        self.receptive_field = 1 + 2 * (kernel_size - 1) * (2 ** levels - 1)
        self.num_features = channels
        self.head = nn.Linear(channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, channels, T) -> (B, channels)
        for block in self.blocks:
            x = self.maybe_checkpoint(block, x)
        return x.mean(dim=-1) if self.pool == "mean" else x[:, :, -1]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # (B, channels) -> (B, num_classes)
        return self.head(features)


register("tcn_dilated", ModelSpec(
    name="tcn_dilated",
    builder=TCNDilated,
    input_kind="imu",
    description="Temporal convolutional network: residual blocks of dilated causal convs, dilation doubling "
                "per level, pooled over time, linear head.",
    hparams=(
        HParam("channels", "int", low=8, high=128, log=True),
        HParam("levels", "int", low=1, high=8),
        HParam("kernel_size", "int", low=2, high=7),
        HParam("dropout", "float", low=0.0, high=0.5),
        HParam("pool", "choice", choices=("mean", "last")),
        HParam("conv", "choice", choices=CONVS),
    ),
    supports_checkpointing=True,
    default_input=(6, 128),
))
