"""Sigscope data: sources, windowing, features, normalization, augmentation, splits.

    from core import data
    bundle = data.load(cfg.data)              # -> DatasetBundle (train/val/test Datasets, ...)
    data.list_sources()                        # -> [{"name", "signal", "description", "options", ...}]

Inference reproduces the training pipeline with the same public functions:
    feats = data.featurize_audio(waveform, sr, cfg.data)    # audio file -> model input (unnormalized)
    wins = data.window_stream(imu_array, window, stride)     # (T, C) -> (N, C, window)
    x = data.apply_normalization(feats, bundle.normalization)
"""
from core.errors import DataError
from core.data.augment import list_augmentations
from core.data.bundle import DatasetBundle
from core.data.features import featurize_audio
from core.data.normalize import apply_normalization, fit_normalization
from core.data.pipeline import load
from core.data.sources import list_sources
from core.data.windowing import window_stream

__all__ = ["DataError", "DatasetBundle", "load", "list_sources", "list_augmentations",
           "featurize_audio", "window_stream", "apply_normalization", "fit_normalization"]
