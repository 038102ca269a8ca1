"""inception_time as a user builds it from the registry: the paper's structure (six Inception
modules of four branches, kernel lengths 40/20/10, a shortcut after modules 3 and 6), the
length kept at every T, the paper's parameter count, a deterministic forward, gradients into
every weight, a finite Grad-CAM map over time, and a time axis torch.export keeps dynamic."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import ConfigError
from core.explain import grad_cam, last_conv_block
from core.models.registry import create, random_hparams, spec
from core.models.zoo.inception_time import InceptionModule, MaxPoolSame1d

SMALL = {"filters": 8, "bottleneck": 8}  # fast models where the widths do not matter


def inception_modules(model: nn.Module) -> list[InceptionModule]:
    return [m for m in model.modules() if isinstance(m, InceptionModule)]


def order_of_work(model: nn.Module, x: torch.Tensor) -> list[str]:
    """"module" for each Inception module and "shortcut" for each residual add, in forward order."""
    events: list[str] = []
    hooks = [m.register_forward_hook(lambda *_: events.append("module")) for m in inception_modules(model)]
    hooks += [b.shortcut.register_forward_hook(lambda *_: events.append("shortcut"))
              for b in model.blocks if b.shortcut is not None]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return events


def hand_count(channels: int, classes: int, filters: int = 32, bottleneck: int = 32,
               kernels: tuple[int, ...] = (40, 20, 10)) -> int:
    """The paper's network counted by hand: convs carry no bias, BatchNorm has 2 per channel."""
    width = 4 * filters

    def module(c_in: int) -> int:
        squeeze = c_in * bottleneck if c_in > 1 else 0  # no bottleneck on a single-channel input
        c_long = bottleneck if c_in > 1 else c_in
        return squeeze + c_long * filters * sum(kernels) + c_in * filters + 2 * width

    def shortcut(c_in: int) -> int:
        return c_in * width + 2 * width

    modules = module(channels) + 5 * module(width)
    return modules + shortcut(channels) + shortcut(width) + width * classes + classes


def test_defaults_are_the_papers_network():
    model = create("inception_time", input_shape=(1, 128), num_classes=3)
    modules = inception_modules(model)
    assert len(modules) == 6
    for m in modules:
        assert [branch[0].conv.kernel_size[0] for branch in m.convs] == [40, 20, 10]
        assert isinstance(m.pool_branch[0], MaxPoolSame1d) and m.pool_branch[1].kernel_size == (1,)
        assert m.out_channels == 4 * 32
    # a single-channel input skips the bottleneck (as the paper's code does); later modules squeeze 128 -> 32
    assert isinstance(modules[0].bottleneck, nn.Identity)
    assert all(m.bottleneck.out_channels == 32 for m in modules[1:])
    assert order_of_work(model, torch.randn(1, 1, 50)) == ["module"] * 3 + ["shortcut"] + ["module"] * 3 + ["shortcut"]
    # each shortcut starts from its block's input: the raw series, then the third module's output
    assert [b.shortcut[0].in_channels for b in model.blocks] == [1, 128]


def test_multichannel_input_is_squeezed_by_the_bottleneck():
    model = create("inception_time", input_shape=(3, 64), num_classes=3)
    first = inception_modules(model)[0]
    assert first.bottleneck.in_channels == 3 and first.bottleneck.out_channels == 32


@pytest.mark.parametrize("hparams, expected", [
    ({"depth": 7}, ["module"] * 3 + ["shortcut"] + ["module"] * 3 + ["shortcut"] + ["module"]),
    ({"depth": 2}, ["module"] * 2),
    ({"depth": 6, "residual": False}, ["module"] * 6),
])
def test_a_shortcut_follows_every_third_module_only(hparams, expected):
    model = create("inception_time", input_shape=(2, 32), num_classes=3, **SMALL, **hparams)
    assert order_of_work(model, torch.randn(1, 2, 32)) == expected


def test_kernel_size_sets_the_three_branch_lengths():
    model = create("inception_time", input_shape=(1, 32), num_classes=3, depth=1, kernel_size=21, **SMALL)
    assert [b[0].conv.kernel_size[0] for b in inception_modules(model)[0].convs] == [21, 10, 5]
    with pytest.raises(ConfigError, match="kernel_size"):
        create("inception_time", input_shape=(1, 32), num_classes=3, kernel_size=3)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("length", [1, 7, 24, 39, 127, 251])
