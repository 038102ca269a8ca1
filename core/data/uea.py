"""UEA/UCR `.ts` classification files through aeon's loader.

    DataConfig(source="uea", options={"name": "BasicMotions"})     # a dataset aeon ships offline
    DataConfig(source="uea", path="MyData_TRAIN.ts")                # your files (+ MyData_TEST.ts)

The TRAIN/TEST division is kept as the fixed test set (split="fixed"). Series of unequal
length (e.g. JapaneseVowels) are zero-padded at the end to the longest one; the original
lengths are reported in info. There are no subjects: each case is its own group. The
sampling rate is not stored in .ts files: options.sample_rate (default 1.0 = "per sample").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.config import DataConfig
from core.errors import DataError
from core.data.examples import Examples
from core.data.paths import checked_path
from core.data.sources import SourceSpec, register_source, source_options
from core.spec import Param

OFFLINE = ("BasicMotions", "JapaneseVowels", "PickupGestureWiimoteZ", "GunPoint", "ArrowHead", "OSULeaf",
           "ItalyPowerDemand", "ACSF1")


def _pad(series: list[np.ndarray] | np.ndarray) -> tuple[np.ndarray, list[int]]:
    """List of (C, T_i) -> (N, C, max T) zero-padded, and the original lengths."""
    if isinstance(series, np.ndarray) and series.ndim == 3:
        return series.astype(np.float32), [series.shape[2]] * len(series)
    lengths = [s.shape[-1] for s in series]
    out = np.zeros((len(series), series[0].shape[0], max(lengths)), dtype=np.float32)
    for i, s in enumerate(series):
        out[i, :, :s.shape[-1]] = s
    return out, lengths


def _read_ts(path: Path):
    from aeon.datasets import load_from_ts_file
    try:
        return load_from_ts_file(str(path))
    except Exception as e:  # aeon raises IOError/ValueError/TsFileParseException variants
        raise DataError(f"{path}: not a readable .ts file ({e.__class__.__name__}: {e})") from None


def _ts_pair(path: Path) -> tuple[Path, Path | None]:
    if path.is_dir():
        trains = sorted(path.glob("*_TRAIN.ts"))
        if not trains:
            raise DataError(f"{path}: holds no *_TRAIN.ts file")
        path = trains[0]
    test = path.with_name(path.name.replace("_TRAIN", "_TEST"))
    return path, (test if test != path and test.exists() else None)


def load_uea(cfg: DataConfig) -> Examples:
    opts = source_options(cfg)
    if cfg.path:
        train_path, test_path = _ts_pair(checked_path(cfg))
        x_tr, y_tr = _read_ts(train_path)
        x_te, y_te = _read_ts(test_path) if test_path else ([], np.array([]))
        origin = str(train_path)
    else:
        name = opts["name"]
        from aeon.datasets import load_classification
        x_tr, y_tr = load_classification(name, split="train")
        x_te, y_te = load_classification(name, split="test")
        origin = f"aeon:{name}"
    series = list(x_tr) + list(x_te)
    if not series:
        raise DataError(f"{origin}: no series")
    x, lengths = _pad([np.asarray(s, dtype=np.float32) for s in series])
    labels = np.concatenate([np.asarray(y_tr).astype(str), np.asarray(y_te).astype(str)])
    names = sorted(set(labels.tolist()))
    y = np.array([names.index(l) for l in labels], dtype=np.int64)
    fixed = np.arange(len(y)) >= len(y_tr)
    ids = np.array([f"{'train' if not t else 'test'}:{i}" for i, t in enumerate(fixed)])
    if np.isnan(x).any():
        raise DataError(f"{origin}: contains missing values; fill them before loading")
    return Examples(x=x, y=y, groups=ids.copy(), ids=ids, class_names=names,
                    channel_names=[f"dim{c}" for c in range(x.shape[1])], sample_rate=float(opts["sample_rate"]),
                    signal="imu", fixed_test=fixed if fixed.any() else None,
                    info={"path": origin, "lengths": {"min": min(lengths), "max": max(lengths)},
                          "padded": min(lengths) != max(lengths), "train_cases": int(len(y_tr)),
                          "test_cases": int(len(y) - len(y_tr))})


def _files(cfg: DataConfig) -> list[Path]:
    if cfg.path:
        train, test = _ts_pair(checked_path(cfg))
        return [train] + ([test] if test else [])
    import aeon.datasets
    folder = Path(aeon.datasets.__file__).parent / "data" / str(cfg.options.get("name", "BasicMotions"))
    return sorted(folder.glob("*.ts")) if folder.exists() else []


register_source(SourceSpec(
    "uea", load_uea,
    "UEA/UCR .ts multivariate series via aeon (offline: BasicMotions, JapaneseVowels, ...); "
    "TRAIN/TEST kept for split='fixed'",
    signal="imu",
    options=(Param("name", "choice", "BasicMotions", "a dataset aeon ships offline (ignored when a path is given; "
                   "other UEA/UCR sets: download their .ts files and give path)", choices=OFFLINE, label="Dataset"),
             Param("sample_rate", "float", 1.0, "sampling rate (.ts files do not store it)", low=1e-3, high=1e6,
                   unit="Hz", label="Sample rate (Hz)", sweep=False)),
    default_data="aeon:BasicMotions", files=_files, windowed=False, suggested={"split": "fixed"}))
