"""imu_conformer: a Conformer-style encoder for IMU — strided conv subsampling, Conformer
blocks (FFN/2, self-attention, conv module, FFN/2), mean or attention pooling."""
from __future__ import annotations

import torch
from torch import nn

from core.models.base import ZooModel
from core.models.blocks import ConformerBlock, TemporalAttentionPooling
from core.models.blocks._checks import check_choice, check_divisible, check_int, check_prob
from core.models.blocks.dropout import dropout_layer
from core.models.registry import HParam, ModelSpec, dim_divisible_by_heads, register


class ConvSubsampling(nn.Module):
    """One (factor 2) or two (factor 4) stride-2 convs with SiLU; also lifts C to `dim`.

    Shape: (B, C, T) -> (B, dim, ceil(T / factor)).
    """

    def __init__(self, in_channels: int, dim: int, factor: int) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv1d(in_channels, dim, 3, stride=2, padding=1), nn.SiLU()]
        if factor == 4:
            mods += [nn.Conv1d(dim, dim, 3, stride=2, padding=1), nn.SiLU()]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, dim, T / factor)
        return self.net(x)


class ImuConformer(ZooModel):
    """Conv subsampling + Conformer encoder (the depthwise conv module gives position
    information, so there is no positional embedding).

    Args:
        in_channels: sensor channels C.
        num_classes: classes to predict.
        seq_len: window length T (any length; tokens T' = ceil(T / subsample)).
        dim: token width, divisible by heads.
        heads: attention heads per block.
        num_blocks: Conformer blocks.
        ff_mult: feed-forward hidden width is ff_mult * dim.
        conv_kernel: depthwise taps of each conv module.
        subsample: time subsampling factor of the conv front-end, 2 or 4.
        dropout: dropout inside the blocks and before the head.
        pool: "mean" over tokens or "attention" (learned temporal attention pooling).

    Shape: (B, C, T) -> (B, num_classes); captured attention (B, heads, T', T') per block
    and, with pool="attention", (B, T') for the pooling.
    """

    def __init__(self, in_channels: int, num_classes: int, seq_len: int, dim: int = 96, heads: int = 4,
                 num_blocks: int = 4, ff_mult: int = 4, conv_kernel: int = 15, subsample: int = 4,
                 dropout: float = 0.1, pool: str = "mean") -> None:
        super().__init__()
        owner = "imu_conformer"
        check_int(owner, "dim", dim)
        check_int(owner, "heads", heads)
        check_int(owner, "num_blocks", num_blocks)
        check_divisible(owner, "dim", dim, "heads", heads)
        check_choice(owner, "subsample", subsample, (2, 4))
        check_prob(owner, "dropout", dropout)
        check_choice(owner, "pool", pool, ("mean", "attention"))
        self.subsample = ConvSubsampling(in_channels, dim, subsample)
        self.input_drop = dropout_layer(dropout)
        self.blocks = nn.ModuleList([ConformerBlock(dim, heads, ff_mult, conv_kernel, dropout)
                                     for _ in range(num_blocks)])
        self.pooling = TemporalAttentionPooling(dim, hidden=dim) if pool == "attention" else None
        self.num_features = dim
        self.head = nn.Sequential(dropout_layer(dropout), nn.Linear(dim, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, dim, T') -> tokens (B, T', dim) -> blocks -> (B, dim)
        tokens = self.input_drop(self.subsample(x).transpose(1, 2))
        for block in self.blocks:
            tokens = self.maybe_checkpoint(block, tokens)
        return tokens.mean(dim=1) if self.pooling is None else self.pooling(tokens)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # (B, dim) -> (B, num_classes)
        return self.head(features)


register("imu_conformer", ModelSpec(
    name="imu_conformer",
    builder=ImuConformer,
    input_kind="imu",
    description="Conformer-style IMU encoder: strided conv subsampling, Conformer blocks "
                "(FFN/2, self-attention, conv module, FFN/2), mean or attention pooling.",
    hparams=(
        HParam("dim", "int", low=16, high=256),
        HParam("heads", "int", low=1, high=8),
        HParam("num_blocks", "int", low=1, high=6),
        HParam("ff_mult", "choice", choices=(2, 4)),
        HParam("conv_kernel", "choice", choices=(3, 7, 15, 31)),
        HParam("subsample", "choice", choices=(2, 4)),
        HParam("dropout", "float", low=0.0, high=0.5),
        HParam("pool", "choice", choices=("mean", "attention")),
    ),
    has_attention=True,
    supports_checkpointing=True,
    default_input=(6, 128),
    constraints=dim_divisible_by_heads,
))
