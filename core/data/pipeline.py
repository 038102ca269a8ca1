"""DataConfig -> DatasetBundle: source -> (cache) -> features -> split -> normalization -> datasets.

    bundle = load(DataConfig(source="hapt", options={"classes": "basic6"}, split="subject"))
    x, y = bundle.train[0]          # float32 tensor of bundle.input_shape, int label
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from core.config import DataConfig
from core.errors import DataError
from core.data.augment import build_augmenter
from core.data.bundle import DatasetBundle
from core.data.cache import cache_key, default_cache_dir, read_cached, write_cached
from core.data.datasets import SignalDataset
from core.data.examples import Examples
from core.data.features import (INPUT_KIND, check_feature_config, feature_channel_names,
                                feature_normalization_methods, featurize_audio)
from core.data.normalize import audio_energy_rule, fit_normalization
from core.data.sources import SourceSpec, get_source
from core.data.splits import fold_split, split_indices
from core.data.windowing import seconds_or_samples

# Parameters that change what a source produces (and so the cache key) ...
_SOURCE_PARAMS = ("source", "path", "options", "window", "stride", "label_mode", "sample_rate", "clip_seconds")
# ... and those that change the audio features on top of it.
_FEATURE_PARAMS = ("features", "n_mels", "n_fft", "hop_length", "n_mfcc", "mfcc_c0")
_FEATURE_BATCH = 256  # clips featurized per vectorized librosa call


def load(cfg: DataConfig | dict, cache_dir: str | Path | None = None) -> DatasetBundle:
    """Resolve a data config into train/val/test Datasets, class and channel names, rate,
    input kind/shape, the training-split normalization and a JSON-able `info` report."""
    if isinstance(cfg, dict):
        cfg = DataConfig.from_dict(cfg)
    spec = get_source(cfg.source)
    cfg = _windows_in_samples(cfg, spec)
    started = time.perf_counter()
    raw, raw_hit = _cached(spec, cfg, cache_dir, _SOURCE_PARAMS, lambda: spec.load(cfg))
    raw = _cap(raw, cfg)
    if spec.signal == "imu" and cfg.features != "raw":
        raise DataError(f"features={cfg.features!r} is for audio; IMU source {cfg.source!r} takes features='raw'")
    _check_classes(raw, cfg)
    if spec.signal == "audio":
        check_feature_config(cfg)
        feats, feat_hit = _cached(spec, cfg, cache_dir, _SOURCE_PARAMS + _FEATURE_PARAMS + ("max_examples", "split_seed"),
                                  lambda: _featurize(raw, cfg))
        input_kind = INPUT_KIND[cfg.features]
        channel_names = feature_channel_names(cfg, feats.x.shape[1])
    else:
        feats, feat_hit = raw, raw_hit
        input_kind = "imu"
        channel_names = raw.channel_names
    train_idx, val_idx, test_idx = split_indices(raw, cfg)
    train_idx, test_idx = fold_split(raw, cfg, train_idx, test_idx)
    labels, train_idx, val_idx, marked = _apply_marks(raw, cfg, train_idx, val_idx)

    methods = feature_normalization_methods(cfg, feats.x.shape[1]) if spec.signal == "audio" else None
    energy = audio_energy_rule(cfg.features, cfg.mfcc_c0, cfg.n_mels) if spec.signal == "audio" else None
    norm = fit_normalization(feats.x[train_idx], cfg.normalization, methods, channel_names, energy=energy)
    augmenter = build_augmenter(cfg.augmentations(), raw.signal, raw.sample_rate,
                                n_channels=raw.x.shape[1] if raw.signal == "imu" else None,
                                features=cfg.features)

    def subset(idx: np.ndarray, split: str, augment) -> SignalDataset:
        on_the_fly = (augment is not None and augment.has_signal_steps and spec.signal == "audio")
        if on_the_fly:  # waveform augmentations need the waveform: featurize per item
            return SignalDataset(raw.x[idx], labels[idx], raw.groups[idx], raw.ids[idx], norm, augment,
                                 featurize=lambda w: featurize_audio(w, raw.sample_rate, cfg), split=split)
        return SignalDataset(feats.x[idx], labels[idx], raw.groups[idx], raw.ids[idx], norm, augment, split=split)

    train = subset(train_idx, "train", augmenter)
    val = subset(val_idx, "val", None)
    test = subset(test_idx, "test", None)
    n_classes = len(raw.class_names)
    info = dict(raw.info)
    info.update({
        "source": cfg.source, "signal": raw.signal, "n_examples": len(raw),
        "class_counts": raw.class_counts(),
        "split": cfg.split,
        **({"folds": {"folds": cfg.folds, "fold": cfg.fold}} if cfg.folds is not None else {}),
        **({"marks": marked} if marked else {}),
        "split_sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "split_class_counts": {"train": train.class_counts(n_classes), "val": val.class_counts(n_classes),
                               "test": test.class_counts(n_classes)},
        "split_groups": {name: sorted(set(ds.groups.astype(str).tolist()))[:200]
                         for name, ds in (("train", train), ("val", val), ("test", test))},
        "cache": "hit" if (raw_hit and feat_hit) else ("off" if spec.files is None else "miss"),
        "load_seconds": round(time.perf_counter() - started, 3),
    })
    return DatasetBundle(train=train, val=val, test=test, class_names=list(raw.class_names),
                         channel_names=list(channel_names), sample_rate=float(raw.sample_rate),
                         input_kind=input_kind, input_shape=tuple(int(d) for d in feats.x.shape[1:]),
                         normalization=norm, info=info)


def _windows_in_samples(cfg: DataConfig, spec: SourceSpec) -> DataConfig:
    """window/stride given in seconds ("2.56s" or 2.56) -> samples at the source's rate."""
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (cfg.window, cfg.stride)):
        return cfg
    rate = cfg.options.get("sample_rate") or spec.nominal_rate
    if spec.signal == "audio":
        rate = cfg.sample_rate
    if not rate:
        raise DataError(f"window={cfg.window!r}, stride={cfg.stride!r} in seconds need the sampling rate of "
                        f"{cfg.source}; give options.sample_rate or the window in samples")
    return dataclasses.replace(cfg, window=seconds_or_samples(cfg.window, rate, "window"),
                               stride=seconds_or_samples(cfg.stride, rate, "stride"))


