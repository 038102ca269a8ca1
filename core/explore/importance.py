"""Which channel, moment or frequency band a trained run's accuracy rests on.

    imp = importance(run_id, by="channel")                        # permutation, 5 repeats, test split
    imp = importance(run_id, by="time", method="ablation")        # contiguous blocks set to the training mean
    imp = importance(audio_run_id, by="band")                     # mel-band blocks named by their Hz range
    imp.names, imp.drop, imp.low, imp.high                        # accuracy drop per unit with a 95 % interval
    imp.per_class                                                 # (K, U) recall drop per class

A unit (a channel, a block of time steps, a block of mel bands) is perturbed in every window
of the split at once and the run scores the split again; the accuracy drop from the unperturbed
score is that unit's importance.
- permutation: the unit's values are shuffled across windows (window i gets window perm(i)'s
  values there), so they keep their distribution but lose their link to the label. Repeated
  with different permutations (the same permutations for every unit, so units are compared on
  equal draws); the interval is mean ± t(0.975, R-1)·sd/√R over the R repeats (Student t).
- ablation: the unit is set to the training split's mean input there (the average training
  window, computed from the train split's inputs as normalized for the model). Deterministic:
  one pass, no interval (low = high = drop).
Time steps and neighbouring mel bands are strongly autocorrelated: shuffling one step leaves its
neighbours carrying nearly the same values, so the model barely notices and every step looks
unimportant. Contiguous blocks (DEFAULT_BLOCKS over the window) remove that redundancy.

For stack4 inputs (log-mel, MFCC, Δ, ΔΔ planes), a band is perturbed in the log-mel plane and the
other three planes are computed again from it (they are functions of the log-mel), so the band's
information is gone from every plane; channel importance of stack4 perturbs one plane at a time,
and the planes share information, so each plane alone may look less important than it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from core.errors import ConfigError
from core.explore.windows import SPLITS

DEFAULT_BLOCKS = 8  # contiguous blocks over the time axis (and over the mel bands)
DEFAULT_REPEATS = 5

# What the model's input is, as importance sees it (from the run's signal and audio features).
INPUT_KINDS = {
    "imu": "sensor channels over time (C, T)",
    "waveform": "one audio waveform (1, T)",
    "mel_channels": "log-mel bands as channels over frames (n_mels, T)",
    "cepstral_channels": "MFCCs (and their deltas) as channels over frames (C, T)",
    "spectrogram": "log-mel, MFCC, delta, delta-delta planes over mel rows and frames (4, n_mels, T)",
}


@dataclass(frozen=True)
class ImportanceUnit:
    """One way of cutting a model input into units whose importance is measured."""

    name: str
    label: str
    help: str
    kinds: tuple[str, ...]  # the INPUT_KINDS it applies to

    def allows(self, kind: str) -> bool:
        return kind in self.kinds


@dataclass(frozen=True)
class ImportanceMethod:
    name: str
    label: str
    help: str


IMPORTANCE_UNITS: dict[str, ImportanceUnit] = {u.name: u for u in (
    ImportanceUnit("channel", "Channel",
                   "each input channel (IMU axis, audio feature channel or stack4 plane) on its own",
                   ("imu", "mel_channels", "cepstral_channels", "spectrogram")),
    ImportanceUnit("sensor", "Sensor",
                   "the channels of one sensor together (named before '_': acc_x, acc_y, acc_z are 'acc'), "
                   "e.g. accelerometer against gyroscope", ("imu",)),
    ImportanceUnit("time", "Time",
                   "contiguous blocks of the window's time axis (single steps are autocorrelated, so blocks)",
                   tuple(INPUT_KINDS)),
    ImportanceUnit("band", "Frequency band",
                   "blocks of mel bands named by their Hz range (audio models on log-mel or stack4 features)",
                   ("mel_channels", "spectrogram")),
)}

IMPORTANCE_METHODS: dict[str, ImportanceMethod] = {m.name: m for m in (
    ImportanceMethod("permutation", "Permutation",
                     "the unit's values shuffled across windows; repeated, with a 95 % t-interval over repeats"),
    ImportanceMethod("ablation", "Ablation",
                     "the unit set to its training-split mean; deterministic, one pass"),
)}


@dataclass
class Importance:
    """Accuracy drop per unit when it is perturbed (see the module doc)."""

    by: str                     # "channel" | "time" | "band"
    method: str                 # "permutation" | "ablation"
    names: list[str]            # channel names / "0.00–0.32 s" / "0–310 Hz"
    baseline_accuracy: float
    drop: np.ndarray            # (U,) mean accuracy drop over repeats (baseline - perturbed)
    low: np.ndarray             # (U,) 95 % interval
    high: np.ndarray            # (U,)
    per_class: np.ndarray       # (K, U) recall drop per class (nan for a class absent from the split)
    class_names: list[str]
    repeats: int                # perturbations per unit actually scored (ablation: 1)
    n_windows: int
    run_id: str | None = None
    split: str = "test"
    seed: int = 0
    input_kind: str = ""
    extents: np.ndarray | None = None   # (U, 2): seconds for time, Hz for band; None for channels
    drops: np.ndarray | None = None     # (R, U) accuracy drop of each repeat
    baseline_recall: np.ndarray | None = None  # (K,)
    interval: str = ""                  # how low/high were computed
    seconds: float = 0.0

    @property
    def order(self) -> np.ndarray:
        """Unit indices, most important first."""
        return np.argsort(-self.drop, kind="stable")

    def to_dict(self) -> dict:
        """JSON-able: arrays as lists, nan (a class absent from the split) as None."""
        def plain(a):
            if a is None:
                return None
            return _nan_to_none(np.asarray(a, dtype=float).tolist())

        return {"run_id": self.run_id, "by": self.by, "method": self.method, "split": self.split,
                "seed": self.seed, "input_kind": self.input_kind, "n_windows": self.n_windows,
                "repeats": self.repeats, "baseline_accuracy": self.baseline_accuracy, "interval": self.interval,
                "names": list(self.names), "class_names": list(self.class_names),
                "drop": plain(self.drop), "low": plain(self.low), "high": plain(self.high),
                "per_class": plain(self.per_class), "extents": plain(self.extents), "drops": plain(self.drops),
                "baseline_recall": plain(self.baseline_recall),
                "ranking": [self.names[i] for i in self.order], "seconds": self.seconds}


def _nan_to_none(value):
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and not np.isfinite(value) else value


# ---- what the model's input is -------------------------------------------------------------
def input_kind(predictor) -> str:
    """The INPUT_KINDS key of a run's model input."""
    if predictor.signal != "audio":
        return "imu"
    return {"raw": "waveform", "logmel": "mel_channels", "mfcc": "cepstral_channels",
            "mfcc_deltas": "cepstral_channels", "stack4": "spectrogram"}[predictor.features]


