"""Temporal attention pooling: a learned weighted average over time."""
from __future__ import annotations

import torch
from torch import nn

from core.models.attention import AttentionSource
from core.models.blocks._checks import check_int


class TemporalAttentionPooling(AttentionSource):
    """score_t = w2 . tanh(W1 x_t + b1) + b2;  a = softmax_t(score);  out = sum_t a_t x_t.

    Args:
        dim: token width D.
        hidden: width of the scoring MLP.

    Shape: (B, T, D) -> (B, D); captured weights (B, T), summing to 1 over time.
    """

    attention_kind = "pooling"

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        check_int("TemporalAttentionPooling", "dim", dim)
        check_int("TemporalAttentionPooling", "hidden", hidden)
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> scores (B, T) -> weights (B, T) -> (B, D)
        weights = torch.softmax(self.score(x).squeeze(-1), dim=-1)
        if self.capturing:
            self.record_attention(weights)
        return torch.einsum("bt,btd->bd", weights, x)
