"""meg_basic_cnn: the plain conv baseline of the MEG/EEG classification seed — conv
blocks (conv-BN-GELU twice, skips where widths match, dropout), global pooling, a
linear head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.base import ZooModel
from core.models.blocks._checks import check_choice, check_int, check_prob
from core.models.blocks.dropout import dropout_layer
from core.models.registry import HParam, ModelSpec, register


class ConvBlock(nn.Module):
    """conv-BN-GELU, conv-BN-GELU, dropout; each conv adds its input when widths match.

    Shape: (B, C_in, T) -> (B, C_out, T).
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3, p_drop: float = 0.1) -> None:
        super().__init__()
        self.skip_first = in_dim == out_dim
        self.conv0 = nn.Conv1d(in_dim, out_dim, kernel_size, padding="same")
        self.conv1 = nn.Conv1d(out_dim, out_dim, kernel_size, padding="same")
        self.batchnorm0 = nn.BatchNorm1d(out_dim)
        self.batchnorm1 = nn.BatchNorm1d(out_dim)
        self.dropout = dropout_layer(p_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, T) -> (B, C_out, T)
        x = self.conv0(x) + x if self.skip_first else self.conv0(x)
        x = F.gelu(self.batchnorm0(x))
        x = self.conv1(x) + x
        x = F.gelu(self.batchnorm1(x))
        return self.dropout(x)


class MegBasicCNN(ZooModel):
    """Plain conv classifier.

    Args:
        in_channels: sensor channels C.
        num_classes: classes to predict.
        seq_len: window length T (any length: convs keep it, pooling is global).
        hid_dim: width of every conv block.
        num_blocks: conv blocks in a row.
        kernel_size: taps of every conv.
        p_drop: dropout at the end of each block.
        pool: global "avg" or "max" pooling over time.

    Shape: (B, C, T) -> (B, num_classes), e.g. (8, 6, 128) -> (8, 6).
    """

    def __init__(self, in_channels: int, num_classes: int, seq_len: int, hid_dim: int = 128,
                 num_blocks: int = 2, kernel_size: int = 3, p_drop: float = 0.1, pool: str = "avg") -> None:
        super().__init__()
        owner = "meg_basic_cnn"
        check_int(owner, "hid_dim", hid_dim)
        check_int(owner, "num_blocks", num_blocks)
        check_int(owner, "kernel_size", kernel_size)
        check_prob(owner, "p_drop", p_drop)
        self.pool = check_choice(owner, "pool", pool, ("avg", "max"))
        self.blocks = nn.ModuleList(
            [ConvBlock(in_channels if i == 0 else hid_dim, hid_dim, kernel_size, p_drop) for i in range(num_blocks)])
        self.num_features = hid_dim
        self.head = nn.Linear(hid_dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, hid, T) -> (B, hid)
        for block in self.blocks:
            x = self.maybe_checkpoint(block, x)
        return x.mean(dim=-1) if self.pool == "avg" else x.amax(dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # (B, hid) -> (B, num_classes)
        return self.head(features)


register("meg_basic_cnn", ModelSpec(
    name="meg_basic_cnn",
    builder=MegBasicCNN,
    input_kind="imu",
    description="Plain conv baseline (MEG/EEG seed): conv-BN-GELU blocks, global pooling, linear head.",
    hparams=(
        HParam("hid_dim", "int", low=16, high=256, log=True),
        HParam("num_blocks", "int", low=1, high=4),
        HParam("kernel_size", "choice", choices=(3, 5, 7, 9)),
        HParam("p_drop", "float", low=0.0, high=0.5),
        HParam("pool", "choice", choices=("avg", "max")),
    ),
    supports_checkpointing=True,
    default_input=(6, 128),
))
