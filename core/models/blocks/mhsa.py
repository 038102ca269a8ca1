"""Multi-head self-attention with explicit q/k/v projections (so FLOP counters see every
matmul) and a Transformer encoder layer built on it.

Attention weights reach `core.models.attention.capture_attention`: when nothing is
capturing, attention runs through fused `scaled_dot_product_attention` at no extra cost;
while capturing, softmax(QK^T / sqrt(d)) is computed explicitly and recorded."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.models.attention import AttentionSource
from core.models.blocks._checks import check_choice, check_divisible, check_int, check_prob
from core.models.blocks.dropout import dropout_layer, effective_p


class MultiHeadSelfAttention(AttentionSource):
    """Self-attention over a token sequence.

    Args:
        dim: token width D, divisible by `heads`.
        heads: attention heads H; each head has width D / H.
        attn_dropout: dropout on the attention weights in training.
        has_cls: token 0 is a CLS token (told to attention viewers).

    Shape: (B, T, D) -> (B, T, D); captured weights (B, H, T, T), rows sum to 1.
    """

    def __init__(self, dim: int, heads: int, attn_dropout: float = 0.0, has_cls: bool = False) -> None:
        super().__init__()
        owner = "MultiHeadSelfAttention"
        check_int(owner, "dim", dim)
        check_int(owner, "heads", heads)
        check_divisible(owner, "dim", dim, "heads", heads)
        self.attn_dropout = effective_p(check_prob(owner, "attn_dropout", attn_dropout))  # 0 below 1e-3
        self.heads = heads
        self.head_dim = dim // heads
        self.has_cls = has_cls
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> (B, H, T, D / H)
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> q, k, v (B, H, T, d) -> (B, H, T, d) -> (B, T, D)
        b, t, dim = x.shape
        q, k, v = self._split(self.q_proj(x)), self._split(self.k_proj(x)), self._split(self.v_proj(x))
        p = self.attn_dropout if self.training else 0.0
        if not self.capturing:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:
            weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), dim=-1)  # (B, H, T, T)
            self.record_attention(weights)
            out = F.dropout(weights, p, self.training) @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, t, dim))


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(D, hidden) - activation - dropout - Linear(hidden, D) - dropout.

    Args:
        dim: token width D.
        hidden: hidden width (e.g. 4 * D).
        dropout: dropout after the activation and after the output.
        activation: "gelu", "relu" or "silu" (Swish, as in the Conformer).

    Shape: (B, T, D) -> (B, T, D).
    """

    _ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, activation: str = "gelu") -> None:
        super().__init__()
        check_int("FeedForward", "dim", dim)
        check_int("FeedForward", "hidden", hidden)
        check_prob("FeedForward", "dropout", dropout)
        check_choice("FeedForward", "activation", activation, tuple(self._ACTIVATIONS))
        self.net = nn.Sequential(nn.Linear(dim, hidden), self._ACTIVATIONS[activation](), dropout_layer(dropout),
                                 nn.Linear(hidden, dim), dropout_layer(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> (B, T, hidden) -> (B, T, D)
        return self.net(x)


class TransformerEncoderLayer(nn.Module):
    """Self-attention + feed-forward, each with a residual and LayerNorm.

    Pre-norm (norm_first=True): x + Attn(LN(x)), then x + FFN(LN(x)) — stable when deep.
    Post-norm (norm_first=False): LN(x + Attn(x)), then LN(x + FFN(x)) — the original.

    Args:
        dim: token width D, divisible by `heads`.
        heads: attention heads.
        mlp_dim: hidden width of the feed-forward.
        dropout: dropout on the attention output, in the feed-forward and on its output.
        attn_dropout: dropout on the attention weights.
        norm_first: pre-norm (True) or post-norm (False).
        has_cls: token 0 is a CLS token (told to attention viewers).

    Shape: (B, T, D) -> (B, T, D); `self.attn` is captured as (B, H, T, T).
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.1, attn_dropout: float = 0.0,
                 norm_first: bool = True, has_cls: bool = False) -> None:
        super().__init__()
        check_prob("TransformerEncoderLayer", "dropout", dropout)
        self.norm_first = norm_first
        self.attn = MultiHeadSelfAttention(dim, heads, attn_dropout, has_cls=has_cls)
        self.ffn = FeedForward(dim, mlp_dim, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = dropout_layer(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> (B, T, D)
        if self.norm_first:
            x = x + self.drop(self.attn(self.norm1(x)))
            return x + self.ffn(self.norm2(x))
        x = self.norm1(x + self.drop(self.attn(x)))
        return self.norm2(x + self.ffn(x))
