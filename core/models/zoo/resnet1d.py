"""resnet1d: a general 1-D ResNet baseline (stem conv, stages of basic or bottleneck
residual blocks, each later stage halving the length and doubling the width)."""
from __future__ import annotations

import torch
from torch import nn

from core.models.base import ZooModel
from core.models.blocks import BasicBlock1d, Bottleneck1d
from core.models.blocks._checks import check_choice, check_int, check_prob
from core.models.blocks.conv import CONV_KINDS
from core.models.blocks.dropout import dropout_layer
from core.models.registry import HParam, ModelSpec, register
from core.spec import When


class ResNet1d(ZooModel):
    """1-D ResNet for multichannel series.

    Args:
        in_channels: sensor channels C.
        num_classes: classes to predict.
        seq_len: window length T (any T >= 1 works: strides round up).
        base_channels: width of the stem and first stage; stage i has base * 2**i.
        num_stages: number of stages; stages after the first stride by 2.
        blocks_per_stage: residual blocks per stage.
        block: "basic" (two k-convs) or "bottleneck" (1x1 - k - 1x1, width / 4 inside).
        kernel_size: odd taps of the residual convs.
        stem_kernel: odd taps of the stem conv.
        dropout: dropout before the linear head.
        conv: the residual convs: "standard", "depthwise_separable" (about kernel_size times
            cheaper) or "grouped" (ResNeXt-style, `groups` times fewer weights).
        groups: channel groups of "grouped" convs.

    Shape: (B, C, T) -> (B, num_classes), e.g. (8, 6, 128) -> (8, 6).
    """

    def __init__(self, in_channels: int, num_classes: int, seq_len: int, base_channels: int = 32,
                 num_stages: int = 3, blocks_per_stage: int = 2, block: str = "basic",
                 kernel_size: int = 3, stem_kernel: int = 7, dropout: float = 0.1, conv: str = "standard",
                 groups: int = 4) -> None:
        super().__init__()
        owner = "resnet1d"
        check_int(owner, "base_channels", base_channels)
        check_int(owner, "num_stages", num_stages)
        check_int(owner, "blocks_per_stage", blocks_per_stage)
        check_choice(owner, "block", block, ("basic", "bottleneck"))
        check_prob(owner, "dropout", dropout)
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, base_channels, stem_kernel, padding=stem_kernel // 2, bias=False),
            nn.BatchNorm1d(base_channels), nn.ReLU())
        stages = []
        width = base_channels
        for i in range(num_stages):
            out = base_channels * 2 ** i
            blocks = []
            for j in range(blocks_per_stage):
                stride = 2 if (i > 0 and j == 0) else 1
                if block == "basic":
                    blocks.append(BasicBlock1d(width, out, kernel_size, stride, conv=conv, groups=groups))
                else:
                    blocks.append(Bottleneck1d(width, out, kernel_size, stride, reduction=4, conv=conv, groups=groups))
                width = out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.num_features = width
        self.head = nn.Sequential(dropout_layer(dropout), nn.Linear(width, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, base, T) -> ... -> (B, D, T / 2**(stages-1)) -> (B, D)
        x = self.stem(x)
        for stage in self.stages:
            x = self.maybe_checkpoint(stage, x)
        return x.mean(dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # (B, D) -> (B, num_classes)
        return self.head(features)


def _constraints(hp: dict, shape: tuple) -> list[str]:
    if hp["block"] == "bottleneck" and hp["base_channels"] % 4:
        return [f"base_channels={hp['base_channels']} must be a multiple of 4 with block='bottleneck' "
                f"(the bottleneck is a quarter as wide)"]
    if hp["conv"] == "grouped":
        width = hp["base_channels"] // (4 if hp["block"] == "bottleneck" else 1)
        if width % hp["groups"]:
            what = "base_channels / 4 (the bottleneck width)" if hp["block"] == "bottleneck" else "base_channels"
            return [f"{what} = {width} must be divisible by groups={hp['groups']} with conv='grouped'"]
    return []


register("resnet1d", ModelSpec(
    name="resnet1d",
    builder=ResNet1d,
    input_kind="imu",
    description="1-D ResNet baseline: stem conv, stages of basic or bottleneck residual blocks, "
                "global average pooling, linear head.",
    hparams=(
        HParam("base_channels", "int", low=8, high=128, log=True),
        HParam("num_stages", "int", low=1, high=4),
        HParam("blocks_per_stage", "int", low=1, high=3),
        HParam("block", "choice", choices=("basic", "bottleneck")),
        HParam("kernel_size", "choice", choices=(3, 5, 7, 9)),
        HParam("stem_kernel", "choice", choices=(3, 5, 7, 9, 11)),
        HParam("dropout", "float", low=0.0, high=0.7),
        HParam("conv", "choice", choices=CONV_KINDS),
        HParam("groups", "choice", choices=(2, 4, 8), when=(When("model.hparams.conv", "==", "grouped"),)),
    ),
    supports_checkpointing=True,
    default_input=(6, 128),
    constraints=_constraints,
))
