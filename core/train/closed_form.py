"""Fitting without gradient steps: a model's data-fitted buffers and the closed-form ridge head.

    fit_to_training_data(trainer)   # the Trainer, once before the first epoch (never on resume)
    epoch = ridge_epoch(trainer)    # train.fit="ridge": the run's one epoch, solved (None otherwise)
    head = ridge_fit(features, labels, num_classes)   # RidgeHead: weights, alpha, leave-one-out scores

`train.fit="ridge"` is MiniRocket's classifier as the paper and aeon's `MiniRocketClassifier`
fit it: features scaled by their spread (StandardScaler(with_mean=False)) and a
`RidgeClassifierCV` over alphas logspace(-3, 3, 10), the alpha picked by its efficient
leave-one-out error. The run stays a run: one epoch whose steps are the feature batches
(progress, cancel), a checkpoint holding the solved head, then the test split as any run.
It fits on every training series: the validation share joins the fit (leave-one-out picks
alpha, so no series needs holding out), and no validation metrics are recorded.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from core.errors import ConfigError

if TYPE_CHECKING:
    from core.train.trainer import Trainer

FIT_HELP = {
    "gradient": "train the weights with the optimizer, epoch by epoch (every model)",
    "ridge": "solve the linear head in closed form: a ridge regression whose strength is chosen by leave-one-out "
             "cross-validation, on every training series including the validation share (seconds on CPU; "
             "models with a closed-form head, e.g. minirocket)",
}
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 10))
MAX_FIT_WINDOWS = 10_000  # at most this many training windows go to a model's fit_to_data (seeded draw)
LOGIT_SCALES = np.logspace(-1, 3, 81)  # candidate temperatures of the ridge's decision values


def closed_form_models() -> tuple[str, ...]:
    """The zoo models whose head `train.fit="ridge"` can solve (their class says `closed_form_fit = True`)."""
    from core.models import registry
    return tuple(n for n in registry.list_models() if getattr(registry.spec(n).builder, "closed_form_fit", False))


# ---- data-fitted buffers ----------------------------------------------------------------
def fitting_examples(trainer: "Trainer") -> Dataset:
    """The series a fit without gradients learns from: the training split, plus the validation
    split when the head is solved by ridge (whose leave-one-out CV needs no held-out series)."""
    train = trainer.bundle.train
    parts = [train.without_augmentation() if hasattr(train, "without_augmentation") else train]
    if trainer.closed_form is not None and len(trainer.bundle.val):
        parts.append(trainer.bundle.val)
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def fit_to_training_data(trainer: "Trainer") -> None:
    """Call the model's `fit_to_data` hook once, on the training windows (all of them up to
    MAX_FIT_WINDOWS, else a seeded draw of that many); nothing for models without one."""
    from core.models.base import ZooModel

    model = trainer.model
    hook = getattr(type(model), "fit_to_data", None)
    if hook is None or hook is ZooModel.fit_to_data:
        return
    examples = fitting_examples(trainer)
    n = len(examples)
    index = np.arange(n)
    if n > MAX_FIT_WINDOWS:
        index = np.sort(np.random.default_rng(trainer.config.train.seed).choice(n, MAX_FIT_WINDOWS, replace=False))
    started = time.perf_counter()
    x = torch.stack([examples[int(i)][0] for i in index]).to(trainer.device)
    model.fit_to_data(x, trainer.config.train.seed)
    drawn = f"{len(index):,} of {n:,}" if len(index) < n else f"all {n:,}"
    trainer.recorder.event(f"{trainer.config.model.name}: data-dependent buffers fitted on {drawn} training series "
                           f"in {time.perf_counter() - started:.1f} s")


# ---- the ridge head ------------------------------------------------------------------------
@dataclass
class RidgeHead:
    """A solved linear head: logits = weight @ (features / feature_scale) + bias.

    alpha: the chosen ridge strength; cv_accuracy and cv_mse: leave-one-out accuracy and mean
    squared error of the +-1 targets at that alpha (the error is what picks it, as in sklearn and
    aeon); logit_scale: the factor on the decision values that minimizes the leave-one-out
    cross-entropy (argmax unchanged; it only makes the probabilities mean something);
    scores: {alpha: (cv_mse, cv_accuracy)} for every alpha tried."""

    weight: np.ndarray  # (num_classes, F)
    bias: np.ndarray  # (num_classes,)
    feature_scale: np.ndarray  # (F,)
    alpha: float
    cv_accuracy: float
    cv_mse: float
    logit_scale: float
    scores: dict
    seconds: float


class _LeaveOneOut:
    """A scorer for RidgeClassifierCV: scores each alpha by minus the mean squared leave-one-out
    error (sklearn's own choice when scoring is None) and keeps the leave-one-out decision values."""

    def __init__(self, labels: np.ndarray) -> None:
        self.classes = np.unique(labels)
        self.labels = labels
        onehot = labels[:, None] == self.classes[None, :]
        # sklearn's targets: +-1 per class, one column for two classes (+1 = the second)
        self.targets = np.where(onehot, 1.0, -1.0)[:, 1:] if len(self.classes) == 2 else np.where(onehot, 1.0, -1.0)
        self.seen: list[tuple[float, float, np.ndarray]] = []

    def __call__(self, estimator: Any, predictions: Any, _: Any, **score_params: Any) -> float:
        values = np.asarray(predictions, dtype=np.float64).reshape(len(self.labels), -1)
        mse = float(np.mean((self.targets - values) ** 2))
        chosen = (values[:, 0] > 0).astype(int) if values.shape[1] == 1 else values.argmax(1)
        accuracy = float(np.mean(self.classes[chosen] == self.labels))
        self.seen.append((mse, accuracy, values))
        return -mse


def _class_logits(decision: np.ndarray, two_classes: bool) -> np.ndarray:
    """Ridge decision values (N, K) or (N, 1) -> logits (N, K): two classes become (-d/2, d/2)."""
    return np.concatenate([-decision / 2, decision / 2], axis=1) if two_classes else decision


def _best_logit_scale(decision: np.ndarray, labels_index: np.ndarray, two_classes: bool) -> float:
    """The factor on the leave-one-out decision values with the least cross-entropy against targets
    smoothed by K / (N + K) (Laplace's rule: N series all classified right do not make a sure model)."""
    logits = torch.from_numpy(_class_logits(decision, two_classes))
    target = torch.from_numpy(labels_index)
    smoothing = logits.shape[1] / (len(target) + logits.shape[1])
    losses = [float(F.cross_entropy(logits * s, target, label_smoothing=smoothing)) for s in LOGIT_SCALES]
    return float(LOGIT_SCALES[int(np.argmin(losses))])


def ridge_fit(features: np.ndarray, labels: np.ndarray, num_classes: int,
              alphas: tuple[float, ...] = RIDGE_ALPHAS) -> RidgeHead:
    """Solve a linear head on features (N, F) for labels (N,) in [0, num_classes) as aeon's
    MiniRocketClassifier does (StandardScaler(with_mean=False) + RidgeClassifierCV(alphas))."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler

    started = time.perf_counter()
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ConfigError("the ridge fit needs training series of at least 2 classes")
    scaler = StandardScaler(with_mean=False).fit(features)
    scaled = scaler.transform(features)
    scorer = _LeaveOneOut(labels)
    ridge = RidgeClassifierCV(alphas=list(alphas), scoring=scorer).fit(scaled, labels)
    chosen = next(i for i, a in enumerate(alphas) if a == ridge.alpha_)
    cv_mse, cv_accuracy, decision = scorer.seen[chosen]
    classes = scorer.classes
    two = len(classes) == 2
    index = np.searchsorted(classes, labels)
    scale = _best_logit_scale(decision, index, two)
    coef = np.atleast_2d(ridge.coef_).astype(np.float64)
    intercept = np.atleast_1d(ridge.intercept_).astype(np.float64)
    present_weight = scale * (np.concatenate([-coef / 2, coef / 2]) if two else coef)
    present_bias = scale * (np.concatenate([-intercept / 2, intercept / 2]) if two else intercept)
    weight = np.zeros((num_classes, features.shape[1]))
    bias = np.full(num_classes, -1e4)  # a class without training series is never predicted
    weight[classes], bias[classes] = present_weight, present_bias
    return RidgeHead(weight=weight, bias=bias, feature_scale=np.asarray(scaler.scale_, dtype=np.float64),
                     alpha=float(ridge.alpha_), cv_accuracy=cv_accuracy, cv_mse=cv_mse, logit_scale=scale,
                     scores={float(a): (m, acc) for a, (m, acc, _) in zip(alphas, scorer.seen)},
                     seconds=time.perf_counter() - started)


class RidgeEpoch:
    """train.fit="ridge" as the Trainer's one epoch: features of every training series (one
    step per batch, so progress and cancel work as in training), the ridge solve, the head
    written into the model; returns what `Trainer._end_epoch` reads of an epoch."""

    def __init__(self, trainer: "Trainer") -> None:
        from core.train.callbacks import EarlyStopping
        from core.train.probes import Probe

        if trainer.world > 1:
            raise ConfigError("train.fit='ridge' solves the head in one process: set train.processes=1")
        self.trainer = trainer
        tc = trainer.config.train
        n_series = len(trainer.bundle.train) + len(trainer.bundle.val)
        self.batches = max(1, math.ceil(n_series / tc.batch_size))
        # probes watch gradients and early stopping watches epochs: neither exists in a closed-form fit
        dropped = [cb for cb in trainer.callbacks if isinstance(cb, (Probe, EarlyStopping))]
        trainer.callbacks = [cb for cb in trainer.callbacks if cb not in dropped]
        if dropped and tc.probes.enabled:
            trainer.notes.append(("info", "train.fit='ridge': no probes or early stopping (no gradient steps)"))
        trainer.val_loader = None  # the validation series join the fit
        trainer.epochs, trainer.steps_per_epoch = 1, self.batches + 1  # the feature batches, then the solve
        trainer.total_steps = self.batches + 1
        trainer.epochs_rule = ("train.fit='ridge': one closed-form fit on every training series, its ridge "
                               "strength chosen by leave-one-out cross-validation")

    def __call__(self, epoch: int) -> dict[str, Any]:
        trainer, model = self.trainer, self.trainer.model
        started = time.perf_counter()
        examples = fitting_examples(trainer)
        loader = DataLoader(examples, batch_size=trainer.config.train.batch_size, shuffle=False)
        features, labels = [], []
        model.eval()
        for step, (x, y) in enumerate(loader, start=1):
            trainer._call("on_step_start", step)
            with torch.no_grad():
                features.append(model.forward_features(x.to(trainer.device)).float().cpu())
            labels.append(y)
            trainer.global_step = step
            trainer._call("on_step_end", step)  # the store writer's progress; cancel requests
            if trainer.stop_status is not None:
                return {"logits": [], "targets": [], "loss": float("nan"), "seconds": 0.0, "samples": 0}
        feats = torch.cat(features).numpy()
        targets = torch.cat(labels)
        head = ridge_fit(feats, targets.numpy(), trainer.bundle.num_classes)
        device = model.head.weight.device
        # the same logits written around the fitted series' mean, W (f - mean) / scale + (b + W mean / scale),
        # so the head says what a feature adds against a typical training series (core/explain_minirocket.py)
        mean = feats.astype(np.float64).mean(axis=0)
        bias = head.bias + head.weight @ (mean / head.feature_scale)
        model.set_linear_head(torch.as_tensor(head.weight, dtype=torch.float32, device=device),
                              torch.as_tensor(bias, dtype=torch.float32, device=device),
                              torch.as_tensor(mean, dtype=torch.float32, device=device),
                              torch.as_tensor(head.feature_scale, dtype=torch.float32, device=device))
        model.train()
        trainer.global_step = self.batches + 1
        with torch.no_grad():
            logits = model.forward_head(torch.from_numpy(feats).to(device)).float()
        n_train, n_val = len(trainer.bundle.train), len(trainer.bundle.val)
        tried = ", ".join(f"{a:.3g}: {acc:.3f}" for a, (_, acc) in head.scores.items())
        trainer.recorder.event(
            f"ridge head: alpha={head.alpha:.3g} chosen by leave-one-out cross-validation on all {len(feats)} training "
            f"series ({n_train} train + {n_val} validation), leave-one-out accuracy {head.cv_accuracy:.3f}; solved in "
            f"{head.seconds:.2f} s (leave-one-out accuracy per alpha: {tried})")
        trainer.recorder.metrics(trainer.global_step, epoch, "train",
                                 {"ridge_alpha": head.alpha, "ridge_cv_accuracy": head.cv_accuracy,
                                  "ridge_cv_mse": head.cv_mse, "ridge_logit_scale": head.logit_scale,
                                  "fit_seconds": time.perf_counter() - started})
        targets = targets.to(device)
        return {"logits": [logits], "targets": [targets], "loss": float(F.cross_entropy(logits, targets)),
                "seconds": time.perf_counter() - started, "samples": len(feats)}


def ridge_epoch(trainer: "Trainer") -> RidgeEpoch | None:
    """The closed-form epoch when train.fit="ridge" applies to this model, else None (the setting
    only applies to closed-form models; elsewhere it is ignored, like any setting that does not apply)."""
    if trainer.config.train.fit != "ridge" or not getattr(trainer.model, "closed_form_fit", False):
        return None
    return RidgeEpoch(trainer)
