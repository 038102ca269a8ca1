"""Conformer block (Gulati et al. 2020): half-step FFN, self-attention, convolution
module, half-step FFN, final LayerNorm — the macaron layout."""
from __future__ import annotations

import torch
from torch import nn

from core.models.blocks._checks import check_int, check_prob
from core.models.blocks.dropout import dropout_layer
from core.models.blocks.mhsa import FeedForward, MultiHeadSelfAttention


class ConformerConvModule(nn.Module):
    """LayerNorm - pointwise conv (D -> 2D) - GLU - depthwise conv - BatchNorm - SiLU -
    pointwise conv - dropout. The caller adds the residual.

    Args:
        dim: token width D.
        kernel_size: depthwise taps; length is kept ("same" padding).
        dropout: dropout on the output.

    Shape: (B, T, D) -> (B, T, D).
    """

    def __init__(self, dim: int, kernel_size: int = 15, dropout: float = 0.1) -> None:
        super().__init__()
        check_int("ConformerConvModule", "dim", dim)
        check_int("ConformerConvModule", "kernel_size", kernel_size)
        check_prob("ConformerConvModule", "dropout", dropout)
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Conv1d(dim, 2 * dim, 1)
        self.glu = nn.GLU(dim=1)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding="same", groups=dim)
        self.bn = nn.BatchNorm1d(dim)
        self.act = nn.SiLU()
        self.pointwise_out = nn.Conv1d(dim, dim, 1)
        self.drop = dropout_layer(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> (B, D, T) -> (B, 2D, T) -> GLU (B, D, T) -> ... -> (B, T, D)
        h = self.norm(x).transpose(1, 2)
        h = self.glu(self.pointwise_in(h))
        h = self.act(self.bn(self.depthwise(h)))
        return self.drop(self.pointwise_out(h).transpose(1, 2))


class ConformerBlock(nn.Module):
    """x + FFN/2 -> x + MHSA -> x + Conv -> x + FFN/2 -> LayerNorm.

    Args:
        dim: token width D, divisible by `heads`.
        heads: attention heads.
        ff_mult: feed-forward hidden width is ff_mult * D.
        conv_kernel: depthwise taps of the convolution module.
        dropout: dropout in every sub-module's output and on the attention weights.

    Shape: (B, T, D) -> (B, T, D); `self.attn` is captured as (B, H, T, T).
    """

    def __init__(self, dim: int, heads: int = 4, ff_mult: int = 4, conv_kernel: int = 15,
                 dropout: float = 0.1) -> None:
        super().__init__()
        check_int("ConformerBlock", "ff_mult", ff_mult)
        self.ff1_norm = nn.LayerNorm(dim)
        self.ff1 = FeedForward(dim, ff_mult * dim, dropout, activation="silu")
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads, attn_dropout=dropout)
        self.attn_drop = dropout_layer(dropout)
        self.conv = ConformerConvModule(dim, conv_kernel, dropout)
        self.ff2_norm = nn.LayerNorm(dim)
        self.ff2 = FeedForward(dim, ff_mult * dim, dropout, activation="silu")
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> (B, T, D)
        x = x + 0.5 * self.ff1(self.ff1_norm(x))
        x = x + self.attn_drop(self.attn(self.attn_norm(x)))
        x = x + self.conv(x)
        x = x + 0.5 * self.ff2(self.ff2_norm(x))
        return self.out_norm(x)
