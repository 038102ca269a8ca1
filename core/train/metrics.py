"""Classification metrics as pure functions of logits and targets.

    m = classification_metrics(logits, targets, class_names=["walk", "sit", "lie"])
    m.scalars["accuracy"], m.scalars["macro_f1"], m.confusion  # (K, K) rows = true class

Scalars (all floats): loss, accuracy, top{k}_accuracy, macro_f1, mean_confidence,
entropy (mean predictive entropy, nats), margin (mean top-1 minus top-2 probability),
ece (expected calibration error, 15 equal-width bins) and per-class
`precision/<class>` and `recall/<class>`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class ClassificationMetrics:
    """Scalars for the metric table plus the confusion matrix and per-class arrays."""

    scalars: dict[str, float]
    confusion: list[list[int]]
    per_class: dict[str, list[float]] = field(default_factory=dict)


# Headline metrics and which direction is better (early stopping, best checkpoint, sweeps).
DIRECTIONS = {"loss": "min", "accuracy": "max", "macro_f1": "max", "ece": "min"}


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    # (N, K), (N,) -> fraction of argmax == target
    return float((logits.argmax(dim=1) == targets).float().mean()) if len(targets) else float("nan")


def top_k_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    # (N, K), (N,) -> fraction of targets among the k largest logits
    if not len(targets):
        return float("nan")
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return float((top == targets[:, None]).any(dim=1).float().mean())


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    # (N,), (N,) -> (K, K) counts, row = true class, column = predicted class
    index = targets.long() * num_classes + preds.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def precision_recall_f1(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class precision, recall and F1 from a confusion matrix; 0 where undefined."""
    confusion = confusion.double()
    true_pos = confusion.diag()
    predicted = confusion.sum(dim=0)
    actual = confusion.sum(dim=1)
    precision = torch.where(predicted > 0, true_pos / predicted.clamp(min=1), torch.zeros_like(true_pos))
    recall = torch.where(actual > 0, true_pos / actual.clamp(min=1), torch.zeros_like(true_pos))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(true_pos))
    return precision, recall, f1


def macro_f1(confusion: torch.Tensor) -> float:
    """Mean F1 over classes that occur in the targets (classes absent from both sides are skipped)."""
    _, _, f1 = precision_recall_f1(confusion)
    present = (confusion.sum(dim=1) + confusion.sum(dim=0)) > 0
    return float(f1[present].mean()) if present.any() else float("nan")


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = 15) -> float:
    # (N, K) probabilities -> sum over confidence bins of |accuracy - confidence| * bin weight
    if not len(targets):
        return float("nan")
    confidence, preds = probs.max(dim=1)
    correct = (preds == targets).double()
    bins = torch.clamp((confidence.double() * n_bins).long(), max=n_bins - 1)
    conf_sum = torch.bincount(bins, weights=confidence.double(), minlength=n_bins)
    acc_sum = torch.bincount(bins, weights=correct, minlength=n_bins)
    gap = (acc_sum - conf_sum).abs()
    return float(gap.sum() / len(targets))


def predictive_entropy(probs: torch.Tensor) -> float:
    # (N, K) -> mean of -sum p log p (nats)
    return float(-(probs * probs.clamp(min=1e-12).log()).sum(dim=1).mean()) if len(probs) else float("nan")


def mean_margin(probs: torch.Tensor) -> float:
    # (N, K) -> mean of (largest - second largest probability)
    if not len(probs) or probs.shape[1] < 2:
        return float("nan")
    top2 = probs.topk(2, dim=1).values
    return float((top2[:, 0] - top2[:, 1]).mean())


def weight_l2_norm(model: torch.nn.Module) -> float:
    """L2 norm of all parameters together (one foreach pass)."""
    params = [p.detach() for p in model.parameters()]
    if not params:
        return 0.0
    norms = torch._foreach_norm(params)
    return float(torch.linalg.vector_norm(torch.stack([n.float() for n in norms])))


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, class_names: list[str] | None = None,
                           loss: float | None = None, top_k: tuple[int, ...] = (3,),
                           n_bins: int = 15) -> ClassificationMetrics:
    """Every classification metric for one split. logits (N, K) float, targets (N,) int.

    `loss` is the mean loss the caller measured (with its label smoothing); when None,
    plain cross-entropy of the logits is reported."""
    logits = logits.detach().float().cpu()
    targets = targets.detach().long().cpu()
    num_classes = logits.shape[1]
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    probs = F.softmax(logits, dim=1)
    confusion = confusion_matrix(logits.argmax(dim=1), targets, num_classes)
    precision, recall, f1 = precision_recall_f1(confusion)
    if loss is None:
        loss = float(F.cross_entropy(logits, targets)) if len(targets) else float("nan")
    scalars = {
        "loss": float(loss),
        "accuracy": accuracy(logits, targets),
        "macro_f1": macro_f1(confusion),
        "mean_confidence": float(probs.max(dim=1).values.mean()) if len(targets) else float("nan"),
        "entropy": predictive_entropy(probs),
        "margin": mean_margin(probs),
        "ece": expected_calibration_error(probs, targets, n_bins),
    }
    for k in top_k:
        if 1 < k < num_classes:
            scalars[f"top{k}_accuracy"] = top_k_accuracy(logits, targets, k)
    for i, name in enumerate(names):
        scalars[f"precision/{name}"] = float(precision[i])
        scalars[f"recall/{name}"] = float(recall[i])
    per_class = {"class_names": names, "precision": precision.tolist(), "recall": recall.tolist(),
                 "f1": f1.tolist(), "support": confusion.sum(dim=1).tolist()}
    return ClassificationMetrics(scalars=scalars, confusion=confusion.tolist(), per_class=per_class)
