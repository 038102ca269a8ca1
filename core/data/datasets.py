"""The torch Dataset every source ends in: (float32 tensor, int label), train-only augmentation.

    ds = SignalDataset(x, y, groups, ids, norm)                       # val / test
    ds = SignalDataset(x, y, groups, ids, norm, augmenter=aug,         # train
                       featurize=fn)                                   # fn: raw signal -> features
    x, y = ds[0]; ds.groups; ds.y; ds.ids

Stored `x` is un-normalized: augmentations act in physical units (a rotation of raw
accelerometer axes, noise on the waveform), then features (if `featurize`) and then the
training-split normalization are applied, then feature-domain augmentations (SpecAugment).
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from core.data.normalize import apply_normalization


class SignalDataset(Dataset):
    """Examples of one split.

    x:          (N, ...) raw signals or features (un-normalized).
    y:          (N,) int class indices.
    groups:     (N,) subject / speaker of each example.
    ids:        (N,) stable example names.
    normalization: dict from fit_normalization (fitted on the training split).
    augmenter:  an Augmenter (train split only) or None.
    featurize:  raw signal -> features, applied per item when x holds raw waveforms.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray, ids: np.ndarray,
                 normalization: dict, augmenter=None, featurize: Callable[[np.ndarray], np.ndarray] | None = None,
                 split: str = "train") -> None:
        self.x = x
        self.y = np.asarray(y, dtype=np.int64)
        self.groups = np.asarray(groups)
        self.ids = np.asarray(ids)
        self.normalization = normalization
        self.augmenter = augmenter
        self.featurize = featurize
        self.split = split
        self._rng: np.random.Generator | None = None
        self._rng_pid = -1
        # Without on-the-fly work, normalize once up front.
        self._ready = None
        if augmenter is None and featurize is None and len(self.y):
            self._ready = apply_normalization(x, normalization)

    def __len__(self) -> int:
        return len(self.y)

    def without_augmentation(self) -> "SignalDataset":
        """The same examples as the model sees them at evaluation: no random augmentation
        (itself when it has none)."""
        if self.augmenter is None:
            return self
        return SignalDataset(self.x, self.y, self.groups, self.ids, self.normalization, None, self.featurize,
                             split=self.split)

    def _generator(self) -> np.random.Generator:
        # One generator per process: DataLoader workers each get their own torch seed.
        if self._rng is None or self._rng_pid != os.getpid():
            self._rng = np.random.default_rng(torch.initial_seed() % (2 ** 63))
            self._rng_pid = os.getpid()
        return self._rng

    def example(self, i: int) -> np.ndarray:
        """Example i as the model sees it (augmented when this is an augmented split)."""
        if self._ready is not None:
            return self._ready[i]
        signal = np.array(self.x[i], dtype=np.float32)
        rng = self._generator() if self.augmenter is not None else None
        if self.augmenter is not None:
            signal = self.augmenter.on_signal(signal, rng)
        features = self.featurize(signal) if self.featurize is not None else signal
        features = apply_normalization(features, self.normalization)
        if self.augmenter is not None:
            features = self.augmenter.on_features(features, rng)
        return features

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(np.ascontiguousarray(self.example(i), dtype=np.float32)), int(self.y[i])

    def class_counts(self, n_classes: int) -> list[int]:
        return np.bincount(self.y, minlength=n_classes).tolist()