def test_every_module_keeps_the_length(channels, length):
    # odd lengths and lengths shorter than the 40-tap conv included
    model = create("inception_time", input_shape=(channels, length), num_classes=4, kernel_size=40, **SMALL).eval()
    lengths = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: lengths.append(out.shape[-1]))
             for m in inception_modules(model)]
    x = torch.randn(2, channels, length)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model.forward_head(features)
    for h in hooks:
        h.remove()
    assert lengths == [length] * 6
    assert features.shape == (2, model.num_features) == (2, 32)
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()


def test_per_branch_norms_are_the_papers_norm_over_the_concatenation():
    torch.manual_seed(0)
    module = InceptionModule(3, 4, 4, (8, 4, 2)).train()
    norms = [branch[-1] for branch in module.convs] + [module.pool_branch[-1]]
    for norm in norms:
        nn.init.uniform_(norm.weight, 0.5, 1.5)
        nn.init.uniform_(norm.bias, -0.5, 0.5)
    joint = nn.BatchNorm1d(16).train()
    joint.weight.data = torch.cat([n.weight.data for n in norms])
    joint.bias.data = torch.cat([n.bias.data for n in norms])
    x = torch.randn(5, 3, 30)
    squeezed = module.bottleneck(x)
    raw = [branch[0](squeezed) for branch in module.convs] + [module.pool_branch[:-1](x)]
    expected = torch.relu(joint(torch.cat(raw, dim=1)))
    assert torch.allclose(module(x), expected, atol=1e-6)
    module.eval(), joint.eval()
    assert torch.allclose(torch.cat([n.running_var for n in norms]), joint.running_var)
    assert torch.allclose(module(x), torch.relu(joint(torch.cat(raw, dim=1))), atol=1e-6)


def test_max_pool_branch_matches_torch_max_pool():
    x = torch.randn(2, 5, 17)
    assert torch.equal(MaxPoolSame1d(3)(x), nn.MaxPool1d(3, stride=1, padding=1)(x))


@pytest.mark.parametrize("channels", [1, 3])
def test_parameter_count_matches_the_hand_count(channels):
    model = create("inception_time", input_shape=(channels, 128), num_classes=3)
    assert sum(p.numel() for p in model.parameters()) == hand_count(channels, 3)
    assert hand_count(1, 3) == 420_579


def test_eval_forward_is_deterministic_and_seeded_builds_agree():
    torch.manual_seed(0)
    a = create("inception_time", input_shape=(3, 50), num_classes=3, **SMALL).eval()
    torch.manual_seed(0)
    b = create("inception_time", input_shape=(3, 50), num_classes=3, **SMALL).eval()
    x = torch.randn(4, 3, 50)
    with torch.no_grad():
        assert torch.equal(a(x), a(x))
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradients_reach_every_parameter(checkpointing):
    model = create("inception_time", input_shape=(3, 40), num_classes=3, depth=4, dropout=0.2, **SMALL)
    model.set_grad_checkpointing(checkpointing)
    model.train()
    x = torch.randn(4, 3, 40)
    nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("residual", [True, False])
def test_grad_cam_gives_a_finite_map_over_time(residual):
    torch.manual_seed(0)
    model = create("inception_time", input_shape=(3, 60), num_classes=3, residual=residual, **SMALL).eval()
    x = torch.randn(2, 3, 60)
    cam, layer = grad_cam(model, x, torch.tensor([0, 2]))
    assert layer is not None and cam.shape == (2, 60)
    assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1
    # the last block's output: all four branches of the last module (plus the shortcut when residual);
    # without a shortcut this relies on last_conv_block reading a block's `out_channels`
    assert layer == last_conv_block(model, x) == "blocks.1"


def test_spec_samples_are_buildable():
    s = spec("inception_time")
    assert s.input_kind == "imu" and s.supports_checkpointing
    assert s.defaults() == {"depth": 6, "filters": 32, "bottleneck": 32, "kernel_size": 40, "residual": True,
                            "dropout": 0.0}
    hp = random_hparams("inception_time", random.Random(3), (2, 16))
    assert create("inception_time", input_shape=(2, 16), num_classes=2, **hp)(torch.randn(1, 2, 16)).shape == (1, 2)


def test_torch_export_keeps_the_time_axis_dynamic():
    # max_pool1d would specialize the time axis under torch.export; the branch's 2-D pool must not
    from torch.export import Dim

    model = create("inception_time", input_shape=(2, 64), num_classes=3, depth=1, **SMALL).eval()
    program = torch.export.export(model, (torch.randn(2, 2, 64),),
                                  dynamic_shapes=({0: Dim("batch", min=1, max=64), 2: Dim("time", min=8, max=512)},))
    x = torch.randn(3, 2, 100)
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), atol=1e-5)
