"""Attention capture as the inference page uses it: inside `capture_attention(model)`
every self-attention layer hands over softmax(QK^T / sqrt(d)) as (B, H, T, T) and every
pooling layer its (B, T) weights; outside it, layers take the fused SDPA path and record
nothing."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import core.models.blocks.mhsa as mhsa
from core.models.attention import capture_attention
from core.models.blocks import (ConformerBlock, MultiHeadSelfAttention, TemporalAttentionPooling,
                                TransformerEncoderLayer)
from core.models.registry import create, list_models


def tokens(b: int = 2, t: int = 9, d: int = 12) -> torch.Tensor:
    return torch.randn(b, t, d, generator=torch.Generator().manual_seed(3))


def test_captured_weights_are_the_scaled_dot_product_softmax():
    attn = MultiHeadSelfAttention(12, heads=3).eval()
    x = tokens()
    with torch.no_grad(), capture_attention(attn) as maps:
        attn(x)
    assert len(maps) == 1 and maps[0].kind == "self"
    q = attn.q_proj(x).view(2, 9, 3, 4).transpose(1, 2)
    k = attn.k_proj(x).view(2, 9, 3, 4).transpose(1, 2)
    expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(4), dim=-1)
    assert maps[0].weights.shape == (2, 3, 9, 9)
    assert torch.allclose(maps[0].weights, expected, atol=1e-6)


def test_fast_path_and_capturing_path_give_the_same_output():
    for layer in (MultiHeadSelfAttention(12, 4), TransformerEncoderLayer(12, 3, 24),
                  TransformerEncoderLayer(12, 2, 24, norm_first=False), ConformerBlock(12, 3, conv_kernel=5)):
        layer.eval()
        x = tokens()
        with torch.no_grad():
            fast = layer(x)
            with capture_attention(layer):
                explicit = layer(x)
        assert torch.allclose(fast, explicit, atol=1e-5), type(layer).__name__


def test_fused_sdpa_runs_only_when_nobody_captures(monkeypatch):
    calls = []
    real = mhsa.F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(mhsa.F, "scaled_dot_product_attention", counting)
    layer = TransformerEncoderLayer(12, 3, 24).eval()
    layer(tokens())
    assert calls == [1] and layer.attn._attention_sink is None
    with capture_attention(layer) as maps:
        layer(tokens())
    assert calls == [1] and len(maps) == 1


def test_nothing_is_recorded_outside_the_context_and_hooks_are_removed_on_error():
    layer = TransformerEncoderLayer(12, 3, 24)
    with capture_attention(layer) as maps:
        layer(tokens())
    layer(tokens())
    assert len(maps) == 1
    with pytest.raises(RuntimeError):
        with capture_attention(layer):
            layer(torch.randn(2, 9, 7))  # wrong width: the forward fails
    assert not layer.attn.capturing


def test_capturing_in_training_keeps_gradients_and_reports_pre_dropout_weights():
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(12, 3, 24, dropout=0.1, attn_dropout=0.5).train()
    x = tokens().requires_grad_(True)
    with capture_attention(layer) as maps:
        layer(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in layer.parameters())
    assert torch.allclose(maps[0].weights.sum(-1), torch.ones(2, 3, 9), atol=1e-5)
    assert not maps[0].weights.requires_grad


def test_maps_are_named_by_layer_and_in_forward_order():
    model = nn.Sequential(TransformerEncoderLayer(12, 3, 24), ConformerBlock(12, 2, conv_kernel=3),
                          TemporalAttentionPooling(12, 8)).eval()
    with torch.no_grad(), capture_attention(model) as maps:
        model(tokens())
    assert [(m.layer, m.kind, tuple(m.weights.shape)) for m in maps] == [
        ("0.attn", "self", (2, 3, 9, 9)), ("1.attn", "self", (2, 2, 9, 9)), ("2", "pooling", (2, 9))]
    assert torch.allclose(maps[2].weights.sum(-1), torch.ones(2), atol=1e-6)


def test_cls_flag_reaches_the_map():
    layer = TransformerEncoderLayer(12, 3, 24, has_cls=True).eval()
    with torch.no_grad(), capture_attention(layer) as maps:
        layer(tokens())
    assert maps[0].has_cls


def test_flop_counter_sees_the_attention_projections():
    # q, k, v and out projections are plain Linears so counters never see 0 for attention
    b, t, d = 2, 9, 12
    layer = MultiHeadSelfAttention(d, 3)
    with FlopCounterMode(display=False) as counter:
        layer(tokens(b, t, d))
    assert counter.get_total_flops() >= 4 * 2 * b * t * d * d


def test_no_zoo_model_hides_attention_in_multihead_attention_modules():
    for name in list_models():
        model = create(name)
        assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules()), name
