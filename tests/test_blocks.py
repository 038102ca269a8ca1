"""The building blocks keep the shapes their docstrings promise, do what their names say
(causal means causal, depthwise-separable is cheaper, gates only rescale), and refuse
impossible settings with a ConfigError naming the value."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from core.errors import ConfigError
from core.models.blocks import (CBAM1d, BasicBlock1d, BasicBlock2d, Bottleneck1d, Bottleneck2d, ConformerBlock,
                                ConvNeXtBlock1d, DepthwiseSeparableConv1d, DilatedConv1d, DropPath, GroupedConv1d,
                                SqueezeExcite1d, SqueezeExcite2d, TemporalAttentionPooling, TransformerEncoderLayer,
                                TransposedConv1d)


def seq(b: int = 2, c: int = 8, t: int = 21) -> torch.Tensor:
    return torch.randn(b, c, t, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("block,x_shape,out_shape", [
    (DilatedConv1d(8, 16, 3, dilation=4), (2, 8, 21), (2, 16, 21)),
    (DilatedConv1d(8, 16, 4, dilation=2, causal=True), (2, 8, 21), (2, 16, 21)),
    (GroupedConv1d(8, 16, 5, groups=4), (2, 8, 21), (2, 16, 21)),
    (DepthwiseSeparableConv1d(8, 16, 7, dilation=2), (2, 8, 21), (2, 16, 21)),
    (TransposedConv1d(8, 4, stride=2, kernel_size=4), (2, 8, 21), (2, 4, 42)),
    (TransposedConv1d(8, 4, stride=3, kernel_size=5), (2, 8, 21), (2, 4, 63)),
    (BasicBlock1d(8, 8, 3), (2, 8, 21), (2, 8, 21)),
    (BasicBlock1d(8, 16, 5, stride=2), (2, 8, 21), (2, 16, 11)),
    (Bottleneck1d(8, 16, 3, stride=2), (2, 8, 21), (2, 16, 11)),
    (BasicBlock2d(4, 8, (3, 5), stride=(2, 1)), (2, 4, 9, 21), (2, 8, 5, 21)),
    (Bottleneck2d(4, 8, 3, stride=2), (2, 4, 9, 21), (2, 8, 5, 11)),
    (SqueezeExcite1d(8, 4), (2, 8, 21), (2, 8, 21)),
    (SqueezeExcite2d(8, 4), (2, 8, 5, 21), (2, 8, 5, 21)),
    (CBAM1d(8, 4, 5), (2, 8, 21), (2, 8, 21)),
    (ConvNeXtBlock1d(8, 7, drop_path=0.2), (2, 8, 21), (2, 8, 21)),
    (DropPath(0.3), (2, 8, 21), (2, 8, 21)),
    (TransformerEncoderLayer(12, 3, 24), (2, 21, 12), (2, 21, 12)),
    (TransformerEncoderLayer(12, 3, 24, norm_first=False), (2, 21, 12), (2, 21, 12)),
    (ConformerBlock(12, 4, conv_kernel=7), (2, 21, 12), (2, 21, 12)),
    (TemporalAttentionPooling(12, 16), (2, 21, 12), (2, 12)),
])
def test_blocks_keep_documented_shapes_in_train_and_eval(block, x_shape, out_shape):
    x = torch.randn(x_shape)
    assert block.train()(x).shape == out_shape
    assert block.eval()(x).shape == out_shape


def test_causal_dilated_conv_never_sees_the_future():
    conv = DilatedConv1d(3, 5, kernel_size=3, dilation=4, causal=True)
    x = seq(1, 3, 30)
    future_changed = x.clone()
    future_changed[:, :, 20:] += 10.0
    y, y2 = conv(x), conv(future_changed)
    assert torch.allclose(y[:, :, :20], y2[:, :, :20])
    assert not torch.allclose(y[:, :, 20:], y2[:, :, 20:])


def test_dilation_widens_the_receptive_field():
    # an impulse at t=15 reaches outputs (k - 1) * dilation / 2 steps either side
    conv = DilatedConv1d(1, 1, kernel_size=3, dilation=5)
    nn.init.ones_(conv.conv.weight)
    nn.init.zeros_(conv.conv.bias)
    impulse = torch.zeros(1, 1, 31)
    impulse[0, 0, 15] = 1.0
    touched = conv(impulse)[0, 0].nonzero().flatten().tolist()
    assert touched == [10, 15, 20]


def test_grouped_and_depthwise_separable_convs_are_cheaper_than_dense():
    def n_params(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())
    dense = nn.Conv1d(32, 64, 7, padding=3)
    assert n_params(GroupedConv1d(32, 64, 7, groups=4)) == 32 * 64 * 7 // 4 + 64
    assert n_params(DepthwiseSeparableConv1d(32, 64, 7)) == (32 * 7 + 32) + (32 * 64 + 64)
    assert n_params(DepthwiseSeparableConv1d(32, 64, 7)) < n_params(dense) / 5


def test_gates_only_rescale_by_factors_between_zero_and_one():
    x = seq()
    for gate in (SqueezeExcite1d(8, 2), CBAM1d(8, 2, 3)):
        y = gate(x)
        ratio = y / x
        assert ((ratio > 0) & (ratio < 1)).all()
    x2 = torch.randn(2, 8, 5, 6)
    ratio2 = SqueezeExcite2d(8, 2)(x2) / x2
    assert ((ratio2 > 0) & (ratio2 < 1)).all()
    # SE2d uses one gate per channel across the whole (freq, time) plane
    assert torch.allclose(ratio2, ratio2[:, :, :1, :1].expand_as(ratio2), atol=1e-6)


def test_convnext_block_starts_close_to_identity_through_layer_scale():
    x = seq()
    block = ConvNeXtBlock1d(8, 7, layer_scale_init=1e-6).eval()
    assert torch.allclose(block(x), x, atol=1e-4)
    no_scale = ConvNeXtBlock1d(8, 7, layer_scale_init=0.0).eval()
    assert no_scale.gamma is None and not torch.allclose(no_scale(x), x, atol=1e-2)


def test_drop_path_drops_whole_examples_in_training_only():
    torch.manual_seed(0)
    drop = DropPath(0.5)
    x = torch.ones(400, 3, 5)
    y = drop.train()(x)
    per_example = y.flatten(1)
    kept = (per_example == 2.0).all(1)
    dropped = (per_example == 0.0).all(1)
    assert bool((kept | dropped).all()), "each example is dropped or kept as a whole"
    assert 0.35 < kept.float().mean().item() < 0.65
    assert torch.equal(drop.eval()(x), x)


def test_residual_block_skip_is_identity_only_when_shapes_match():
    assert isinstance(BasicBlock1d(8, 8).shortcut, nn.Identity)
    assert not isinstance(BasicBlock1d(8, 16).shortcut, nn.Identity)
    assert not isinstance(BasicBlock1d(8, 8, stride=2).shortcut, nn.Identity)
    assert not isinstance(BasicBlock2d(8, 8, stride=(2, 1)).shortcut, nn.Identity)


def test_temporal_attention_pooling_is_a_weighted_mean_over_time():
    pool = TemporalAttentionPooling(6, 8)
    x = torch.randn(2, 10, 6)
    weights = torch.softmax(pool.score(x).squeeze(-1), dim=-1)
    assert torch.allclose(pool(x), (weights.unsqueeze(-1) * x).sum(1), atol=1e-6)
    constant = torch.ones(2, 10, 6) * 3.0
    assert torch.allclose(pool(constant), torch.full((2, 6), 3.0))


@pytest.mark.parametrize("build,needle", [
    (lambda: GroupedConv1d(10, 16, 3, groups=4), "in_channels=10 must be divisible by groups=4"),
    (lambda: GroupedConv1d(8, 6, 3, groups=4), "out_channels=6 must be divisible by groups=4"),
    (lambda: DilatedConv1d(8, 8, 3, dilation=0), "dilation=0 is out of range: allowed >= 1"),
    (lambda: TransposedConv1d(8, 8, stride=4, kernel_size=2), "kernel_size=2 is out of range: allowed >= 4"),
    (lambda: TransposedConv1d(8, 8, stride=2, kernel_size=3), "kernel_size=3 with stride=2: kernel_size - stride must be even"),
    (lambda: BasicBlock1d(8, 8, kernel_size=4), "kernel_size=4 must be odd"),
    (lambda: BasicBlock2d(8, 8, kernel_size=(3, 4)), "kernel_size=(3, 4) must be odd"),
    (lambda: Bottleneck1d(8, 10, reduction=4), "out_channels=10 must be divisible by reduction=4"),
    (lambda: SqueezeExcite1d(8, reduction=0), "reduction=0 is out of range"),
    (lambda: CBAM1d(8, 2, spatial_kernel=4), "spatial_kernel=4 must be odd"),
    (lambda: ConvNeXtBlock1d(8, drop_path=1.0), "drop_path=1.0 is out of range: allowed [0, 1)"),
    (lambda: DropPath(-0.1), "drop_prob=-0.1 is out of range"),
    (lambda: TransformerEncoderLayer(10, 3, 20), "dim=10 must be divisible by heads=3"),
    (lambda: ConformerBlock(12, 5), "dim=12 must be divisible by heads=5"),
    (lambda: TransformerEncoderLayer(12, 3, 24, dropout=1.5), "dropout=1.5 is out of range"),
    (lambda: BasicBlock1d(8, 8.0), "out_channels=8.0 must be an integer"),
])
def test_impossible_settings_raise_config_errors_naming_the_value(build, needle):
    with pytest.raises(ConfigError) as err:
        build()
    assert needle in str(err.value)


def test_strided_blocks_round_lengths_up():
    for t in (1, 2, 7, 8, 33):
        assert BasicBlock1d(4, 4, stride=2)(torch.randn(2, 4, t)).shape[-1] == math.ceil(t / 2)
