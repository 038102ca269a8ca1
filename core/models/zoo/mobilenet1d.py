"""mobilenet1d: a small MobileNet-style IMU classifier for devices — inverted residual blocks
(1x1 expand, depthwise conv, optional squeeze-excitation, 1x1 project, skip where shapes
match), each stage halving the length, global average pooling, linear head."""
from __future__ import annotations

import torch
from torch import nn

from core.models.base import ZooModel
from core.models.blocks import SqueezeExcite1d
from core.models.blocks._checks import check_int, check_prob
from core.models.blocks.dropout import dropout_layer
from core.models.registry import HParam, ModelSpec, register


class InvertedResidual1d(nn.Module):
    """1x1 expand to `expand` x width, depthwise k-tap conv (stride 1 or 2), SE, 1x1 project;
    the input is added back when stride is 1 and the widths match (MobileNetV2/V3).

    Shape: (B, C_in, T) -> (B, C_out, ceil(T / stride)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand: int,
                 se: bool) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.expand = nn.Sequential(nn.Conv1d(in_channels, hidden, 1, bias=False), nn.BatchNorm1d(hidden), nn.ReLU6())
        self.depthwise = nn.Sequential(
            nn.Conv1d(hidden, hidden, kernel_size, stride=stride, padding=kernel_size // 2, groups=hidden, bias=False),
            nn.BatchNorm1d(hidden), nn.ReLU6())
        self.se = SqueezeExcite1d(hidden, reduction=4) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv1d(hidden, out_channels, 1, bias=False), nn.BatchNorm1d(out_channels))
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, T) -> (B, hidden, T) -> (B, hidden, T') -> (B, C_out, T')
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + out if self.skip else out


class MobileNet1d(ZooModel):
    """Stem conv, stages of inverted residual blocks (each later stage doubles the width and
    halves the length), global average pooling, dropout, linear head.

    Args:
        in_channels: sensor channels C.
        num_classes: classes to predict.
        seq_len: window length T (any T >= 1 works: strides round up).
        width: channels of the stem and the first stage; stage i is width * 2**i wide.
        num_stages: stages of inverted residual blocks.
        blocks_per_stage: inverted residual blocks per stage.
        expand: expansion factor inside each block (hidden = expand x input width).
        kernel_size: odd taps of the depthwise convs.
        se: a squeeze-and-excitation gate inside every block.
        dropout: dropout before the linear head.

    Shape: (B, C, T) -> (B, num_classes), e.g. (8, 6, 128) -> (8, 6).
    """

    def __init__(self, in_channels: int, num_classes: int, seq_len: int, width: int = 16, num_stages: int = 3,
                 blocks_per_stage: int = 2, expand: int = 4, kernel_size: int = 5, se: bool = True,
                 dropout: float = 0.1) -> None:
        super().__init__()
        owner = "mobilenet1d"
        check_int(owner, "width", width)
        check_int(owner, "num_stages", num_stages)
        check_int(owner, "blocks_per_stage", blocks_per_stage)
        check_int(owner, "expand", expand)
        check_prob(owner, "dropout", dropout)
        self.stem = nn.Sequential(nn.Conv1d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm1d(width),
                                  nn.ReLU6())
        stages, current = [], width
        for i in range(num_stages):
            out = width * 2 ** i
            blocks = [InvertedResidual1d(current if j == 0 else out, out, kernel_size, 2 if (i > 0 and j == 0) else 1,
                                         expand, se) for j in range(blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            current = out
        self.stages = nn.ModuleList(stages)
        self.num_features = current
        self.head = nn.Sequential(dropout_layer(dropout), nn.Linear(current, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, width, T) -> ... -> (B, D, T / 2**(stages-1)) -> (B, D)
        x = self.stem(x)
        for stage in self.stages:
            x = self.maybe_checkpoint(stage, x)
        return x.mean(dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # (B, D) -> (B, num_classes)
        return self.head(features)


register("mobilenet1d", ModelSpec(
    name="mobilenet1d",
    builder=MobileNet1d,
    input_kind="imu",
    description="Small MobileNet-style IMU classifier for devices: inverted residual blocks (1x1 expand, "
                "depthwise conv, squeeze-excitation, 1x1 project), global average pooling, linear head.",
    hparams=(
        HParam("width", "int", low=8, high=64, log=True),
        HParam("num_stages", "int", low=1, high=4),
        HParam("blocks_per_stage", "int", low=1, high=3),
        HParam("expand", "choice", choices=(2, 4, 6)),
        HParam("kernel_size", "choice", choices=(3, 5, 7, 9)),
        HParam("se", "bool", label="squeeze-excitation"),
        HParam("dropout", "float", low=0.0, high=0.5),
    ),
    supports_checkpointing=True,
    default_input=(6, 128),
))