def allowed_units(predictor) -> list[str]:
    kind = input_kind(predictor)
    return [name for name, unit in IMPORTANCE_UNITS.items() if unit.allows(kind)]


def _check_choices(predictor, by: str, method: str, repeats: int, split: str) -> str:
    if by not in IMPORTANCE_UNITS:
        raise ConfigError(f"by={by!r} is not known; use one of {', '.join(IMPORTANCE_UNITS)}")
    if method not in IMPORTANCE_METHODS:
        raise ConfigError(f"method={method!r} is not known; use one of {', '.join(IMPORTANCE_METHODS)}")
    if not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ConfigError(f"repeats={repeats!r}: give at least 1 (5 or more for a useful interval)")
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}; use train, val or test")
    kind = input_kind(predictor)
    if not IMPORTANCE_UNITS[by].allows(kind):
        what = {"imu": f"an IMU model ({', '.join(predictor.channel_names) or 'sensor channels'})",
                "waveform": "a waveform model (one audio channel)",
                "cepstral_channels": f"an audio model on {predictor.features} features (cepstral coefficients, "
                                     "not frequency bands)"}.get(kind, f"a {kind} model")
        why = {"band": "its input has no mel-frequency axis; band importance is for audio models on logmel or "
                       "stack4 features",
               "channel": "its input has a single channel"}.get(by, "")
        raise ConfigError(f"--by {by} does not apply to run {predictor.run_id}, {what}: {why}; "
                          f"use --by {' or --by '.join(allowed_units(predictor))}")
    return kind


