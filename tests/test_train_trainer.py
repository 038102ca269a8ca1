"""The Trainer on real data, stored like a browser run; divergence; resume; schedules; metrics."""
from __future__ import annotations

import math

import pytest
import torch

from core.config import RunConfig
from core.jobs import run_job
from core.store import Store
from core.train.schedulers import SCHEDULES
from core.train import Callback, Trainer, classification_metrics, load_checkpoint, lr_curve
from core.train.probes import activation_modules, is_probe_step, leaf_modules, parameter_layers

TINY_RESNET = {"model.name": "resnet1d", "model.hparams.base_channels": 8, "model.hparams.num_stages": 2,
               "model.hparams.blocks_per_stage": 1}


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "sigscope.db")


def hapt_config(**overrides) -> RunConfig:
    """The bundled real HAPT sample (4 subjects, acc+gyro at 50 Hz), capped small."""
    base = {"data.source": "hapt", "data.max_examples": 240, "train.epochs": 2, "train.batch_size": 32,
            "train.probes.every_n_steps": 2, "train.probes.histogram_every_n_steps": 4, **TINY_RESNET}
    return RunConfig().with_overrides({**base, **overrides}, explicit=False)


def test_two_epochs_on_bundled_hapt_store_metrics_and_probes_for_every_layer(store):
    cfg = hapt_config()
    run_id = store.create_run(cfg.to_dict(), name="hapt smoke")
    assert run_job(store, run_id, cfg, device="cpu") == "completed"

    run = store.get_run(run_id)
    assert run["status"] == "completed" and run["epoch"] == 2 and run["step"] == run["total_steps"] > 0
    final = store.final_metrics(run_id)
    for key in ("train_loss", "train_accuracy", "train_weight_norm", "train_samples_per_sec", "val_loss",
                "val_accuracy", "val_macro_f1", "val_ece", "val_entropy", "val_margin", "val_mean_confidence",
                "val_top3_accuracy", "val_precision/WALKING", "val_recall/LAYING", "test_accuracy"):
        assert key in final and final[key] is not None, key
    assert [p["epoch"] for p in store.metric_series(run_id, keys=["accuracy"], split="val")] == [0, 1]
    lr_points = store.metric_series(run_id, keys=["lr"], split="step")
    assert len(lr_points) == run["total_steps"]
    confusion = store.reports(run_id, "confusion_matrix", split="test")[0]["value"]
    assert len(confusion) == 6 and sum(map(sum, confusion)) > 0

    model = load_checkpoint(run["run_dir"]).model  # rebuilt from config JSON + weights_only state_dict
    layers = {name for name, _ in parameter_layers(model)}
    activations = {name for name, _ in activation_modules(model)}
    leaves = {name for name, _ in leaf_modules(model)}
    probe_steps = [s for s in range(1, run["total_steps"] + 1) if is_probe_step(s, 2)]
    for key, expected in (("grad_norm", layers), ("weight_norm", layers), ("update_ratio", layers),
                          ("dead_fraction", activations), ("act_std", leaves)):
        points = store.probe_series(run_id, key)
        assert {p["layer"] for p in points} == expected, key
        assert sorted({p["step"] for p in points}) == probe_steps, key
    assert store.probe_series(run_id, "grad_norm_before_clip", layer="model")
    assert {h["kind"] for h in store.histograms(run_id)} == {"grad", "weight"}
    kinds = {a["kind"] for a in store.artifacts(run_id)}
    assert {"config", "normalization", "classes", "checkpoint_last", "checkpoint_best"} <= kinds


