"""Cut streams into fixed windows; label each window by majority or drop mixed ones.

    windows = window_stream(array, window=128, stride=64)          # (T, C) -> (N, C, window)
    starts, labels, keep = window_labels(labels, 128, 64, "majority")
"""
from __future__ import annotations

import numpy as np

from core.errors import DataError

LABEL_MODES = {"majority": "the label most of its samples carry", "drop_mixed": "left out"}


def seconds_or_samples(value: int | float | str, rate: float, name: str) -> int:
    """A window/stride given in samples (int) or seconds ("2.56s" or a float) -> samples."""
    if isinstance(value, str):
        text = value.strip().lower()
        if not text.endswith("s"):
            raise DataError(f"{name}={value!r}: give samples (128) or seconds ('2.56s')")
        value = float(text[:-1]) * rate
    elif isinstance(value, float) and not value.is_integer():
        value = value * rate
    samples = int(round(float(value)))
    if samples < 1:
        raise DataError(f"{name}={value!r} is less than one sample at {rate:g} Hz")
    return samples


def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Start index of every full window in a stream of `length` samples."""
    if stride < 1 or window < 1:
        raise DataError(f"window={window} and stride={stride} must both be at least 1 sample")
    if length < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, length - window + 1, stride, dtype=np.int64)


def window_stream(array: np.ndarray, window: int, stride: int) -> np.ndarray:
    """(T, C) stream -> (N, C, window) windows, a view-free float32 copy. Trailing samples
    that do not fill a window are dropped; a stream shorter than one window gives N=0."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 1:
        array = array[:, None]
    starts = window_starts(len(array), window, stride)
    if len(starts) == 0:
        return np.zeros((0, array.shape[1], window), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(array, window, axis=0)  # (T-w+1, C, w)
    return np.ascontiguousarray(view[starts])


def window_labels(labels: np.ndarray, window: int, stride: int, mode: str,
                  unlabeled: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-window label for an int label stream (`unlabeled` marks rows without a label).

    Returns (starts, window_label, keep): the majority label (ties -> lowest class index);
    a window holding any unlabeled row is dropped (unlabeled stretches never enter a
    window), and with mode="drop_mixed" so is one that holds more than one label.
    """
    if mode not in LABEL_MODES:
        raise DataError(f"label_mode={mode!r} is not known; use one of {', '.join(LABEL_MODES)}")
    starts = window_starts(len(labels), window, stride)
    if len(starts) == 0:
        return starts, np.zeros(0, np.int64), np.zeros(0, bool)
    n_classes = int(labels.max()) + 1 if labels.max() >= 0 else 1
    # one-hot cumulative counts give every window's class histogram in O(T * K)
    onehot = np.zeros((len(labels) + 1, n_classes + 1), dtype=np.int32)
    onehot[np.arange(1, len(labels) + 1), np.where(labels == unlabeled, n_classes, labels)] = 1
    cum = np.cumsum(onehot, axis=0)
    hist = cum[starts + window] - cum[starts]  # (N, K+1); last column = unlabeled
    counts, n_unlabeled = hist[:, :n_classes], hist[:, n_classes]
    label = counts.argmax(axis=1).astype(np.int64)
    keep = n_unlabeled == 0
    if mode == "drop_mixed":
        keep &= (counts > 0).sum(axis=1) == 1
    return starts, label, keep
