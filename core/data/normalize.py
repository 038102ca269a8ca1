"""Normalization fitted on the training split only, stored as JSON, re-applied exactly.

    norm = fit_normalization(train_x, kind="zscore", methods=["zscore"] * C)  # JSON-able dict
    x = apply_normalization(x, norm)      # one example (C, T) / (P, F, T) or a batch of them

kinds:
- "none":        identity.
- "zscore":      per channel (IMU channels, feature rows; per plane x frequency bin for
                 (P, F, T) images) (x - mean) / std, except planes whose method is "robust".
- "robust":      (x - median) / (1.4826 * MAD) everywhere (MAD scaled to match std on Gaussians).
- "per_example": every example standardized per channel by its own mean/std at apply time.
The stack4 image uses zscore for the log-mel and MFCC planes and robust MAD for the delta planes.
"""
from __future__ import annotations

import numpy as np

from core.errors import DataError

KINDS = ("none", "zscore", "robust", "per_example")
_EPS = 1e-8
_MAD_TO_STD = 1.4826


def fit_normalization(train_x: np.ndarray, kind: str, methods: list[str] | None = None,
                      channel_names: list[str] | None = None) -> dict:
    """Statistics of `train_x` (N, C, T) or (N, P, F, T) as a JSON-able dict.

    methods: one of "zscore"/"robust" per axis-1 channel (plane); defaults from `kind`.
    Statistics are per channel for (N, C, T) and per (plane, frequency bin) for images.
    """
    if kind not in KINDS:
        raise DataError(f"normalization={kind!r} is not known; use one of {', '.join(KINDS)}")
    if kind in ("none", "per_example"):
        return {"kind": kind}
    if len(train_x) == 0:
        raise DataError("cannot fit normalization on an empty training split")
    n_channels = train_x.shape[1]
    if methods is None or kind == "robust":
        methods = [kind] * n_channels
    if len(methods) != n_channels:
        raise ValueError(f"{len(methods)} methods for {n_channels} channels")
    # reduce over examples and time: (N, C, T) -> (C, 1); (N, P, F, T) -> (P, F, 1)
    axes = (0, train_x.ndim - 1)
    center = np.empty(train_x.shape[1:-1] + (1,), dtype=np.float64)
    scale = np.empty_like(center)
    for c, method in enumerate(methods):
        plane = np.asarray(train_x[:, c:c + 1], dtype=np.float64)
        if method == "zscore":
            mid = plane.mean(axis=axes, keepdims=True)
            spread = plane.std(axis=axes, keepdims=True)
        elif method == "robust":
            mid = np.median(plane, axis=axes, keepdims=True)
            spread = _MAD_TO_STD * np.median(np.abs(plane - mid), axis=axes, keepdims=True)
        else:
            raise DataError(f"normalization method {method!r} is not known; use zscore or robust")
        center[c] = mid[0, 0]
        scale[c] = np.where(spread[0, 0] > _EPS, spread[0, 0], 1.0)
    return {"kind": kind, "methods": list(methods), "channels": list(channel_names or []),
            "center": center.tolist(), "scale": scale.tolist(), "fitted_on": "train",
            "n_fitted": int(len(train_x))}


def apply_normalization(x: np.ndarray, norm: dict) -> np.ndarray:
    """Normalize one example or a batch exactly as `norm` (from fit_normalization) says.
    (C, T) | (B, C, T) | (P, F, T) | (B, P, F, T) -> same shape, float32."""
    kind = (norm or {}).get("kind", "none")
    x = np.asarray(x, dtype=np.float32)
    if kind == "none":
        return x
    if kind == "per_example":
        mid = x.mean(axis=-1, keepdims=True)
        spread = x.std(axis=-1, keepdims=True)
        return ((x - mid) / np.where(spread > _EPS, spread, 1.0)).astype(np.float32)
    if kind not in KINDS:
        raise DataError(f"stored normalization kind {kind!r} is not known; use one of {', '.join(KINDS)}")
    center = np.asarray(norm["center"], dtype=np.float32)
    scale = np.asarray(norm["scale"], dtype=np.float32)
    if x.shape[-center.ndim:-1] != center.shape[:-1]:
        raise DataError(f"input of shape {tuple(x.shape)} does not match the normalization fitted for "
                        f"{center.shape[:-1]} channels; featurize it with the run's data config")
    return ((x - center) / scale).astype(np.float32)
