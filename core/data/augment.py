"""On-the-fly augmentations for the training split only; each keeps shape and label.

    aug = build_augmenter(cfg.augmentations(), signal="imu", sample_rate=50)
    x = aug.on_signal(x, rng)       # raw signal, physical units: (C, T) IMU or (..., T) waveform
    f = aug.on_features(f, rng)     # after featurizing and normalization (masks set to 0 = mean)

Each entry of cfg.augment is {"name", "p", "params"}; `AUGMENTATIONS` lists them with
their parameters and defaults (also shown by `python -m core data list --json`).
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from core.config import AugmentConfig
from core.errors import DataError
from core.spec import FROM_SIGNATURE, Param


# ---- waveform (audio) ------------------------------------------------------------------

def noise(x: np.ndarray, rng: np.random.Generator, sr: float, snr_db=(10.0, 30.0)) -> np.ndarray:
    """Additive white noise at a signal-to-noise ratio drawn from snr_db (dB)."""
    power = float(np.mean(x ** 2)) + 1e-12
    snr = rng.uniform(*snr_db)
    return x + rng.normal(0.0, math.sqrt(power / 10 ** (snr / 10)), size=x.shape).astype(x.dtype)


def time_shift(x: np.ndarray, rng: np.random.Generator, sr: float, max_fraction=0.1) -> np.ndarray:
    """Shift along time by up to max_fraction of the length, filling with zeros. (..., T)"""
    t = x.shape[-1]
    shift = int(rng.integers(-int(max_fraction * t), int(max_fraction * t) + 1))
    out = np.zeros_like(x)
    if shift >= 0:
        out[..., shift:] = x[..., :t - shift]
    else:
        out[..., :t + shift] = x[..., -shift:]
    return out


def _fit_length(y: np.ndarray, t: int) -> np.ndarray:
    if y.shape[-1] >= t:
        return y[..., :t]
    pad = [(0, 0)] * (y.ndim - 1) + [(0, t - y.shape[-1])]
    return np.pad(y, pad)


STRETCH_N_FFT = 256


def stretch(y: np.ndarray, rate: float, n_fft: int = STRETCH_N_FFT) -> np.ndarray:
    """Phase-vocoder time stretch of (..., T) to round(T / rate) samples, pitch kept: the
    algorithm of librosa.effects.time_stretch (its STFT, phase vocoder and inverse STFT; outputs
    agree to 0.3 % of the peak) in numpy. librosa's own runs numba functions whose first call
    compiles them: about 40 s in a process whose numba cache is cold and 5 s with it warm, paid
    by every run process that used this augmentation (measured here)."""
    from core.data.features import hann, stft

    hop = n_fft // 4
    spectrum = np.moveaxis(stft(np.asarray(y, dtype=np.float64), n_fft, hop), -2, -1)  # (..., bins, frames)
    steps = np.arange(0, spectrum.shape[-1], rate, dtype=np.float64)
    advance = np.linspace(0, np.pi * hop, spectrum.shape[-2])  # a bin's expected phase advance per hop
    padded = np.pad(spectrum, [(0, 0)] * (spectrum.ndim - 1) + [(0, 2)])
    columns = steps.astype(int)
    left, right = padded[..., columns], padded[..., columns + 1]
    alpha = steps % 1.0
    magnitude = (1 - alpha) * np.abs(left) + alpha * np.abs(right)
    dphase = np.angle(right) - np.angle(left) - advance[:, None]
    dphase -= 2.0 * np.pi * np.round(dphase / (2.0 * np.pi))
    # each output frame's phase: the first frame's, advanced by every earlier step's increment
    increments = np.cumsum(advance[:, None] + dphase, axis=-1)
    phase = np.angle(spectrum[..., :1]) + np.concatenate([np.zeros_like(increments[..., :1]), increments[..., :-1]],
                                                         axis=-1)
    out = magnitude * np.exp(1j * phase)
    # inverse STFT: windowed frames overlap-added, divided by the summed squared window
    window = hann(n_fft).astype(np.float64)
    frames = np.fft.irfft(np.moveaxis(out, -1, -2), n=n_fft, axis=-1) * window  # (..., frames, n_fft)
    total = n_fft + hop * (frames.shape[-2] - 1)
    signal, norm, squared = np.zeros(frames.shape[:-2] + (total,)), np.zeros(total), window ** 2
    for i in range(frames.shape[-2]):
        signal[..., i * hop:i * hop + n_fft] += frames[..., i, :]
        norm[i * hop:i * hop + n_fft] += squared
    signal = signal / np.where(norm > np.finfo(np.float32).tiny, norm, 1.0)
    return _fit_length(signal[..., n_fft // 2:], int(round(y.shape[-1] / rate)))


def time_stretch(x: np.ndarray, rng: np.random.Generator, sr: float, rate=(0.8, 1.25)) -> np.ndarray:
    """Phase-vocoder time stretch (pitch kept) by a rate drawn from `rate`, cropped/padded back."""
    r = float(rng.uniform(*rate))
    return _fit_length(stretch(x, r), x.shape[-1]).astype(np.float32)


def pitch_shift(x: np.ndarray, rng: np.random.Generator, sr: float, semitones=(-2.0, 2.0)) -> np.ndarray:
    """Pitch shift (duration kept) by a number of semitones drawn from `semitones`: stretched by
    2^(-semitones/12), then resampled back (soxr, high quality), as librosa.effects.pitch_shift."""
    import soxr

    steps = float(rng.uniform(*semitones))
    rate = 2.0 ** (-steps / 12.0)
    stretched = stretch(x, rate)
    y = soxr.resample(np.moveaxis(stretched, -1, 0), float(sr) / rate, float(sr), quality="HQ")
    return _fit_length(np.moveaxis(y, 0, -1), x.shape[-1]).astype(np.float32)


def speed(x: np.ndarray, rng: np.random.Generator, sr: float, factor=(0.9, 1.1)) -> np.ndarray:
    """Speed perturbation: resample by a factor drawn from `factor` (pitch and tempo move together,
    like a shorter or longer vocal tract); linear interpolation, so ~100x cheaper than pitch_shift."""
    f = float(rng.uniform(*factor))
    t = x.shape[-1]
    n = max(2, int(round(t / f)))  # f > 1 plays faster: fewer samples
    src = np.linspace(0.0, t - 1, n)
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, t)
    y = np.stack([np.interp(src, np.arange(t), row) for row in flat]).reshape(*x.shape[:-1], n)
    return _fit_length(y, t).astype(np.float32)


def rolloff(x: np.ndarray, rng: np.random.Generator, sr: float, cutoff=(0.3, 0.9), width=0.05) -> np.ndarray:
    """Spectral roll-off: a smooth low-pass at a cutoff drawn from `cutoff` (fraction of Nyquist)."""
    spectrum = np.fft.rfft(x, axis=-1)
    freq = np.linspace(0.0, 1.0, spectrum.shape[-1])
    gain = 1.0 / (1.0 + np.exp((freq - rng.uniform(*cutoff)) / width))
    return np.fft.irfft(spectrum * gain, n=x.shape[-1], axis=-1).astype(x.dtype)


# ---- IMU (C, T) ------------------------------------------------------------------------

def jitter(x: np.ndarray, rng: np.random.Generator, sr: float, sigma=0.05) -> np.ndarray:
    """Gaussian noise of sigma x each channel's own std. (C, T)"""
    scale = sigma * (x.std(axis=-1, keepdims=True) + 1e-8)
    return x + (rng.standard_normal(x.shape) * scale).astype(x.dtype)


