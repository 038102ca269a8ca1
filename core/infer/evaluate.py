"""Scoring runs (or an ensemble of them) on their own data split.

    scores = evaluate_split(ensemble, "test")                 # accuracy on the runs' own test split
    split = split_probabilities(predictor, "test")            # SplitProbabilities(ids, labels, probabilities)
    x = split_inputs(predictor, bundle, "val")                # the model inputs of a split, as scored here

`split_inputs` (via `dataset_inputs`) is the one place a split of a run's data becomes model
inputs; scoring, embeddings (core.explore) and importance all read the split through it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from core.data.features import featurize_audio
from core.data.normalize import apply_normalization
from core.config import SPLITS
from core.errors import ConfigError
from core.infer.adapt import adapt_batchnorm
from core.infer.ensemble import Ensemble, as_ensemble
from core.infer.loading import Predictor, one_blas_thread, softmax


@dataclass
class SplitProbabilities:
    """One run's answers on a split: example ids (N,), true labels (N,), probabilities (N, K)."""

    ids: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray


def dataset_inputs(ds, normalization: dict, sample_rate: float, data_config) -> np.ndarray:
    """A split's examples as a model sees them at evaluation (N, *input_shape): featurized when
    the split holds raw clips (a training split with waveform augmentation), then normalized
    with `normalization` (the training split's statistics); no augmentation."""
    if len(ds) == 0:
        return np.zeros((0, *np.shape(ds.x)[1:]), np.float32)
    if ds.featurize is not None:  # a training split with waveform augmentation holds raw clips
        x = featurize_audio(ds.x, sample_rate, data_config)
    else:
        x = ds.x
    return apply_normalization(x, normalization)


def split_inputs(predictor: Predictor, bundle, split: str) -> np.ndarray:
    """The model inputs (N, *input_shape) of one split of `bundle` (loaded from the run's
    DataConfig), normalized with the run's stored training statistics: the exact inputs the run
    was scored on. An empty split gives zero rows."""
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}; use train, val or test")
    if list(bundle.class_names) != list(predictor.class_names):
        raise ConfigError(f"run {predictor.run_id}'s data now gives classes {bundle.class_names}, not the "
                          f"{predictor.class_names} it was trained on; the data changed since it was trained")
    return dataset_inputs(getattr(bundle, split), predictor.normalization, predictor.sample_rate,
                          predictor.config.data)


def split_probabilities(predictor: Predictor, split: str = "test", bundle=None,
                        adapt_bn: bool = False) -> SplitProbabilities:
    """One run on its own data split: the run's DataConfig is loaded again (features from the
    disk cache; or `bundle`, already loaded from that config) and normalized with its stored
    training statistics, so this is the split the run was scored on. adapt_bn: first
    re-estimate the model's BatchNorm statistics on the split's own inputs (labels unused)."""
    from core.data import load

    if split not in SPLITS:
        raise ConfigError(f"split={split!r}; use train, val or test")
    bundle = bundle if bundle is not None else load(predictor.config.data)
    x = split_inputs(predictor, bundle, split)
    ds = getattr(bundle, split)
    if len(ds) == 0:
        raise ConfigError(f"run {predictor.run_id} has no {split} examples (its data.{split}_fraction or groups "
                          "leave that split empty)")
    with one_blas_thread():
        if adapt_bn:
            predictor = adapt_batchnorm(predictor, x)
        probs = softmax(predictor.logits(x))
    return SplitProbabilities(np.asarray(ds.ids).astype(str), ds.y.copy(), probs)


def evaluate_split(model: Predictor | Ensemble, split: str = "test", adapt_bn: bool = False,
                   bundles: dict | None = None) -> dict:
    """Accuracy, macro-F1, confusion matrix and per-class scores of a run or an Ensemble on
    the run's own split (see split_probabilities); an Ensemble's members must share the split's
    examples (e.g. the same test speaker), and it also reports each member's accuracy.
    adapt_bn: each member's BatchNorm statistics re-estimated on the split's inputs first
    (transductive: the unlabeled test examples are seen together, as a new speaker's recordings).
    bundles: the loaded data per data config, filled here; pass the same dict to score the runs
    again (e.g. with and without adapt_bn) without loading their data twice."""
    from core.data import load
    from core.train.metrics import classification_metrics

    ensemble = as_ensemble(model)
    bundles = {} if bundles is None else bundles  # members that share a data config (seeds) load it once
    answers = []
    for m in ensemble.members:
        key = json.dumps(m.config.data.to_dict(), sort_keys=True)
        if key not in bundles:
            bundles[key] = load(m.config.data)
        answers.append(split_probabilities(m, split, bundles[key], adapt_bn))
    first = answers[0]
    order = np.argsort(first.ids)
    aligned = []
    for m, answer in zip(ensemble.members, answers):
        m_order = np.argsort(answer.ids)
        if not np.array_equal(answer.ids[m_order], first.ids[order]):
            raise ConfigError(f"run {m.run_id}'s {split} split holds other examples than run "
                              f"{ensemble.primary.run_id}'s; ensemble runs that were tested on the same examples")
        aligned.append(answer.probabilities[m_order])
    probs = np.mean(aligned, axis=0)
    labels = first.labels[order]
    y = torch.from_numpy(labels)
    m = classification_metrics(torch.from_numpy(np.log(np.clip(probs, 1e-12, 1.0))), y, list(ensemble.class_names))
    out = {"split": split, "n": int(len(y)), "accuracy": m.scalars["accuracy"], "macro_f1": m.scalars["macro_f1"],
           "confusion": m.confusion, "per_class": m.per_class, "class_names": list(ensemble.class_names),
           "run_ids": ensemble.run_ids, "adapt_bn": bool(adapt_bn)}
    if not ensemble.single:
        out["member_accuracy"] = {str(x.run_id): float((p.argmax(axis=1) == labels).mean())
                                  for x, p in zip(ensemble.members, aligned)}
    return out
