"""audio_resnet_attention: the audio classifier seed — a 2-D ResNet over a 4-plane
time-frequency image (log-mel, MFCC, delta, delta-delta) with a 7x11 stem and 3x5
kernels, frequency collapsed, then self-attention layers over time, temporal attention
pooling and an MLP head."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from core.errors import ConfigError
from core.models.base import ZooModel
from core.models.blocks import (BasicBlock2d, Bottleneck2d, SqueezeExcite2d, TemporalAttentionPooling,
                                TransformerEncoderLayer)
from core.models.blocks._checks import check_choice, check_int, check_prob
from core.models.blocks.dropout import dropout_layer
from core.models.registry import HParam, ModelSpec, register

HEAD_CHOICES = ("8,8,4", "8,8,8", "4,4,4", "4,4,2", "2,2,2", "8,4", "4", "8,8,4,4")


def parse_heads(heads: str | Sequence[int]) -> list[int]:
    """"8,8,4" or [8, 8, 4] -> [8, 8, 4]: one entry per self-attention layer."""
    try:
        parsed = [int(h) for h in (heads.split(",") if isinstance(heads, str) else heads)]
    except (TypeError, ValueError):
        parsed = []
    if not parsed or any(h < 1 for h in parsed):
        raise ConfigError(f"audio_resnet_attention: heads={heads!r} must list positive head counts, "
                          f"one per attention layer, e.g. '8,8,4'")
    return parsed


def sinusoidal_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Fixed sine/cosine position code (T, D), any length (clips of any duration)."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe.to(dtype)


class AudioResNetAttention(ZooModel):
    """2-D ResNet front-end + self-attention over time + attention pooling.

    Args:
        in_channels: feature planes C (4 for log-mel, MFCC, delta, delta-delta).
        num_classes: classes to predict.
        seq_len: frames T (any length).
        n_freq: frequency bins F (any size; frequency is averaged out after the ResNet).
        base_channels: stem width; the three stages are base, 2 base, 4 base wide.
        blocks_per_stage: 3x5 residual blocks per stage.
        d_model: token width of the attention layers (divisible by every head count).
        heads: heads per attention layer, e.g. "8,8,4" = three layers.
        ffn_mult: feed-forward width as a multiple of d_model.
        dropout: dropout in the attention layers and the head.
        norm_first: pre-norm attention layers (False = post-norm, as in the seed).
        pool_hidden: width of the attention-pooling scorer.
        head_hidden: hidden width of the MLP head.
        block: the 2-D residual blocks: "basic" (two 3x5 convs) or "bottleneck" (1x1 reduce to a
            quarter, 3x5, 1x1 expand: fewer weights and FLOPs).
        se: a squeeze-and-excitation gate after every residual block (channel attention).

    Shape: (B, C, F, T) -> (B, num_classes), e.g. (8, 4, 40, 126) -> (8, 10). Time is
    downsampled 4x (stem pool and stage 2): captured self-attention is (B, H, T', T') per
    layer and pooling (B, T') with T' = ceil(ceil(T / 2) / 2).
    """

    def __init__(self, in_channels: int, num_classes: int, seq_len: int, n_freq: int, base_channels: int = 16,
                 blocks_per_stage: int = 1, d_model: int = 128, heads: str | Sequence[int] = "8,8,4",
                 ffn_mult: int = 4, dropout: float = 0.1, norm_first: bool = False, pool_hidden: int = 64,
                 head_hidden: int = 128, block: str = "basic", se: bool = False) -> None:
        super().__init__()
        owner = "audio_resnet_attention"
        check_int(owner, "base_channels", base_channels)
        check_int(owner, "blocks_per_stage", blocks_per_stage)
        check_int(owner, "d_model", d_model)
        check_int(owner, "ffn_mult", ffn_mult)
        check_int(owner, "head_hidden", head_hidden)
        check_prob(owner, "dropout", dropout)
        check_choice(owner, "block", block, ("basic", "bottleneck"))
        head_counts = parse_heads(heads)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, base_channels, (7, 11), padding=(3, 5), bias=False),
            nn.BatchNorm2d(base_channels), nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1))
        stages, width = [], base_channels
        # stage strides (freq, time): keep time resolution in the last stage for attention
        for out, stride in ((base_channels, 1), (base_channels * 2, (2, 2)), (base_channels * 4, (2, 1))):
            blocks: list[nn.Module] = []
            for j in range(blocks_per_stage):
                make = BasicBlock2d if block == "basic" else Bottleneck2d
                blocks.append(make(width if j == 0 else out, out, (3, 5), stride if j == 0 else 1))
                if se:
                    blocks.append(SqueezeExcite2d(out, reduction=4))
            stages.append(nn.Sequential(*blocks))
            width = out
        self.stages = nn.ModuleList(stages)
        self.proj = nn.Linear(width, d_model)
        self.drop = dropout_layer(dropout)
        self.attention = nn.ModuleList([TransformerEncoderLayer(d_model, h, ffn_mult * d_model, dropout,
                                                                norm_first=norm_first) for h in head_counts])
        self.pooling = TemporalAttentionPooling(d_model, pool_hidden)
        self.num_features = d_model
        self.head = nn.Sequential(nn.Linear(d_model, head_hidden), nn.ReLU(), dropout_layer(dropout),
                                  nn.Linear(head_hidden, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, F, T) -> stem (B, base, F/2, T/2) -> stages (B, 4 base, F/8, T/4)
        x = self.stem(x)
        for stage in self.stages:
            x = self.maybe_checkpoint(stage, x)
        # collapse frequency: (B, W, F', T') -> (B, T', W) -> (B, T', d_model)
        tokens = self.proj(x.mean(dim=2).transpose(1, 2))
        tokens = self.drop(tokens + sinusoidal_positions(tokens.shape[1], tokens.shape[2], tokens.device, tokens.dtype))
        for layer in self.attention:
            tokens = self.maybe_checkpoint(layer, tokens)
        return self.pooling(tokens)  # (B, T', d_model) -> (B, d_model)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # (B, d_model) -> (B, num_classes)
        return self.head(features)


def _constraints(hp: dict, shape: tuple) -> list[str]:
    try:
        counts = parse_heads(hp["heads"])
    except ConfigError as e:
        return [str(e)]
    if hp.get("block") == "bottleneck" and hp.get("base_channels", 16) % 4:
        return [f"base_channels={hp['base_channels']} must be a multiple of 4 with block='bottleneck' "
                "(the bottleneck is a quarter as wide)"]
    bad = [h for h in counts if hp["d_model"] % h]
    if bad:
        return [f"d_model={hp['d_model']} must be divisible by every head count in heads={hp['heads']!r} "
                f"(not by {bad[0]})"]
    return []


register("audio_resnet_attention", ModelSpec(
    name="audio_resnet_attention",
    builder=AudioResNetAttention,
    input_kind="spectrogram",
    description="Audio classifier: 2-D ResNet (7x11 stem, 3x5 kernels) over log-mel/MFCC/delta/delta-delta "
                "planes, self-attention layers over time, temporal attention pooling, MLP head.",
    hparams=(
        HParam("base_channels", "int", low=8, high=64, log=True),
        HParam("blocks_per_stage", "int", low=1, high=3),
        HParam("d_model", "choice", choices=(32, 64, 96, 128, 192, 256)),
        HParam("heads", "choice", choices=HEAD_CHOICES),
        HParam("ffn_mult", "choice", choices=(2, 4)),
        HParam("dropout", "float", low=0.0, high=0.5),
        HParam("norm_first", "bool"),
        HParam("pool_hidden", "int", low=8, high=256, log=True),
        HParam("head_hidden", "int", low=16, high=512, log=True),
        HParam("block", "choice", choices=("basic", "bottleneck")),
        HParam("se", "bool", label="squeeze-excitation"),
    ),
    has_attention=True,
    supports_checkpointing=True,
    default_input=(4, 40, 126),
    constraints=_constraints,
))
