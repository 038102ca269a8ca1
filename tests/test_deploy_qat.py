"""Quantization-aware fine-tuning: the int8 simulation rounds as ONNX Runtime's static QDQ
quantization does, and fine-tuning a real run returns a plain fp32 model as accurate as before."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from core.data import load
from core.deploy.qat import (FakeQuant, QatResult, activation_qparams, fake_quantize_activation, fake_quantize_weight,
                             quantization_aware_finetune)
from core.errors import ConfigError
from core.infer import load_run, split_probabilities
from core.models import registry


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def imu():
    """The committed demo-imu run (har_transformer on HAPT), its data, and a 1-epoch QAT of it."""
    from core.demo import install_bundled
    from core.store import Store

    predictor = load_run(install_bundled(Store(), "demo-imu"))
    bundle = load(predictor.config.data)
    before = {k: v.clone() for k, v in predictor.model.state_dict().items()}
    seen = []
    result = quantization_aware_finetune(predictor, epochs=1, bundle=bundle, progress=lambda f, t: seen.append((f, t)))
    return predictor, bundle, before, result, seen


def _accuracy(predictor, bundle) -> float:
    split = split_probabilities(predictor, "test", bundle)
    return float((split.probabilities.argmax(axis=1) == split.labels).mean())


# ---- the rounding ---------------------------------------------------------------------------
def test_weights_round_per_output_channel_to_symmetric_int8():
    w = torch.tensor([[1.0, -0.3, 0.05], [0.2, -0.5, 0.0], [0.0, 0.0, 0.0]])
    # by hand: scale = max|w| / 127 per row; codes = round(w / scale), all-zero row keeps scale 1
    scales = torch.tensor([1.0 / 127, 0.5 / 127, 1.0])
    codes = torch.tensor([[127, -38, 6], [51, -127, 0], [0, 0, 0]], dtype=torch.float32)
    assert torch.allclose(fake_quantize_weight(w, axis=0), codes * scales[:, None], atol=1e-7)
    # a per-channel BatchNorm scale commutes with the rounding: why frozen BN trains the folded weight
    s = torch.tensor([2.5, -0.7, 1.3])
    assert torch.allclose(fake_quantize_weight(w * s[:, None]), fake_quantize_weight(w) * s[:, None], atol=1e-6)


def test_activation_range_follows_ort_minmax():
    assert activation_qparams(-1.0, 3.0) == pytest.approx((4.0 / 255, 64))  # zero point round(1 / (4/255)) = 64
    assert activation_qparams(0.5, 2.0) == pytest.approx((2.0 / 255, 0))   # the range is widened to include 0
    assert activation_qparams(0.0, 0.0) == (1.0, 0)
    x = torch.tensor([-2.0, -1.0, 0.0, 0.01, 1.5, 3.0, 9.0])
    scale, zero = 4.0 / 255, 64
    by_hand = (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale  # values past 3 clip to 3
    assert torch.allclose(fake_quantize_activation(x, -1.0, 3.0), by_hand, atol=1e-6)


def test_simulated_module_equals_hand_quantized_reference_and_detaches_cleanly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 8, 4)).eval()
    x = torch.randn(5, 2, 8)
    with torch.no_grad():
        float_out = model(x)
        conv, linear = model[0], model[3]
        hidden = torch.relu(conv(x)).flatten(1)  # the float model's Linear input: its calibrated range

        def q_act(t, lo, hi):
            lo, hi = min(lo, 0.0), max(hi, 0.0)
            scale = (hi - lo) / 255
            zero = round(-lo / scale)
            return (torch.clamp(torch.round(t / scale) + zero, 0, 255) - zero) * scale

        def q_weight(w):
            scale = w.abs().flatten(1).max(dim=1).values / 127
            shape = (-1,) + (1,) * (w.dim() - 1)
            return torch.clamp(torch.round(w / scale.view(shape)), -127, 127) * scale.view(shape)

        h = torch.relu(nn.functional.conv1d(q_act(x, x.min().item(), x.max().item()), q_weight(conv.weight),
                                            conv.bias, padding=1)).flatten(1)
        reference = nn.functional.linear(q_act(h, hidden.min().item(), hidden.max().item()), q_weight(linear.weight),
                                         linear.bias)
        with FakeQuant(model) as fq:
            fq.calibrate(x)
            simulated = model(x)
        after = model(x)
    assert torch.allclose(simulated, reference, atol=1e-5)
    assert not torch.allclose(simulated, float_out, atol=1e-5)
    # detached: the original classes, weights and outputs, no hooks left
    assert type(model[0]) is nn.Conv1d and type(model[3]) is nn.Linear
    assert not any(parametrize.is_parametrized(m) or m._forward_pre_hooks for m in model.modules())
    assert torch.equal(after, float_out)


# ---- fine-tuning a real run ---------------------------------------------------------------------
def test_qat_returns_a_plain_model_with_the_run_accuracy_and_leaves_the_run_alone(imu):
    predictor, bundle, before, result, seen = imu
    assert isinstance(result, QatResult) and result.epochs == 1
    model = result.model
    assert model is not predictor.model and not model.training
    # a plain module: the run's own classes and parameter names, nothing attached
    assert [type(m) for m in model.modules()] == [type(m) for m in predictor.model.modules()]
    assert list(model.state_dict()) == list(before)
    assert not any(parametrize.is_parametrized(m) or m._forward_pre_hooks or m._forward_hooks
                   for m in model.modules())
    assert any(not torch.equal(model.state_dict()[k], before[k]) for k in before)  # it did fine-tune
    # the run's model is untouched
    assert all(torch.equal(v, before[k]) for k, v in predictor.model.state_dict().items())
    # same inputs and outputs, and the fp32 test accuracy holds
    original = _accuracy(predictor, bundle)
    tuned = _accuracy(dataclasses.replace(predictor, model=model), bundle)
    assert abs(tuned - original) <= 0.03, (original, tuned)
    # what the caller sees
    assert len(result.history) == 1
    row = result.history[0]
    assert {"train_loss", "val_accuracy", "seconds"} <= set(row)
    assert math.isfinite(row["train_loss"]) and 0.5 < row["val_accuracy"] <= 1.0
    assert "fake_quantize_per_channel_affine" in result.method
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_batchnorm_statistics_stay_frozen(imu):
    predictor, bundle, *_ = imu
    torch.manual_seed(0)
    conv_bn = registry.create("resnet1d", predictor.input_shape, len(predictor.class_names),
                              base_channels=8, num_stages=1, blocks_per_stage=1).eval()
    run = dataclasses.replace(predictor, model=conv_bn)
    stats = {k: v.clone() for k, v in conv_bn.state_dict().items() if "running" in k}
    result = quantization_aware_finetune(run, epochs=1, lr=1e-3, bundle=bundle)
    tuned = result.model.state_dict()
    assert stats and all(torch.equal(tuned[k], v) for k, v in stats.items())
    assert any(not torch.equal(tuned[k], v) for k, v in conv_bn.state_dict().items() if k.endswith("weight"))
    # deterministic given the run's seed
    again = quantization_aware_finetune(run, epochs=1, lr=1e-3, bundle=bundle).model.state_dict()
    assert all(torch.equal(again[k], v) for k, v in tuned.items())


@pytest.mark.parametrize("name", ["tcn_dilated", "imu_se_convnext_lstm", "imu_conformer"])
def test_every_family_trains_through_the_simulation_and_comes_back_unchanged(name):
    torch.manual_seed(0)
    model = registry.create(name, (6, 64), 3).eval()
    x = torch.randn(4, 6, 64)
    with torch.no_grad():
        float_out = model(x)
    keys = list(model.state_dict())
    with FakeQuant(model) as fq:
        fq.calibrate(x)
        assert fq.observers and all(o.low is not None for o in fq.observers.values())
        model(x).sum().backward()  # eval mode: BatchNorm statistics stay as they are
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)  # straight-through gradients
        with torch.no_grad():
            assert not torch.equal(model(x), float_out)
    with torch.no_grad():
        assert torch.equal(model(x), float_out)
    assert list(model.state_dict()) == keys


@pytest.mark.parametrize("epochs, lr", [(0, None), (-2, None), (1.5, None), (True, None),
                                        (1, 0.0), (1, -1e-3), (1, float("nan"))])
def test_bad_epochs_or_lr_are_one_actionable_line(imu, epochs, lr):
    predictor = imu[0]
    with pytest.raises(ConfigError) as error:
        quantization_aware_finetune(predictor, epochs=epochs, lr=lr)
    assert "\n" not in str(error.value) and ("epochs" in str(error.value) or "lr" in str(error.value))
