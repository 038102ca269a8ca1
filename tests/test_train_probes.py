"""Probes: their statistics, dead units in a model built to have them, hooks only on probe steps."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from core.config import DataConfig, RunConfig
from core.data import load
from core.models.base import ZooModel
from core.train import Callback, Trainer
from core.train.probes import (dead_unit_fraction, grouped_l2_norms, is_probe_step, near_zero_fraction,
                               near_zero_unit_fraction, normalized_histogram, zero_fraction)


class TinyConvNet(ZooModel):
    """Conv1d -> activation -> mean over time -> Linear; (B, C, T) -> (B, K)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 8, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, width, 5, padding=2)
        self.act = act()
        self.head = nn.Linear(width, num_classes)
        self.num_features = width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x)).mean(dim=2)  # (B, C, T) -> (B, width)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


@pytest.fixture(scope="module")
def bundle():
    return load(DataConfig(source="synthetic_imu", max_examples=160, window=64, stride=32))


def tiny_config(**overrides) -> RunConfig:
    base = {"train.epochs": 1, "train.batch_size": 32, "train.probes.every_n_steps": 2,
            "train.probes.histogram_every_n_steps": 3}
    return RunConfig().with_overrides({**base, **overrides}, explicit=False)


def test_dead_unit_statistics_on_known_tensors():
    acts = torch.tensor([[[0.0, 1.0], [0.0, 0.0]],
                         [[0.0, 2.0], [0.0, 0.0]]])  # (B=2, C=2, T=2): 3 of 4 units never fire
    assert dead_unit_fraction(acts).item() == pytest.approx(0.75)
    assert zero_fraction(acts).item() == pytest.approx(6 / 8)
    smooth = torch.tensor([[1e-5, -2e-4, 0.5], [3e-4, 1e-6, -0.7]])
    assert near_zero_unit_fraction(smooth).item() == pytest.approx(2 / 3)
    assert near_zero_fraction(smooth).item() == pytest.approx(4 / 6)


def test_grouped_norms_match_per_layer_norms_and_histograms_keep_every_value():
    tensors = [torch.randn(3, 4), torch.randn(5), torch.randn(2, 2)]
    norms = grouped_l2_norms(tensors, [0, 1, 0], 2)
    expected0 = torch.linalg.vector_norm(torch.cat([tensors[0].flatten(), tensors[2].flatten()]))
    assert norms[0].item() == pytest.approx(expected0.item(), rel=1e-5)
    assert norms[1].item() == pytest.approx(torch.linalg.vector_norm(tensors[1]).item(), rel=1e-5)
    values = torch.randn(1000)
    hist = normalized_histogram(values, bins=10)
    assert hist[0].item() == pytest.approx(values.min().item()) and hist[1].item() == pytest.approx(values.max().item())
    assert hist[2:].sum().item() == 1000
    assert [s for s in range(1, 25) if is_probe_step(s, 10)] == [1, 11, 21]


def test_a_model_with_large_negative_biases_reports_its_dead_units(bundle):
    model = TinyConvNet(bundle.input_shape[0], bundle.num_classes, width=8)
    with torch.no_grad():
        model.conv.bias[:4] = -1e3  # half the channels can never fire
    trainer = Trainer(tiny_config(), bundle, model=model)
    trainer.fit()
    dead = [r["value"] for r in trainer.recorder.probe_rows if r["key"] == "dead_fraction" and r["layer"] == "act"]
    zero = [r["value"] for r in trainer.recorder.probe_rows if r["key"] == "zero_fraction" and r["layer"] == "act"]
    assert len(dead) == len([s for s in range(1, trainer.global_step + 1) if is_probe_step(s, 2)])
    assert all(v >= 0.5 for v in dead)
    assert all(v >= 0.5 for v in zero)

    healthy = TinyConvNet(bundle.input_shape[0], bundle.num_classes, width=8)
    trainer = Trainer(tiny_config(), bundle, model=healthy)
    trainer.fit()
    dead = [r["value"] for r in trainer.recorder.probe_rows if r["key"] == "dead_fraction"]
    assert dead and max(dead) < 0.5


def test_smooth_activations_report_near_zero_under_their_own_keys(bundle):
    model = TinyConvNet(bundle.input_shape[0], bundle.num_classes, act=nn.GELU)
    trainer = Trainer(tiny_config(), bundle, model=model)
    trainer.fit()
    keys = {r["key"] for r in trainer.recorder.probe_rows if r["layer"] == "act"}
    assert {"near_zero_fraction", "near_zero_unit_fraction"} <= keys
    assert "dead_fraction" not in keys and "zero_fraction" not in keys


class HookCounter(Callback):
    """Counts forward hooks on the model's modules during each step's backward."""

    def __init__(self) -> None:
        self.per_step: dict[int, int] = {}

    def on_step_start(self, trainer, step):
        self.per_step[step] = -1

    def on_before_backward(self, trainer, step):
        self.per_step[step] = sum(len(m._forward_hooks) for m in trainer.model.modules())


