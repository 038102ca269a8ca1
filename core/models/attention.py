"""Attention capture: one context manager hands every attention layer's weights out,
without touching forward's return value.

An attention layer subclasses `AttentionSource` and, in its forward, calls
`self.record_attention(weights)` only when `self.capturing` is true; when nothing is
capturing it takes its fast path (e.g. fused SDPA) and pays nothing.

    with capture_attention(model) as maps:
        logits = model(x)
    for m in maps:  # AttentionMap(layer="blocks.0.attn", kind="self", weights=(B, H, Tq, Tk))
        ...
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn


@dataclass
class AttentionMap:
    """One layer's attention from one forward pass.

    kind "self":    weights (B, H, T_query, T_key), rows sum to 1 over keys
    kind "pooling": weights (B, T), sums to 1 over time
    `tokens_span` says what the token axis covers in input time steps: token i covers
    input samples [i * stride, i * stride + stride) where stride = input_len / n_tokens
    unless a model states otherwise (a CLS token sits at index 0 when `has_cls`).
    """

    layer: str
    kind: str
    weights: torch.Tensor
    has_cls: bool = False


class AttentionSource(nn.Module):
    """Mixin for layers that can hand their attention weights to `capture_attention`."""

    attention_kind = "self"
    has_cls = False

    def __init__(self) -> None:
        super().__init__()
        self._attention_sink: list[AttentionMap] | None = None
        self._attention_name = ""

    @property
    def capturing(self) -> bool:
        return self._attention_sink is not None

    def record_attention(self, weights: torch.Tensor) -> None:
        if self._attention_sink is not None:
            self._attention_sink.append(AttentionMap(self._attention_name, self.attention_kind,
                                                     weights.detach(), self.has_cls))


def attention_layers(model: nn.Module) -> list[tuple[str, AttentionSource]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, AttentionSource)]


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[list[AttentionMap]]:
    """Collect the attention weights of every `AttentionSource` in `model` while inside."""
    sink: list[AttentionMap] = []
    layers = attention_layers(model)
    for name, layer in layers:
        layer._attention_sink = sink
        layer._attention_name = name
    try:
        yield sink
    finally:
        for _, layer in layers:
            layer._attention_sink = None
