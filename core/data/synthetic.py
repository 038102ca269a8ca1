"""Generated class-conditional signals: the quick default and the unit tests' data.

Each class has its own per-channel sine frequencies and a class-specific burst; each
synthetic subject has its own gain and offset, so subject splits are meaningful.
Options: n_classes (4), per_class (150), channels (6 for IMU), subjects (8), noise (0.3), seed (0).
"""
from __future__ import annotations

import numpy as np

from core.config import DataConfig
from core.errors import DataError
from core.data.examples import Examples
from core.data.sources import SourceSpec, register_source, source_options
from core.spec import Param

IMU_CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]


def _signals(n_classes: int, per_class: int, channels: int, length: int, subjects: int,
             noise: float, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, C, T) class-conditional signals, labels and subject ids."""
    rng = np.random.default_rng(seed)
    class_rng = np.random.default_rng(1000 + n_classes)  # class patterns do not depend on `seed`
    freqs = class_rng.uniform(0.5, 0.25 * rate, size=(n_classes, channels))  # Hz per class/channel
    burst_at = class_rng.uniform(0.2, 0.8, size=n_classes)  # where the class burst sits
    gains = rng.uniform(0.7, 1.3, size=(subjects, channels))
    offsets = rng.normal(0.0, 0.3, size=(subjects, channels))
    n = n_classes * per_class
    y = np.repeat(np.arange(n_classes), per_class)
    subject = rng.integers(0, subjects, size=n)
    t = np.arange(length) / rate  # (T,)
    phase = rng.uniform(0, 2 * np.pi, size=(n, channels, 1))
    jitter = rng.normal(1.0, 0.05, size=(n, channels, 1))
    x = np.sin(2 * np.pi * freqs[y][:, :, None] * jitter * t[None, None, :] + phase)  # (N, C, T)
    centre = (burst_at[y] + rng.normal(0, 0.05, size=n)) * length  # (N,)
    burst = np.exp(-0.5 * ((np.arange(length)[None, :] - centre[:, None]) / (0.05 * length)) ** 2)  # (N, T)
    x = x + burst[:, None, :] * (1 + (y[:, None, None] % 3))
    x = x * gains[subject][:, :, None] + offsets[subject][:, :, None]
    x = x + rng.normal(0.0, noise, size=x.shape)
    order = rng.permutation(n)
    return x[order].astype(np.float32), y[order].astype(np.int64), subject[order]


def load_synthetic_imu(cfg: DataConfig) -> Examples:
    """Class-conditional (C, cfg.window) IMU-like windows at 50 Hz."""
    opts = source_options(cfg)
    rate = 50.0
    x, y, subject = _signals(int(opts["n_classes"]), int(opts["per_class"]), int(opts["channels"]),
                             int(cfg.window), int(opts["subjects"]), float(opts["noise"]), rate, int(opts["seed"]))
    channels = int(opts["channels"])
    names = IMU_CHANNELS[:channels] + [f"ch{i}" for i in range(len(IMU_CHANNELS), channels)]
    return Examples(x=x, y=y, groups=np.array([f"s{s:02d}" for s in subject]),
                    ids=np.array([f"synthetic:{i}" for i in range(len(y))]),
                    class_names=[f"class_{k}" for k in range(int(opts["n_classes"]))],
                    channel_names=names, sample_rate=rate, signal="imu",
                    info={"generator": "synthetic_imu", "options": opts})


def load_synthetic_audio(cfg: DataConfig) -> Examples:
    """Class-conditional mono clips of cfg.clip_seconds at cfg.sample_rate (tones + burst)."""
    opts = source_options(cfg)
    length = int(round(cfg.clip_seconds * cfg.sample_rate))
    if length < 64:
        raise DataError(f"synthetic_audio: clip_seconds*sample_rate = {length} samples; use at least 64")
    x, y, subject = _signals(int(opts["n_classes"]), int(opts["per_class"]), 1, length, int(opts["subjects"]),
                             float(opts["noise"]), float(cfg.sample_rate), int(opts["seed"]))
    x = 0.3 * x[:, 0, :] / np.max(np.abs(x), axis=(1, 2))[:, None]  # (N, T) in [-0.3, 0.3]
    return Examples(x=x.astype(np.float32), y=y, groups=np.array([f"speaker{s}" for s in subject]),
                    ids=np.array([f"synthetic:{i}" for i in range(len(y))]),
                    class_names=[f"tone_{k}" for k in range(int(opts["n_classes"]))],
                    channel_names=["audio"], sample_rate=float(cfg.sample_rate), signal="audio",
                    info={"generator": "synthetic_audio", "options": opts})


def _generator_options(per_class: int, subjects: int, noise: float, channels: bool) -> tuple[Param, ...]:
    out = [Param("n_classes", "int", 4, "number of classes", low=2, high=100, label="Classes"),
           Param("per_class", "int", per_class, "examples per class", low=1, high=100_000, log=True,
                 label="Examples per class")]
    if channels:
        out.append(Param("channels", "int", 6, "sensor channels", low=1, high=64, label="Channels"))
    out += [Param("subjects", "int", subjects, "synthetic subjects (each with its own gain and offset)", low=1,
                  high=1000, label="Subjects"),
            Param("noise", "float", noise, "Gaussian noise std", low=0.0, high=10.0, label="Noise", step=0.05),
            Param("seed", "int", 0, "generator seed", low=0, high=2**31 - 1, label="Generator seed", sweep=False, advanced=True)]
    return tuple(out)


register_source(SourceSpec("synthetic_imu", load_synthetic_imu,
                           "Generated class-conditional IMU windows (C, window) at 50 Hz; the quick default",
                           signal="imu", options=_generator_options(150, 8, 0.3, channels=True),
                           default_data="generated", nominal_rate=50.0))
register_source(SourceSpec("synthetic_audio", load_synthetic_audio,
                           "Generated class-conditional tone clips at sample_rate for clip_seconds",
                           signal="audio", options=_generator_options(40, 5, 0.1, channels=False),
                           default_data="generated", windowed=False, suggested={"features": "logmel"}))