def test_hooks_exist_only_during_probe_steps_forward(bundle):
    counter = HookCounter()

    class CountDuringForward(Callback):
        def on_step_start(self, trainer, step):
            counter.per_step[step] = sum(len(m._forward_hooks) for m in trainer.model.modules())

    model = TinyConvNet(bundle.input_shape[0], bundle.num_classes)
    trainer = Trainer(tiny_config(**{"train.epochs": 2}), bundle, model=model, callbacks=[CountDuringForward()])
    trainer.fit()
    probe_steps = [s for s in counter.per_step if is_probe_step(s, 2)]
    other_steps = [s for s in counter.per_step if not is_probe_step(s, 2)]
    assert probe_steps and other_steps
    assert all(counter.per_step[s] > 0 for s in probe_steps)
    assert all(counter.per_step[s] == 0 for s in other_steps)
    assert sum(len(m._forward_hooks) for m in trainer.model.modules()) == 0


def test_grad_norms_cover_every_layer_and_clipping_is_visible(bundle):
    model = TinyConvNet(bundle.input_shape[0], bundle.num_classes)
    cfg = tiny_config(**{"train.grad_clip": 1e-3, "optim.lr": 0.1})
    trainer = Trainer(cfg, bundle, model=model)
    trainer.fit()
    rows = trainer.recorder.probe_rows
    assert {r["layer"] for r in rows if r["key"] == "grad_norm"} == {"conv", "head"}
    before = [r["value"] for r in rows if r["key"] == "grad_norm_before_clip"]
    after = [r["value"] for r in rows if r["key"] == "grad_norm_after_clip"]
    assert before and len(before) == len(after)
    assert all(a <= 1e-3 * 1.01 < b for a, b in zip(after, before))
    ratios = [r["value"] for r in rows if r["key"] == "update_ratio"]
    assert ratios and all(r > 0 for r in ratios)
    kinds = {(h["layer"], h["kind"]) for h in trainer.recorder.histogram_rows}
    assert kinds == {("conv", "grad"), ("conv", "weight"), ("head", "grad"), ("head", "weight")}


def test_probes_off_write_no_probe_rows(bundle):
    trainer = Trainer(tiny_config(**{"train.probes.enabled": False}), bundle,
                      model=TinyConvNet(bundle.input_shape[0], bundle.num_classes))
    trainer.fit()
    assert trainer.recorder.probe_rows == [] and trainer.recorder.histogram_rows == []
    assert trainer.recorder.series("loss", "step")


def test_default_probe_cadence_scales_with_the_run_length(bundle):
    """A 30-step run got one histogram at the old fixed cadence (every 50 steps): left empty, the
    cadence aims at about 50 probe samples and 20 histograms over any run's length."""
    from core.config import ProbeConfig
    from core.train.probes import cadence_steps

    auto = ProbeConfig()
    assert auto.every_n_steps is None and auto.histogram_every_n_steps is None
    assert cadence_steps(auto, "every_n_steps", 30) == 1 and cadence_steps(auto, "histogram_every_n_steps", 30) == 2
    assert cadence_steps(auto, "every_n_steps", 6000) == 120
    assert cadence_steps(auto, "histogram_every_n_steps", 6000) == 300
    assert cadence_steps(ProbeConfig(every_n_steps=7), "every_n_steps", 6000) == 7  # a set value is kept
    cfg = RunConfig().with_overrides({"train.epochs": 6, "train.batch_size": 32}, explicit=False)  # defaults
    trainer = Trainer(cfg, bundle, model=TinyConvNet(bundle.input_shape[0], bundle.num_classes))
    trainer.fit()
    steps = trainer.total_steps
    assert 20 <= steps <= 60, steps
    histogram_steps = {h["step"] for h in trainer.recorder.histogram_rows}
    probe_steps = {r["step"] for r in trainer.recorder.probe_rows if r["key"] == "grad_norm"}
    assert len(histogram_steps) >= 10, (steps, sorted(histogram_steps))  # heat maps with columns to read
    assert len(probe_steps) >= steps // 2, (steps, len(probe_steps))


class CaptureFirstStep(Callback):
    """Keeps step 1's output of one module (all of it) and the weights around its update, by hand."""

    def __init__(self, module_name: str) -> None:
        self.module_name = module_name
        self.acts = None

    def on_step_start(self, trainer, step):
        if step == 1:
            module = dict(trainer.model.named_modules())[self.module_name]
            self.handle = module.register_forward_hook(lambda m, i, o: setattr(self, "acts", o.detach().clone()))

    def on_before_backward(self, trainer, step):
        if step == 1:
            self.handle.remove()

    def on_before_optimizer_step(self, trainer, step):
        if step == 1:
            self.before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}

    def on_step_end(self, trainer, step):
        if step == 1:
            self.after = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


