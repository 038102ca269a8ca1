"""Normalization fitted on the training split only, stored as JSON, re-applied exactly.

    norm = fit_normalization(train_x, kind="zscore", methods=["zscore"] * C)  # JSON-able dict
    x = apply_normalization(x, norm)      # one example (C, T) / (P, F, T) or a batch of them

kinds:
- "none":        identity.
- "zscore":      per channel (IMU channels, feature rows; per plane x frequency bin for
                 (P, F, T) images) (x - mean) / std, except planes whose method is "robust".
- "robust":      (x - median) / (1.4826 * MAD) everywhere (MAD scaled to match std on Gaussians).
- "per_example": every example standardized per channel by its own mean/std at apply time.
- "per_utterance": as per_example, but the mean/std come from the utterance's voiced frames
                 only (frame energy within `top_db` of its loudest frame), so the zero padding
                 of a short clip and its silences do not set the statistics (cepstral mean and
                 variance normalization). Audio features only; the energy is read from the
                 features themselves (`energy` in the dict, see audio_energy_rule).
The stack4 image uses zscore for the log-mel and MFCC planes and robust MAD for the delta planes.
"""
from __future__ import annotations

import numpy as np

from core.errors import DataError

KIND_HELP = {"zscore": "per channel (x - mean) / std, fitted on the training split only",
             "robust": "per channel (x - median) / (1.4826 MAD), fitted on the training split only",
             "per_example": "each example by its own mean and std",
             "per_utterance": "audio features: each clip by the statistics of its voiced frames only, so "
                              "padding and silence do not set them",
             "none": "as read"}
KINDS = tuple(KIND_HELP)
_EPS = 1e-8
_MAD_TO_STD = 1.4826


def fit_normalization(train_x: np.ndarray, kind: str, methods: list[str] | None = None,
                      channel_names: list[str] | None = None, energy: dict | None = None) -> dict:
    """Statistics of `train_x` (N, C, T) or (N, P, F, T) as a JSON-able dict.

    methods: one of "zscore"/"robust" per axis-1 channel (plane); defaults from `kind`.
    Statistics are per channel for (N, C, T) and per (plane, frequency bin) for images.
    energy: for "per_utterance", how to read a frame's energy (audio_energy_rule).
    """
    if kind not in KINDS:
        raise DataError(f"normalization={kind!r} is not known; use one of {', '.join(KINDS)}")
    if kind == "per_utterance":
        if not energy:
            raise DataError("normalization='per_utterance' needs audio features (log-mel, MFCC with c0 or "
                            "stack4) to find the voiced frames; use 'per_example' for other inputs")
        return {"kind": kind, "energy": dict(energy), "top_db": TOP_DB}
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
    if kind == "per_utterance":
        return _per_utterance(x, norm)
    if kind not in KINDS:
        raise DataError(f"stored normalization kind {kind!r} is not known; use one of {', '.join(KINDS)}")
    center = np.asarray(norm["center"], dtype=np.float32)
    scale = np.asarray(norm["scale"], dtype=np.float32)
    if x.shape[-center.ndim:-1] != center.shape[:-1]:
        raise DataError(f"input of shape {tuple(x.shape)} does not match the normalization fitted for "
                        f"{center.shape[:-1]} channels; featurize it with the run's data config")
    return ((x - center) / scale).astype(np.float32)


# ---- per_utterance: statistics over voiced frames ----------------------------------------------
TOP_DB = 30.0  # frames more than this below the utterance's loudest frame are silence or padding
_NATS_PER_DB = np.log(10.0) / 10.0  # a power ratio in dB -> natural-log units (log-mel is ln)


def audio_energy_rule(features: str, mfcc_c0: bool, n_mels: int) -> dict | None:
    """How per_utterance reads a frame's log energy from audio features: the mean log-mel over
    the mel rows (logmel; plane 0 of stack4), or c0 / sqrt(n_mels) (the orthonormal DCT's c0 is
    that mean times sqrt(n_mels)). None where the features hold no energy (raw, MFCC without c0)."""
    if features == "logmel":
        return {"rows": "mean", "plane": None, "scale": 1.0}
    if features == "stack4":
        return {"rows": "mean", "plane": 0, "scale": 1.0}
    if features in ("mfcc", "mfcc_deltas") and mfcc_c0:  # c0 is row 0 of both
        return {"rows": "first", "plane": None, "scale": float(1.0 / np.sqrt(n_mels))}
    return None


def voiced_frames(x: np.ndarray, energy: dict, top_db: float = TOP_DB) -> np.ndarray:
    """(…, C, T) or (…, P, F, T) features -> (…, T) bool: frames within top_db of the loudest."""
    grid = x[..., energy["plane"], :, :] if energy.get("plane") is not None else x
    e = (grid[..., 0, :] if energy["rows"] == "first" else grid.mean(axis=-2)) * energy["scale"]
    return e >= e.max(axis=-1, keepdims=True) - top_db * _NATS_PER_DB


def _per_utterance(x: np.ndarray, norm: dict) -> np.ndarray:
    voiced = voiced_frames(x, norm["energy"], norm.get("top_db", TOP_DB))  # (..., T)
    n_lead = x.ndim - voiced.ndim  # channel axes between the batch axes and time
    w = voiced.reshape(voiced.shape[:-1] + (1,) * n_lead + voiced.shape[-1:]).astype(np.float32)
    count = w.sum(axis=-1, keepdims=True)  # >= 1: the loudest frame is always voiced
    mid = (x * w).sum(axis=-1, keepdims=True) / count
    spread = np.sqrt((((x - mid) ** 2) * w).sum(axis=-1, keepdims=True) / count)
    return ((x - mid) / np.where(spread > _EPS, spread, 1.0)).astype(np.float32)

