"""cnn_cbam_1d: a conv baseline with CBAM attention — stages of two conv-BN-ReLU layers,
a CBAM gate (channel then temporal), max-pool and dropout."""
from __future__ import annotations

import torch
from torch import nn

from core.models.base import ZooModel
from core.models.blocks import CBAM1d
from core.models.blocks._checks import check_int, check_prob
from core.models.blocks.dropout import dropout_layer
from core.models.registry import HParam, ModelSpec, register


class CBAMStage(nn.Module):
    """(conv-BN-ReLU) x 2, CBAM, MaxPool1d(2), dropout.

    Shape: (B, C_in, T) -> (B, C_out, T // 2).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, reduction: int,
                 spatial_kernel: int, dropout: float) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding="same", bias=False),
            nn.BatchNorm1d(out_channels), nn.ReLU(),
            nn.Conv1d(out_channels, out_channels, kernel_size, padding="same", bias=False),
            nn.BatchNorm1d(out_channels), nn.ReLU())
        self.cbam = CBAM1d(out_channels, reduction, spatial_kernel)
        self.pool = nn.MaxPool1d(2)
        self.drop = dropout_layer(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, T) -> (B, C_out, T) -> (B, C_out, T // 2)
        return self.drop(self.pool(self.cbam(self.convs(x))))


class CNNCBAM1d(ZooModel):
    """Conv stages with CBAM gates, global average pooling, linear head.

    Args:
        in_channels: sensor channels C.
        num_classes: classes to predict.
        seq_len: window length T; needs T >= 2**num_stages (each stage halves it).
        base_channels: width of the first stage; stage i is base * 2**i wide.
        num_stages: conv stages.
        kernel_size: taps of the convs.
        reduction: CBAM channel-MLP bottleneck factor.
        spatial_kernel: odd taps of CBAM's temporal gate.
        dropout: dropout after each stage and before the head.

    Shape: (B, C, T) -> (B, num_classes), e.g. (8, 6, 128) -> (8, 6).
    """

    def __init__(self, in_channels: int, num_classes: int, seq_len: int, base_channels: int = 32,
                 num_stages: int = 3, kernel_size: int = 5, reduction: int = 8, spatial_kernel: int = 7,
                 dropout: float = 0.2) -> None:
        super().__init__()
        owner = "cnn_cbam_1d"
        check_int(owner, "base_channels", base_channels)
        check_int(owner, "num_stages", num_stages)
        check_int(owner, "kernel_size", kernel_size)
        check_prob(owner, "dropout", dropout)
        check_int(owner, "seq_len", seq_len, low=2 ** num_stages)
        stages, width = [], in_channels
        for i in range(num_stages):
            out = base_channels * 2 ** i
            stages.append(CBAMStage(width, out, kernel_size, reduction, spatial_kernel, dropout))
            width = out
        self.stages = nn.ModuleList(stages)
        self.num_features = width
        self.head = nn.Sequential(dropout_layer(dropout), nn.Linear(width, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, W, T / 2**stages) -> (B, W)
        for stage in self.stages:
            x = self.maybe_checkpoint(stage, x)
        return x.mean(dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # (B, W) -> (B, num_classes)
        return self.head(features)


register("cnn_cbam_1d", ModelSpec(
    name="cnn_cbam_1d",
    builder=CNNCBAM1d,
    input_kind="imu",
    description="Conv baseline with CBAM: (conv-BN-ReLU) x 2 + channel/temporal attention gate + max-pool "
                "per stage, global average pooling, linear head.",
    hparams=(
        HParam("base_channels", "int", low=8, high=128, log=True),
        HParam("num_stages", "int", low=1, high=4),
        HParam("kernel_size", "choice", choices=(3, 5, 7, 9)),
        HParam("reduction", "choice", choices=(4, 8, 16)),
        HParam("spatial_kernel", "choice", choices=(3, 5, 7)),
        HParam("dropout", "float", low=0.0, high=0.5),
    ),
    supports_checkpointing=True,
    default_input=(6, 128),
    min_length=lambda hp: 2 ** hp["num_stages"],
))