class PoisonWeights(Callback):
    """Writes NaN into the first parameter after a given step, as a bad update would."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_step_end(self, trainer, step):
        if step == self.at_step:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))


def test_a_run_injected_with_nan_ends_diverged_with_the_step(store):
    cfg = hapt_config(**{"train.epochs": 3, "train.probes.enabled": False})
    run_id = store.create_run(cfg.to_dict())
    assert run_job(store, run_id, cfg, device="cpu", callbacks=[PoisonWeights(at_step=3)]) == "diverged"
    run = store.get_run(run_id)
    assert run["status"] == "diverged" and "at step 4" in run["error"]
    losses = store.metric_series(run_id, keys=["loss"], split="step")
    assert [p["step"] for p in losses] == [1, 2, 3]  # the NaN step never updated the weights
    assert all(math.isfinite(p["value"]) for p in losses)


class StopAfter(Callback):
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch + 1 == self.epochs:
            trainer.request_stop("cancelled", "stopped for the resume test")


def test_resuming_from_a_checkpoint_continues_the_same_curve(tmp_path):
    cfg = hapt_config(**{"train.epochs": 4, "train.probes.enabled": False, "schedule.name": "cosine", "data.max_examples": 160,
                         "model.hparams.dropout": 0.2})
    straight = Trainer(cfg, run_dir=tmp_path / "straight", device="cpu")
    straight.fit()

    first = Trainer(cfg, run_dir=tmp_path / "resumed", device="cpu", callbacks=[StopAfter(2)])
    assert first.fit().status == "cancelled"
    second = Trainer(cfg, run_dir=tmp_path / "resumed", device="cpu")
    result = second.fit(resume_from=tmp_path / "resumed" / "checkpoints" / "last.pt")

    assert result.status == "completed" and result.epochs_completed == 4
    steps_then = [s for s, _ in second.recorder.series("loss", "step")]
    assert steps_then[0] == first.global_step + 1 and steps_then[-1] == straight.global_step
    lr_straight = dict(straight.recorder.series("lr", "step"))
    lr_resumed = dict(first.recorder.series("lr", "step")) | dict(second.recorder.series("lr", "step"))
    assert lr_resumed == pytest.approx(lr_straight)
    val_straight = [v for _, v in straight.recorder.series("loss", "val")]
    val_resumed = [v for _, v in first.recorder.series("loss", "val")] + [v for _, v in second.recorder.series("loss", "val")]
    assert val_resumed == pytest.approx(val_straight, rel=1e-4)


@pytest.mark.parametrize("schedule", [name for name in SCHEDULES if name != "plateau"])  # plateau: drawn flat
def test_lr_curve_is_the_curve_training_follows(schedule):
    from core.data import load

    cfg = hapt_config(**{"train.epochs": 2, "train.probes.enabled": False, "schedule.name": schedule,
                         "schedule.step_size": 1, "schedule.warmup_epochs": 0.5, "data.max_examples": 120})
    trainer = Trainer(cfg, load(cfg.data), device="cpu")
    trainer.fit()
    used = [v for _, v in trainer.recorder.series("lr", "step")]
    assert lr_curve(cfg, trainer.steps_per_epoch) == pytest.approx(used)


def test_seed_schedule_matches_its_shape_on_120_epochs():
    cfg = RunConfig().with_overrides({"train.epochs": 120, "schedule.name": "warmup_exp_cosine", "optim.lr": 1.0,
                                      "schedule.min_lr": 1e-6})
    curve = lr_curve(cfg, 1)
    assert curve[0] == pytest.approx(1 / 15) and curve[14] == pytest.approx(1.0)
    assert curve[16] / curve[15] == pytest.approx(0.96)
    assert curve[60] == pytest.approx(0.96 ** 45, rel=1e-6)
    assert curve[-1] < 0.01 * curve[60]


def test_classification_metrics_on_a_known_case():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    targets = torch.tensor([0, 1, 2, 2])
    m = classification_metrics(logits, targets, ["a", "b", "c"])
    assert m.scalars["accuracy"] == pytest.approx(0.75)
    assert m.confusion == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert m.scalars["precision/b"] == pytest.approx(0.5) and m.scalars["recall/c"] == pytest.approx(0.5)
    assert m.scalars["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    confidence = torch.softmax(logits, 1).max(1).values.mean().item()
    assert m.scalars["mean_confidence"] == pytest.approx(confidence)
    assert m.scalars["ece"] == pytest.approx(abs(confidence - 0.75), abs=1e-6)  # all in one confidence bin


def test_bf16_autocast_and_gradient_checkpointing_train_on_cpu():
    cfg = hapt_config(**{"train.epochs": 1, "train.amp": "bf16", "train.grad_checkpointing": True,
                         "data.max_examples": 64, "train.probes.every_n_steps": 1})
    trainer = Trainer(cfg, device="cpu")
    assert trainer.model.grad_checkpointing
    result = trainer.fit()
    assert result.status == "completed"
    losses = [v for _, v in trainer.recorder.series("loss", "step")]
    assert losses and all(math.isfinite(v) for v in losses)
    # probes see each forward once even though checkpointed stages recompute in backward
    steps = [r["step"] for r in trainer.recorder.probe_rows if r["key"] == "act_mean" and r["layer"] == "stem.0"]
    assert steps == sorted(set(steps)) == list(range(1, trainer.global_step + 1))


def test_fp16_without_a_gpu_falls_back_to_fp32_and_says_so():
    cfg = hapt_config(**{"train.epochs": 1, "train.amp": "fp16", "data.max_examples": 80,
                         "train.probes.enabled": False})
    trainer = Trainer(cfg, device="cpu")
    assert trainer.fit().status == "completed"
    assert any("needs a CUDA GPU" in e["message"] for e in trainer.recorder.event_rows)


class TinyMLP(torch.nn.Module):
    """Flatten -> Linear -> ReLU -> Linear: (B, C, T) -> (B, K); no BatchNorm, so a frozen
    model gives exactly the same validation loss every epoch."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_features, 16), torch.nn.ReLU(),
                                       torch.nn.Linear(16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_early_stopping_ends_a_run_that_stopped_improving(tmp_path):
    from core.data import load

    cfg = hapt_config(**{"train.epochs": 10, "optim.weight_decay": 0.0,
                         "schedule.name": "none", "train.early_stopping.enabled": True,
                         "train.early_stopping.patience": 2, "data.max_examples": 80,
                         "train.probes.enabled": False})
    cfg.optim.lr = 1e-30  # below the spec's range on purpose: a Trainer given a config directly trains it
    bundle = load(cfg.data)
    model = TinyMLP(bundle.input_shape[0] * bundle.input_shape[1], bundle.num_classes)
    result = Trainer(cfg, bundle, model=model, run_dir=tmp_path, device="cpu").fit()
    assert result.status == "completed" and result.epochs_completed == 3
    assert "early stopping" in result.message and result.best_epoch == 0
    assert result.test_metrics  # the test split is still evaluated, with the best checkpoint