# ---- units ------------------------------------------------------------------------------------
@dataclass
class _Plan:
    """What is perturbed: `base` (N, ...) arrays, one index (over the axes after the batch axis)
    per unit, and how a perturbed base becomes model inputs."""

    names: list[str]
    index: list[tuple]
    base: np.ndarray
    to_inputs: Callable[[np.ndarray], np.ndarray]
    extents: np.ndarray | None = None
    train_mean: Callable[[], np.ndarray] | None = None  # the training mean of `base` (one window), for ablation
    notes: list[str] = field(default_factory=list)


def _blocks(length: int, blocks: int | None, what: str) -> list[tuple[int, int]]:
    n = DEFAULT_BLOCKS if blocks is None else blocks
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"blocks={blocks!r}: give at least 1")
    if n > length:
        if blocks is not None:
            raise ConfigError(f"blocks={blocks} exceeds the {length} {what} of the model input; give at most {length}")
        n = length
    edges = np.linspace(0, length, n + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _hz(value: float) -> str:
    return f"{value / 1000:.1f} kHz" if value >= 10_000 else f"{value:.0f}"


def band_extents(n_mels: int, sample_rate: float, bands: list[tuple[int, int]]) -> np.ndarray:
    """(B, 2) Hz range of each block [a, b) of mel rows: row i is the mel filter centred on
    librosa.mel_frequencies(n_mels + 2, fmax=sr/2)[i + 1]; neighbouring blocks meet halfway
    (on the mel scale) between their outer rows' centres; the first starts at 0, the last ends at sr/2."""
    import librosa

    top = librosa.hz_to_mel(sample_rate / 2.0)  # the filters librosa.filters.mel builds: fmin 0, fmax sr/2, Slaney
    step = top / (n_mels + 1)  # row i's centre is (i + 1) * step on the mel scale
    out = []
    for a, b in bands:
        low = 0.0 if a == 0 else float(librosa.mel_to_hz((a + 0.5) * step))
        high = sample_rate / 2.0 if b == n_mels else float(librosa.mel_to_hz((b + 0.5) * step))
        out.append((low, high))
    return np.asarray(out, dtype=float)


def _band_name(low: float, high: float) -> str:
    return f"{low:.0f}–{high:.0f} Hz"


def _time_plan(predictor, x: np.ndarray, blocks: int | None, train: Callable[[], np.ndarray]) -> _Plan:
    length = x.shape[-1]
    spans = _blocks(length, blocks, "time steps")
    step, offset = predictor.step_seconds, predictor.step_offset
    window = predictor.window_seconds
    extents = np.clip(np.array([(a * step + offset, b * step + offset) for a, b in spans], dtype=float), 0.0, window)
    names = [f"{lo:.2f}–{hi:.2f} s" for lo, hi in extents]
    return _Plan(names, [(Ellipsis, slice(a, b)) for a, b in spans], x, lambda w: w, extents,
                 lambda: _mean_window(train()))


def _channel_plan(predictor, x: np.ndarray, train: Callable[[], np.ndarray]) -> _Plan:
    from core.data.features import feature_channel_names

    n = x.shape[1]
    names = list(predictor.channel_names)
    if predictor.signal == "audio" and len(names) != n:
        names = feature_channel_names(predictor.config.data, n)
    if len(names) != n:
        names = [f"ch{i}" for i in range(n)]
    return _Plan(names, [(c,) for c in range(n)], x, lambda w: w, None, lambda: _mean_window(train()))


def _sensor_plan(predictor, x: np.ndarray, train: Callable[[], np.ndarray]) -> _Plan:
    channels = _channel_plan(predictor, x, train)
    sensors: dict[str, list[int]] = {}
    for c, name in enumerate(channels.names):
        sensors.setdefault(name.split("_", 1)[0], []).append(c)
    if len(sensors) < 2:
        raise ConfigError(f"run {predictor.run_id}'s channels {channels.names} are one sensor (named before '_'); "
                          "use --by channel")
    return _Plan(list(sensors), [(members,) for members in sensors.values()], x, lambda w: w, None,
                 channels.train_mean)


def _band_plan(predictor, x: np.ndarray, kind: str, blocks: int | None, features: Callable[[str], np.ndarray],
               train: Callable[[], np.ndarray], split: str) -> _Plan:
    from core.data.normalize import apply_normalization

    cfg = predictor.config.data
    n_mels = int(cfg.n_mels)
    bands = _blocks(n_mels, blocks, "mel bands")
    extents = band_extents(n_mels, predictor.sample_rate, bands)
    names = [_band_name(lo, hi) for lo, hi in extents]
    index = [(slice(a, b),) for a, b in bands]
    if kind == "mel_channels":  # (n_mels, T): the channels are the bands
        return _Plan(names, index, x, lambda w: w, extents, lambda: _mean_window(train()))
    # stack4: perturb the log-mel plane, then derive MFCC, delta, delta-delta from it again
    logmel = np.ascontiguousarray(features(split)[:, 0])  # (N, n_mels, T), un-normalized
    normalization = predictor.normalization

    def to_inputs(w: np.ndarray) -> np.ndarray:
        return apply_normalization(stack4_from_logmel(w, cfg), normalization)

    return _Plan(names, index, logmel, to_inputs, extents,
                 lambda: _mean_window(features("train")[:, 0]),
                 ["stack4: the band is perturbed in the log-mel plane and MFCC, delta and delta-delta are "
                  "computed again from it"])


def stack4_from_logmel(logmel: np.ndarray, cfg) -> np.ndarray:
    """(N, n_mels, T) log-mel -> (N, 4, n_mels, T) stack4 planes, exactly as featurize_audio builds them."""
    from core.data.features import _delta, _mfcc  # the same transforms; kept private in features.py

    cepstra = _mfcc(logmel, cfg.n_mels - (0 if cfg.mfcc_c0 else 1), cfg.mfcc_c0).astype(np.float32)
    if not cfg.mfcc_c0:
        cepstra = np.concatenate([cepstra, np.zeros_like(cepstra[..., :1, :])], axis=-2)
    planes = [logmel.astype(np.float32), cepstra, _delta(cepstra, 1), _delta(cepstra, 2)]
    return np.stack(planes, axis=-3)


def _mean_window(x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        raise ConfigError("ablation needs the training mean, but the run's train split is empty; use "
                          "--method permutation")
    return x.mean(axis=0, dtype=np.float64).astype(np.float32)


# ---- scoring ----------------------------------------------------------------------------------
def _recall(pred: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(y, minlength=k).astype(float)
    hits = np.bincount(y[pred == y], minlength=k).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)


def _interval(drops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95 % Student-t interval over repeats (axis 0); one repeat: the point itself."""
    mean = drops.mean(axis=0)
    r = drops.shape[0]
    if r < 2:
        return mean, mean.copy(), mean.copy()
    from scipy.stats import t

    half = t.ppf(0.975, r - 1) * drops.std(axis=0, ddof=1) / np.sqrt(r)
    return mean, mean - half, mean + half


def importance(run_id: str, by: str = "channel", method: str = "permutation", repeats: int = DEFAULT_REPEATS,
               split: str = "test", seed: int = 0, blocks: int | None = None, store=None,
               progress: Callable[[int, int, str], None] | None = None) -> Importance:
    """Accuracy drop of run `run_id` on its `split` when each unit (`by`) is perturbed (`method`).

    by: "channel", "time" (blocks over the window) or "band" (blocks of mel bands; logmel/stack4 audio).
    method: "permutation" (shuffled across windows, `repeats` times) or "ablation" (training mean).
    blocks: time or band blocks (default DEFAULT_BLOCKS, fewer when the axis is shorter).
    progress(done, total, stage): called before the first unit and after each unit.
    Errors (unknown by/method, repeats < 1, a split without windows, band on an IMU run) are ConfigError."""
    import time

    from core.data import load
    from core.infer.evaluate import split_inputs
    from core.infer.loading import load_run, one_blas_thread

    started = time.perf_counter()
    if by not in IMPORTANCE_UNITS or method not in IMPORTANCE_METHODS or split not in SPLITS \
            or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        _check_choices(_Unloaded(), by, method, repeats, split)  # the message without loading the run
    predictor = load_run(run_id, store)
    kind = _check_choices(predictor, by, method, repeats, split)
    bundle = load(predictor.config.data)
    x = split_inputs(predictor, bundle, split)
    y = np.asarray(getattr(bundle, split).y, dtype=np.int64)
    if len(x) == 0:
        raise ConfigError(f"run {run_id} has no {split} windows (its data.{split}_fraction or groups leave that "
                          f"split empty); choose another --split")
    cached: dict[str, np.ndarray] = {}

    def inputs(name: str) -> np.ndarray:  # normalized model inputs of a split, loaded once
        if name not in cached:
            cached[name] = x if name == split else split_inputs(predictor, bundle, name)
        return cached[name]

    def features(name: str) -> np.ndarray:  # un-normalized features of a split (stack4 bands)
        from core.data.features import featurize_audio
        key = "features:" + name
        if key not in cached:
            ds = getattr(bundle, name)
            cached[key] = featurize_audio(ds.x, predictor.sample_rate, predictor.config.data) \
                if ds.featurize is not None else np.asarray(ds.x)
        return cached[key]

    if by == "channel":
        plan = _channel_plan(predictor, x, lambda: inputs("train"))
    elif by == "sensor":
        plan = _sensor_plan(predictor, x, lambda: inputs("train"))
    elif by == "time":
        plan = _time_plan(predictor, x, blocks, lambda: inputs("train"))
    else:
        plan = _band_plan(predictor, x, kind, blocks, features, lambda: inputs("train"), split)

    k = len(predictor.class_names)
    units = len(plan.names)
    rng = np.random.default_rng(seed)
    n = len(x)
    permutations = [rng.permutation(n) for _ in range(repeats)] if method == "permutation" else [None]
    fill = plan.train_mean() if method == "ablation" else None
    report = progress or (lambda done, total, stage: None)

    with one_blas_thread():
        def predict(base: np.ndarray) -> np.ndarray:
            return predictor.logits(np.ascontiguousarray(plan.to_inputs(base), dtype=np.float32)).argmax(axis=1)

        report(0, units, "baseline")
        base_pred = predict(plan.base)
        base_acc = float((base_pred == y).mean())
        base_recall = _recall(base_pred, y, k)
        work = plan.base.copy()
        drops = np.zeros((len(permutations), units))
        recall_drops = np.zeros((len(permutations), k, units))
        for u, index in enumerate(plan.index):
            view = (slice(None), *index)
            original = plan.base[view]
            for r, perm in enumerate(permutations):
                work[view] = original[perm] if perm is not None else fill[index]
                pred = predict(work)
                drops[r, u] = base_acc - float((pred == y).mean())
                recall_drops[r, :, u] = base_recall - _recall(pred, y, k)
            work[view] = original
            report(u + 1, units, f"{by} {plan.names[u]}")

    drop, low, high = _interval(drops)
    interval = ("95 % Student-t interval over {} permutations (mean ± t·sd/√n)".format(len(permutations))
                if method == "permutation" and len(permutations) > 1 else
                "none: one permutation" if method == "permutation" else
                "none: ablation is deterministic (low = high = drop)")
    if plan.notes:
        interval += "; " + "; ".join(plan.notes)
    return Importance(by=by, method=method, names=plan.names, baseline_accuracy=base_acc, drop=drop, low=low,
                      high=high, per_class=recall_drops.mean(axis=0), class_names=list(predictor.class_names),
                      repeats=len(permutations), n_windows=n, run_id=run_id, split=split, seed=seed,
                      input_kind=kind, extents=plan.extents, drops=drops, baseline_recall=base_recall,
                      interval=interval, seconds=time.perf_counter() - started)


class _Unloaded:
    """Stands in for a predictor when the arguments are wrong before any run is loaded."""

    signal, features, channel_names, run_id = "imu", "raw", [], None


__all__ = ["DEFAULT_BLOCKS", "IMPORTANCE_METHODS", "IMPORTANCE_UNITS", "INPUT_KINDS", "Importance",
           "ImportanceMethod", "ImportanceUnit", "allowed_units", "band_extents", "importance", "input_kind",
           "stack4_from_logmel"]
