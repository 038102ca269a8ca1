"""meg_resnet: the improved MEG/EEG classifier — two residual blocks
(conv3-BN-ReLU-conv3-BN + skip, then ReLU) widening hid -> hid*2, heavy dropout."""
from __future__ import annotations

import torch
from torch import nn

from core.models.base import ZooModel
from core.models.blocks import BasicBlock1d
from core.models.blocks._checks import check_int, check_prob
from core.models.blocks.dropout import dropout_layer
from core.models.registry import HParam, ModelSpec, register


class MegResNet(ZooModel):
    """Residual classifier: ResidualBlock(C -> hid), ResidualBlock(hid -> 2 hid), global
    average pooling, dropout, linear head. The skip gets a 1x1 conv + BN where widths change.

    Args:
        in_channels: sensor channels C.
        num_classes: classes to predict.
        seq_len: window length T (any length).
        hid_dim: width of the first block; the second is twice as wide.
        dropout: dropout before the linear head.
        kernel_size: odd taps of the residual convs (3 in the seed).

    Shape: (B, C, T) -> (B, num_classes), e.g. (8, 6, 128) -> (8, 6).
    """

    def __init__(self, in_channels: int, num_classes: int, seq_len: int, hid_dim: int = 512,
                 dropout: float = 0.4, kernel_size: int = 3) -> None:
        super().__init__()
        check_int("meg_resnet", "hid_dim", hid_dim)
        check_prob("meg_resnet", "dropout", dropout)
        self.blocks = nn.ModuleList([
            BasicBlock1d(in_channels, hid_dim, kernel_size),
            BasicBlock1d(hid_dim, hid_dim * 2, kernel_size),
        ])
        self.num_features = hid_dim * 2
        self.head = nn.Sequential(dropout_layer(dropout), nn.Linear(hid_dim * 2, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, hid, T) -> (B, 2 hid, T) -> (B, 2 hid)
        for block in self.blocks:
            x = self.maybe_checkpoint(block, x)
        return x.mean(dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # (B, 2 hid) -> (B, num_classes)
        return self.head(features)


register("meg_resnet", ModelSpec(
    name="meg_resnet",
    builder=MegResNet,
    input_kind="imu",
    description="Improved MEG/EEG classifier: residual conv3-BN-ReLU-conv3-BN blocks (hid -> 2 hid), "
                "global average pooling, dropout 0.4, linear head.",
    hparams=(
        HParam("hid_dim", "int", low=16, high=1024, log=True),
        HParam("dropout", "float", low=0.0, high=0.7),
        HParam("kernel_size", "choice", choices=(3, 5, 7)),
    ),
    supports_checkpointing=True,
    default_input=(6, 128),
))