def _cached(spec: SourceSpec, cfg: DataConfig, cache_dir, params: tuple, compute) -> tuple[Examples, bool]:
    """compute() through the disk cache when the source names its input files."""
    if spec.files is None:
        return compute(), False
    files = spec.files(cfg)
    key = cache_key(files, {name: getattr(cfg, name) for name in params})
    folder = default_cache_dir(cache_dir)
    hit = read_cached(folder, key)
    if hit is not None:
        return hit, True
    result = compute()
    try:
        write_cached(folder, key, result)
    except OSError as e:  # a read-only or full disk costs speed, not the run
        result.info.setdefault("warnings", []).append(f"feature cache not written to {folder}: {e}")
    return result, False


def _cap(ex: Examples, cfg: DataConfig) -> Examples:
    """At most cfg.max_examples, drawn per class in proportion (seeded), at least one each."""
    if cfg.max_examples is None or len(ex) <= cfg.max_examples:
        return ex
    if cfg.max_examples < 2:
        raise DataError(f"max_examples={cfg.max_examples} must be at least 2")
    rng = np.random.default_rng(cfg.split_seed)
    keep = []
    for label in np.unique(ex.y):
        members = np.flatnonzero(ex.y == label)
        share = max(1, int(round(cfg.max_examples * len(members) / len(ex))))
        keep.append(rng.choice(members, size=min(share, len(members)), replace=False))
    return ex.subset(np.sort(np.concatenate(keep)))


def _apply_marks(raw: Examples, cfg: DataConfig, train: np.ndarray, val: np.ndarray):
    """Explore's marks (cfg.exclude, cfg.relabel) on the train and validation windows; the test
    split is left as it is so runs stay comparable on the same windows. (labels, train, val, a
    report of what was applied) — ids not in those splits are counted, not refused: a mark made
    on one split of the data may fall in another split's windows."""
    if not cfg.exclude and not cfg.relabel:
        return raw.y, train, val, {}
    if not isinstance(cfg.exclude, list) or not isinstance(cfg.relabel, dict):
        raise DataError("data.exclude must be a list of window ids and data.relabel an object of "
                        "window id -> class name")
    unknown = sorted({str(v) for v in cfg.relabel.values()} - set(raw.class_names))
    if unknown:
        raise DataError(f"data.relabel names class(es) {unknown[:5]} that the data does not have; "
                        f"its classes are {raw.class_names}")
    ids = raw.ids.astype(str)
    trained = np.concatenate([train, val])
    labels = raw.y.copy()
    relabel = {str(k): raw.class_names.index(str(v)) for k, v in cfg.relabel.items()}
    relabelled = [i for i in trained if ids[i] in relabel]
    for i in relabelled:
        labels[i] = relabel[ids[i]]
    excluded = set(str(i) for i in cfg.exclude)
    keep = lambda idx: idx[~np.isin(ids[idx], list(excluded))] if excluded else idx  # noqa: E731
    new_train, new_val = keep(train), keep(val)
    if len(new_train) == 0:
        raise DataError(f"data.exclude leaves no training windows (it names {len(excluded)}); remove some marks")
    applied = {"excluded": int(len(trained) - len(new_train) - len(new_val)), "relabelled": len(relabelled)}
    marked = excluded | set(relabel)
    applied["not_in_train_or_val"] = len(marked - set(ids[trained].tolist()))
    return labels, new_train, new_val, applied


def _check_classes(ex: Examples, cfg: DataConfig) -> None:
    present = [name for name, n in ex.class_counts().items() if n > 0]
    where = cfg.path or f"{cfg.source}'s default data"
    if len(ex) == 0:
        raise DataError(f"{where}: no labelled examples (windows) came out; check the label column, "
                        f"window={cfg.window} against the recording lengths, and the class options")
    if len(present) < 2:
        raise DataError(f"{where}: only one class ({present[0]!r}) has examples; a classifier needs at "
                        "least two — add recordings of other classes or choose another label column")


def _featurize(raw: Examples, cfg: DataConfig) -> Examples:
    chunks = [featurize_audio(raw.x[i:i + _FEATURE_BATCH], raw.sample_rate, cfg)
              for i in range(0, len(raw), _FEATURE_BATCH)]
    x = np.concatenate(chunks).astype(np.float32)
    return Examples(x=x, y=raw.y, groups=raw.groups, ids=raw.ids, class_names=raw.class_names,
                    channel_names=feature_channel_names(cfg, x.shape[1]), sample_rate=raw.sample_rate,
                    signal=raw.signal, info=raw.info, fixed_test=raw.fixed_test, train_only=raw.train_only)