def scaling(x: np.ndarray, rng: np.random.Generator, sr: float, sigma=0.1) -> np.ndarray:
    """Multiply each channel by a factor drawn from N(1, sigma). (C, T)"""
    return x * rng.normal(1.0, sigma, size=(x.shape[0], 1)).astype(x.dtype)


def _rotation_matrix(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis) + 1e-12
    angle = math.radians(rng.uniform(-max_degrees, max_degrees))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)  # Rodrigues


def rotation(x: np.ndarray, rng: np.random.Generator, sr: float, max_degrees=30.0) -> np.ndarray:
    """One random 3-D rotation applied to every (x, y, z) channel triple, as if the device
    were worn turned. (C, T) with C a multiple of 3."""
    c, t = x.shape
    r = _rotation_matrix(rng, max_degrees).astype(x.dtype)
    return np.einsum("ij,gjt->git", r, x.reshape(c // 3, 3, t)).reshape(c, t)


def time_warp(x: np.ndarray, rng: np.random.Generator, sr: float, sigma=0.2, knots=4) -> np.ndarray:
    """Smoothly speed up and slow down time (random monotone warp through `knots` points). (C, T)"""
    t = x.shape[-1]
    speeds = np.clip(rng.normal(1.0, sigma, size=knots + 2), 0.2, None)
    speed = np.interp(np.arange(t), np.linspace(0, t - 1, knots + 2), speeds)
    warped = np.cumsum(speed)
    warped = (warped - warped[0]) * (t - 1) / (warped[-1] - warped[0])  # monotone, same ends
    grid = np.arange(t)
    return np.stack([np.interp(warped, grid, ch) for ch in x.reshape(-1, t)]).reshape(x.shape).astype(x.dtype)


# ---- after normalization ---------------------------------------------------------------

def channel_dropout(x: np.ndarray, rng: np.random.Generator, sr: float, rate=0.1) -> np.ndarray:
    """Zero (= the training mean, after normalization) each channel with probability `rate`. (C, T)"""
    keep = rng.random(size=(x.shape[0],) + (1,) * (x.ndim - 1)) >= rate
    return x * keep.astype(x.dtype)


def spec_time_mask(x: np.ndarray, rng: np.random.Generator, sr: float, max_fraction=0.1, n_masks=2) -> np.ndarray:
    """SpecAugment time masks: n_masks spans of up to max_fraction of the frames set to 0."""
    x = x.copy()
    t = x.shape[-1]
    for _ in range(int(n_masks)):
        width = int(rng.integers(0, max(1, int(max_fraction * t)) + 1))
        start = int(rng.integers(0, t - width + 1))
        x[..., start:start + width] = 0.0
    return x


def spec_freq_mask(x: np.ndarray, rng: np.random.Generator, sr: float, max_fraction=0.15, n_masks=2) -> np.ndarray:
    """SpecAugment frequency masks: n_masks bands of up to max_fraction of the rows set to 0."""
    x = x.copy()
    f = x.shape[-2]
    for _ in range(int(n_masks)):
        width = int(rng.integers(0, max(1, int(max_fraction * f)) + 1))
        start = int(rng.integers(0, f - width + 1))
        x[..., start:start + width, :] = 0.0
    return x


@dataclass(frozen=True)
class AugmentSpec:
    """One augmentation: its function, where it runs, which signals it fits, and its typed
    parameters (defaults read from the function's signature)."""

    name: str
    fn: Callable
    stage: str  # "signal" (raw, physical units) | "features" (after normalization)
    signals: tuple  # which sources it fits: "imu", "audio"
    help: str
    params: tuple[Param, ...] = ()

    @property
    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}


def _spec(fn, stage: str, signals: tuple, *params: Param) -> AugmentSpec:
    """The spec of `fn`: help from its docstring's first line, each Param's default from its signature."""
    signature = inspect.signature(fn)
    filled = []
    for p in params:
        default = signature.parameters[p.name].default
        filled.append(dataclasses.replace(p, default=list(default) if isinstance(default, tuple) else default))
    own = [n for n in list(signature.parameters)[3:]]
    if sorted(own) != sorted(p.name for p in params):
        raise ValueError(f"augmentation {fn.__name__}: typed params {[p.name for p in params]} differ from its "
                         f"keyword arguments {own}")
    return AugmentSpec(fn.__name__, fn, stage, signals, (fn.__doc__ or "").split("\n")[0], tuple(filled))


def _range(name: str, help: str, low: float, high: float, unit: str = "") -> Param:
    return Param(name, "range", FROM_SIGNATURE, help, low=low, high=high, unit=unit)


def _number(name: str, type: str, help: str, low: float, high: float, unit: str = "") -> Param:
    return Param(name, type, FROM_SIGNATURE, help, low=low, high=high, unit=unit)


AUGMENTATIONS: dict[str, AugmentSpec] = {s.name: s for s in [
    _spec(noise, "signal", ("audio",), _range("snr_db", "signal-to-noise ratio drawn from", -10.0, 80.0, "dB")),
    _spec(time_shift, "signal", ("audio", "imu"), _number("max_fraction", "float", "largest shift, as a share of "
                                                                                   "the length", 0.0, 0.5)),
    _spec(time_stretch, "signal", ("audio",), _range("rate", "stretch rate drawn from", 0.5, 2.0)),
    _spec(pitch_shift, "signal", ("audio",), _range("semitones", "shift drawn from", -12.0, 12.0, "semitones")),
    _spec(speed, "signal", ("audio",), _range("factor", "speed factor drawn from", 0.5, 2.0)),
    _spec(rolloff, "signal", ("audio",), _range("cutoff", "cutoff drawn from, as a share of Nyquist", 0.05, 1.0),
          _number("width", "float", "softness of the roll-off", 0.001, 0.5)),
    _spec(jitter, "signal", ("imu",), _number("sigma", "float", "noise std as a share of each channel's std", 0.0, 2.0)),
    _spec(scaling, "signal", ("imu",), _number("sigma", "float", "std of the per-channel gain around 1", 0.0, 2.0)),
    _spec(rotation, "signal", ("imu",), _number("max_degrees", "float", "largest rotation", 0.0, 180.0, "degrees")),
    _spec(time_warp, "signal", ("imu",), _number("sigma", "float", "std of the local speed around 1", 0.0, 1.0),
          _number("knots", "int", "points of the random warp", 1, 32)),
    _spec(channel_dropout, "features", ("imu",), _number("rate", "float", "probability each channel is zeroed",
                                                         0.0, 1.0)),
    _spec(spec_time_mask, "features", ("audio", "imu"),
          _number("max_fraction", "float", "widest mask, as a share of the frames", 0.0, 0.5),
          _number("n_masks", "int", "masks per example", 0, 10)),
    _spec(spec_freq_mask, "features", ("audio",),
          _number("max_fraction", "float", "widest mask, as a share of the rows", 0.0, 0.5),
          _number("n_masks", "int", "masks per example", 0, 10)),
]}


def list_augmentations() -> list[dict]:
    return [{"name": s.name, "stage": s.stage, "signals": list(s.signals), "help": s.help,
             "params": dict(s.defaults), "typed_params": [p.to_dict() for p in s.params]}
            for s in AUGMENTATIONS.values()]


class Augmenter:
    """A validated list of augmentations, each applied with its probability."""

    def __init__(self, steps: list[tuple[AugmentSpec, float, dict]], sample_rate: float) -> None:
        self.steps = steps
        self.sample_rate = sample_rate

    def _run(self, stage: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for spec, p, params in self.steps:
            if spec.stage == stage and rng.random() < p:
                x = spec.fn(x, rng, self.sample_rate, **params)
        return x

    def on_signal(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self._run("signal", x, rng)

    def on_features(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self._run("features", x, rng)

    @property
    def has_signal_steps(self) -> bool:
        return any(spec.stage == "signal" for spec, _, _ in self.steps)


def build_augmenter(augments: list[AugmentConfig], signal: str, sample_rate: float,
                    n_channels: int | None = None, features: str = "raw") -> Augmenter | None:
    """Validate cfg.augment for this signal kind; None when the list is empty."""
    steps = []
    for a in augments:
        if a.name not in AUGMENTATIONS:
            raise DataError(f"augmentation {a.name!r} is not known; known: {', '.join(AUGMENTATIONS)}")
        spec = AUGMENTATIONS[a.name]
        if signal not in spec.signals:
            raise DataError(f"augmentation {a.name!r} is for {'/'.join(spec.signals)} data, not {signal}")
        if not 0.0 <= float(a.p) <= 1.0:
            raise DataError(f"augmentation {a.name!r}: p={a.p} must be in [0, 1]")
        unknown = sorted(set(a.params) - set(spec.defaults))
        if unknown:
            raise DataError(f"augmentation {a.name!r}: unknown param(s) {', '.join(unknown)}; "
                            f"known: {', '.join(spec.defaults) or 'none'}")
        if a.name == "rotation" and n_channels is not None and n_channels % 3:
            raise DataError(f"rotation needs (x, y, z) channel triples; this data has {n_channels} channels")
        if a.name == "spec_freq_mask" and features == "raw":
            raise DataError("spec_freq_mask needs frequency rows; use features logmel, mfcc, mfcc_deltas or stack4")
        values = {p.name: p.coerce(a.params.get(p.name, p.default), f"data.augment.{a.name}.params.{p.name}")
                  for p in spec.params}
        steps.append((spec, float(a.p), values))
    return Augmenter(steps, sample_rate) if steps else None
