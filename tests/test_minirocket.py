"""minirocket: the paper's kernels, dilations and features, agreement with aeon's MiniRocket,
and both fits (gradient through the Trainer, closed-form ridge) as stored runs."""
from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pytest
import torch

from core.config import DataConfig, ModelConfig, ProbeConfig, RunConfig, TrainConfig
from core.errors import ConfigError
from core.models import create
from core.models.zoo.minirocket import (KERNEL_INDICES, MiniRocket, N_KERNELS, channel_combinations, fit_dilations,
                                        kernel_weights, quantiles)

pytestmark = pytest.mark.usefixtures("one_thread")


def gunpoint(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    from aeon.datasets import load_classification
    x, y = load_classification("GunPoint", split=split)
    return x.astype(np.float32), y


def gunpoint_config(**train) -> RunConfig:
    return RunConfig(data=DataConfig(source="uea", options={"name": "GunPoint"}, split="fixed", val_fraction=0.2),
                     model=ModelConfig(name="minirocket"),
                     train=TrainConfig(batch_size=16, device="cpu", **train)).validated()


# ---- the paper's definitions ------------------------------------------------------------------
def test_the_84_kernels_are_every_choice_of_three_twos_among_minus_ones():
    weights = kernel_weights()
    assert weights.shape == (84, 9) and N_KERNELS == comb(9, 3)
    assert set(weights.unique().tolist()) == {-1.0, 2.0}
    assert ((weights == 2).sum(1) == 3).all() and ((weights == -1).sum(1) == 6).all()
    assert (weights.sum(1) == 0).all()  # so a constant offset of the input never changes a feature
    assert {tuple(np.flatnonzero(row == 2)) for row in weights.numpy()} == set(combinations(range(9), 3))
    assert KERNEL_INDICES == tuple(combinations(range(9), 3))


@pytest.mark.parametrize("length", [9, 24, 100, 150, 500, 1460])
def test_dilations_and_features_per_dilation_are_aeons(length):
    from aeon.transformations.collection.convolution_based._minirocket import _fit_dilations

    dilations, per_dilation = fit_dilations(length, 10_000, 32)
    want_dilations, want_counts = _fit_dilations(length, 10_000, 32)
    assert dilations == want_dilations.tolist() and per_dilation == want_counts.tolist()
    assert dilations[0] == 1 and max(dilations) <= (length - 1) / 8 + 1e-9  # up to (T-1)/8, as the paper sets
    assert N_KERNELS * sum(per_dilation) == 9996  # 10,000 asked: 84 * 119
    assert MiniRocket(1, 2, length).forward_features(torch.zeros(1, 1, length)).shape == (1, 9996)


def test_quantiles_are_aeons_low_discrepancy_sequence():
    from aeon.transformations.collection.convolution_based._minirocket import _quantiles

    np.testing.assert_array_equal(quantiles(9996), _quantiles(9996))


def test_features_are_proportions_of_positive_values_on_a_small_input():
    """Every feature of a 3-channel length-40 input, recomputed by hand: kernel k at dilation j
    over its channel combination, zero-padded, then the share of outputs above its bias, over
    the whole output when j + k is even and over the part that never saw the padding otherwise."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3, 40)).astype(np.float32)
    model = MiniRocket(3, 2, 40)
    model.fit_to_data(torch.from_numpy(x), seed=1)
    got = model.forward_features(torch.from_numpy(x[:2])).numpy()
    transform = model.transform
    weights, mask, biases = kernel_weights().numpy(), transform.channel_mask.numpy(), transform.biases.numpy()
    assert mask.sum(1).min() >= 1 and mask.sum(1).max() <= 3
    want, start = np.zeros_like(got), 0
    for j, (dilation, per_kernel) in enumerate(transform.plan):
        pad = 4 * dilation
        padded = np.pad(x[:2].astype(np.float64), ((0, 0), (0, 0), (pad, pad)))
        for k in range(N_KERNELS):
            conv = sum(weights[k, i] * padded[:, :, i * dilation:i * dilation + 40] for i in range(9))  # (2, 3, 40)
            conv = (conv * mask[j * N_KERNELS + k][None, :, None]).sum(1)  # its channels summed
            pooled = conv if (j + k) % 2 == 0 else conv[:, pad:40 - pad]
            for f in range(per_kernel):
                want[:, start + f] = (pooled > biases[start + f]).mean(1)
            start += per_kernel
    assert start == got.shape[1] == transform.num_features
    # equal up to an output sitting on a bias (float32 against float64 sums)
    assert np.mean(got != want) < 1e-3 and np.abs(got - want).max() <= 1 / 8 + 1e-6


def test_a_flat_stretch_convolves_to_exactly_zero():
    """Each kernel's weights sum to 0, so a constant stretch convolves to 0; summed in float32 it
    would be rounding noise of either sign, which a bias of 0 would count as positive or not by
    chance (ACSF1's constant power readings: up to 60 % of a feature). The sums are exact."""
    from core.models.zoo.minirocket import exact_conv

    levels = np.random.default_rng(0).uniform(-3, 3, size=64).astype(np.float32)
    x = torch.from_numpy(np.repeat(levels[:, None, None], 200, axis=2))  # (64, 1, 200) constants
    model = MiniRocket(1, 2, 200)
    for j, (dilation, _) in enumerate(model.transform.plan):
        inside = exact_conv(x, model.transform.weights(j), dilation)[..., 4 * dilation:200 - 4 * dilation]
        assert torch.count_nonzero(inside) == 0, dilation
    float32 = torch.nn.functional.conv1d(x, model.transform.weights(0), padding=4)[..., 4:-4]
    assert torch.count_nonzero(float32) > 0  # what the float64 sum avoids


# ---- agreement with aeon --------------------------------------------------------------------------
def test_features_equal_aeons_minirocket_on_gunpoint():
    """The randomness is aligned (same seed: the same series per bias as aeon's numba draws), so
    the features themselves are compared. Tolerance: at most 0.1 % of the 50 x 9,996 features
    differ, each by exactly one output's share (1/T or 1/cropped length) — an output equal to its
    bias up to float32 rounding, summed in another order than aeon's."""
    from aeon.transformations.collection.convolution_based import MiniRocket as AeonMiniRocket

    x, _ = gunpoint()
    aeon = AeonMiniRocket(random_state=3).fit(x)
    want = aeon.transform(x)
    model = MiniRocket(1, 2, x.shape[-1])
    model.fit_to_data(torch.from_numpy(x), seed=3)
    np.testing.assert_allclose(model.transform.biases.numpy(), aeon.parameters[4], rtol=1e-4, atol=1e-4)
    got = model.forward_features(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (50, 9996)
    differ = got != want
    assert differ.mean() < 1e-3
    lengths = [150] + [150 - 8 * dilation for dilation, _ in model.transform.plan]  # whole or cropped
    steps = {round(1 / n, 6) for n in lengths}
    assert {round(float(v), 6) for v in np.abs(got - want)[differ]} <= steps


def test_channel_combinations_are_aeons_on_basicmotions():
    from aeon.datasets import load_classification
    from aeon.transformations.collection.convolution_based._minirocket import _static_fit

    x, _ = load_classification("BasicMotions", split="train")
    x = x.astype(np.float32)
    per_combination, channels, *_ = _static_fit(x, 10_000, 32, 5)
    n_combinations = len(per_combination)
    mask = channel_combinations(6, n_combinations, 5)
    np.testing.assert_array_equal(mask.sum(1), per_combination)
    starts = np.concatenate([[0], np.cumsum(per_combination)])
    for i in range(n_combinations):
        assert set(np.flatnonzero(mask[i])) == set(channels[starts[i]:starts[i + 1]])


# ---- the ridge fit as a run -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ridge_run() -> dict:
    from core.jobs import run_job
    from core.store import Store

    cfg = gunpoint_config(fit="ridge")
    store = Store()
    run_id = store.create_run(cfg.to_dict(), name="minirocket-ridge")
    assert run_job(store, run_id, cfg, device="cpu") == "completed", store.get_run(run_id)["error"]
    return {"id": run_id, "store": store, "config": cfg}


def test_ridge_fit_is_within_002_of_aeons_classifier_on_gunpoint(ridge_run):
    from aeon.classification.convolution_based import MiniRocketClassifier

    x, y = gunpoint()
    x_test, y_test = gunpoint("test")
    aeon_accuracy = float(np.mean(MiniRocketClassifier(random_state=0).fit(x, y).predict(x_test) == y_test))
    store = ridge_run["store"]
    test = {r["key"]: r["value"] for r in store.metric_series(ridge_run["id"], split="test")}
    assert test["accuracy"] >= aeon_accuracy - 0.02, (test["accuracy"], aeon_accuracy)


def test_ridge_fit_uses_every_training_series_and_records_alpha(ridge_run):
    store, run_id = ridge_run["store"], ridge_run["id"]
    train = {r["key"]: r["value"] for r in store.metric_series(run_id, split="train")}
    assert any(train["ridge_alpha"] == pytest.approx(alpha) for alpha in np.logspace(-3, 3, 10))
    assert 0.9 <= train["ridge_cv_accuracy"] <= 1.0
    messages = " ".join(e["message"] for e in store.events(run_id))
    assert "all 50 training series (40 train + 10 validation)" in messages  # GunPoint's TRAIN file has 50
    assert not store.metric_series(run_id, split="val")  # the validation share was fitted on, not scored
    run = store.get_run(run_id)
    assert run["status"] == "completed" and run["step"] == run["total_steps"]


def test_a_ridge_run_loads_and_predicts_as_it_scored(ridge_run):
    """The buffers (dilations, channel choices, biases) and the solved head round-trip through the
    checkpoint: the reloaded run scores its test split exactly as the run did."""
    from core.infer import load_run
    from core.infer.evaluate import evaluate_split

    predictor = load_run(ridge_run["id"], ridge_run["store"])
    assert isinstance(predictor.model, MiniRocket) and predictor.model.transform.biases.abs().sum() > 0
    test = {r["key"]: r["value"] for r in ridge_run["store"].metric_series(ridge_run["id"], split="test")}
    assert evaluate_split(predictor)["accuracy"] == pytest.approx(test["accuracy"])


# ---- the gradient fit ---------------------------------------------------------------------------------
def test_gradient_fit_trains_the_head_with_probes_and_a_resume_keeps_the_buffers(monkeypatch):
    from core.jobs import requeue_for_resume, run_job
    from core.store import Store

    calls = []
    fit = MiniRocket.fit_to_data
    monkeypatch.setattr(MiniRocket, "fit_to_data", lambda self, x, seed: (calls.append(len(x)), fit(self, x, seed)))
    cfg = gunpoint_config(epochs=1, probes=ProbeConfig(every_n_steps=1, probes=["grad_norm", "weights"]))
    cfg.model.hparams = {"num_features": 840}  # what is checked is the loop, not the model's accuracy
    store = Store()
    run_id = store.create_run(cfg.to_dict(), name="minirocket-gradient")
    assert run_job(store, run_id, cfg, device="cpu") == "completed", store.get_run(run_id)["error"]
    assert calls == [40]  # once, on the training split (the validation share is held out)
    assert store.probe_keys(run_id) and store.metric_series(run_id, split="val")
    from core.infer import load_run
    biases = load_run(run_id, store, which="last").model.transform.biases.clone()

    store.update_run(run_id, status="interrupted")
    config, last = requeue_for_resume(store, run_id, {"train.epochs": 2})
    assert run_job(store, run_id, config, device="cpu", resume_from=last) == "completed", store.get_run(run_id)["error"]
    assert calls == [40]  # not again: the buffers came with the checkpoint
    assert torch.equal(load_run(run_id, store, which="last").model.transform.biases, biases)


# ---- the setting and the cost card --------------------------------------------------------------------
def test_train_fit_is_a_choice_of_the_spec_that_applies_to_closed_form_models():
    from core import spec

    p = spec.lookup("train.fit", gunpoint_config())
    assert p.options() == ("gradient", "ridge") and p.default == "gradient"
    assert gunpoint_config().with_overrides({"train.fit": "ridge"}).train.fit == "ridge"
    with pytest.raises(ConfigError, match="train.fit"):
        RunConfig().with_overrides({"train.fit": "ridge"})  # resnet1d has no closed-form head


def test_profile_prices_the_convolutions_and_names_the_pooling():
    from core.profile import profile_model

    report = profile_model("minirocket", input_shape=(1, 150), num_classes=2, batch_size=4, measure_latency=False,
                           cross_check=False)
    n_dilations = len(create("minirocket", (1, 150), 2).transform.plan)
    conv_flops = 2 * 84 * 9 * 150 * n_dilations * 4  # per output: 9 multiply-adds, at each dilation
    assert report.flops == conv_flops + 2 * 9996 * 2 * 4  # + the linear head
    assert report.params["total"] == 9996 * 2 + 2
    assert {layer["name"] for layer in report.layers} >= {"transform", "head"}
    assert any("gt" in op["op"] for op in report.unsupported_ops)  # PPV pooling: comparisons, not FLOPs