@pytest.mark.parametrize("act, sample", [(nn.ReLU, 8), (nn.GELU, 8), (nn.ReLU, 0)])
def test_fused_sampled_probe_statistics_equal_the_reference_formulas(bundle, act, sample):
    """One hook per layer, one sample of the batch: the values recorded on a fixed batch are the
    reference formulas on the first `sample` examples of that layer's output (all of them for 0)."""
    from core.train.probes import activation_stats

    torch.manual_seed(0)
    model = TinyConvNet(bundle.input_shape[0], bundle.num_classes, act=act)
    capture = CaptureFirstStep("act")
    cfg = tiny_config(**{"train.probes.sample": sample, "train.probes.probes": ["dead_relu", "activations", "weights"],
                         "train.probes.every_n_steps": 1})
    trainer = Trainer(cfg, bundle, model=model, callbacks=[capture])
    trainer.fit()
    got = {r["key"]: r["value"] for r in trainer.recorder.probe_rows if r["step"] == 1 and r["layer"] == "act"}
    acts = capture.acts if sample == 0 else capture.acts[:sample]
    assert capture.acts.shape[0] == 32 and acts.shape[0] == (sample or 32)
    mean, std, peak = activation_stats(acts).tolist()
    assert got["act_mean"] == pytest.approx(mean, rel=1e-5, abs=1e-7)
    assert got["act_std"] == pytest.approx(std, rel=1e-5)
    assert got["act_max"] == pytest.approx(peak, rel=1e-6)
    if act is nn.ReLU:
        assert got["dead_fraction"] == pytest.approx(dead_unit_fraction(acts).item(), abs=1e-6)
        assert got["zero_fraction"] == pytest.approx(zero_fraction(acts).item(), abs=1e-6)
    else:
        assert got["near_zero_unit_fraction"] == pytest.approx(near_zero_unit_fraction(acts).item(), abs=1e-6)
        assert got["near_zero_fraction"] == pytest.approx(near_zero_fraction(acts).item(), abs=1e-6)
    # the weight probe: exact norms, and (these tensors are under UPDATE_SAMPLE elements) exact ratios
    weights = {r["layer"]: r["value"] for r in trainer.recorder.probe_rows if r["step"] == 1 and r["key"] == "weight_norm"}
    ratios = {r["layer"]: r["value"] for r in trainer.recorder.probe_rows if r["step"] == 1 and r["key"] == "update_ratio"}
    for layer in ("conv", "head"):
        names = [n for n in capture.before if n.startswith(layer + ".")]
        before = torch.cat([capture.before[n].flatten() for n in names])
        after = torch.cat([capture.after[n].flatten() for n in names])
        assert weights[layer] == pytest.approx(before.norm().item(), rel=1e-5)
        assert ratios[layer] == pytest.approx(((after - before).norm() / before.norm()).item(), rel=1e-4)


def test_the_update_ratio_sample_is_a_view_and_close_to_the_exact_ratio_on_a_large_tensor():
    from core.train.probes import UPDATE_SAMPLE, strided_sample

    torch.manual_seed(0)
    w = torch.randn(512, 300)  # 153,600 elements, well over UPDATE_SAMPLE
    sample = strided_sample(w)
    assert sample.numel() <= UPDATE_SAMPLE and sample.untyped_storage().data_ptr() == w.untyped_storage().data_ptr()
    before = sample.clone()
    update = 1e-3 * torch.randn_like(w)
    w.add_(update)  # in place, as the optimizers do: the view sees the new values
    estimate = ((sample - before).norm() / before.norm()).item()
    exact = (update.norm() / (w - update).norm()).item()
    assert estimate == pytest.approx(exact, rel=0.05)


def test_one_hook_per_layer_however_many_activation_probes_watch_it(bundle):
    counts = {}
    model = TinyConvNet(bundle.input_shape[0], bundle.num_classes)
    cfg = tiny_config(**{"train.probes.probes": ["dead_relu", "activations", "activation_histograms"],
                         "train.probes.every_n_steps": 1, "train.probes.histogram_every_n_steps": 1})
    trainer = Trainer(cfg, bundle, model=model)
    original = model.act.register_forward_hook

    def counting(hook, *a, **k):
        counts["act"] = counts.get("act", 0) + 1
        return original(hook, *a, **k)

    model.act.register_forward_hook = counting
    trainer.fit()
    steps = trainer.global_step
    assert counts["act"] == steps  # one hook per step for three probes on that layer
    keys = {r["key"] for r in trainer.recorder.probe_rows if r["layer"] == "act"}
    assert {"dead_fraction", "act_std"} <= keys
    assert {h["layer"] for h in trainer.recorder.histogram_rows if h["kind"] == "activation"} >= {"act"}
