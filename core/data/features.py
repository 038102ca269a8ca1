"""Audio features, the same code for training and for a user's file at inference.

    feats = featurize_audio(waveform, sr, cfg)   # (T,) or (N, T) -> one of:
      raw     (1, T)                 input_kind "waveform"
      logmel  (n_mels, frames)       input_kind "imu" (features as channels, frames as time)
      mfcc    (n_mfcc, frames)       input_kind "imu"
      mfcc_deltas (3 n_mfcc, frames) input_kind "imu": MFCC, then its delta, then delta-delta rows
      stack4  (4, n_mels, frames)    input_kind "spectrogram": log-mel, MFCC, delta, delta-delta

Log-mel is ln(mel power + 1e-6) (STFT as librosa: centered, periodic Hann; librosa's mel
filters); MFCC is the orthonormal DCT-II of that over the mel axis; deltas are HTK
regression deltas over +-2 frames (delta-delta = delta of delta).
In stack4 every plane has n_mels rows: the MFCC plane holds all n_mels cepstral
coefficients (cfg.n_mfcc applies to features="mfcc" only); with mfcc_c0=False c0 (log
energy, which follows loudness) is dropped and a zero row appended so F stays n_mels.
For features="mfcc", mfcc_c0=False gives coefficients 1..n_mfcc (still n_mfcc rows); the
same holds for the three blocks of "mfcc_deltas". Deltas describe how the spectrum moves
(formant transitions), which varies less between speakers than where it sits.

Every transform's output is checked finite (NonFiniteFeatures names the transform, the clip
and the frame): audio far beyond [-1, 1] overflows float32 power spectra, and a NaN would
otherwise travel silently into a NaN probability.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from core.config import DataConfig
from core.errors import DataError

FEATURE_HELP = {"raw": "the waveform itself (waveform models)",
                "logmel": "log-mel bands as channels (IMU-style models)",
                "mfcc": "MFCCs as channels (IMU-style models)",
                "mfcc_deltas": "MFCCs with their Δ and ΔΔ as channels (IMU-style models)",
                "stack4": "log-mel, MFCC, Δ, ΔΔ planes (spectrogram models)"}
FEATURES = tuple(FEATURE_HELP)
INPUT_KIND = {"raw": "waveform", "logmel": "imu", "mfcc": "imu", "mfcc_deltas": "imu", "stack4": "spectrogram"}


class NonFiniteFeatures(DataError):
    """A transform gave NaN/inf; `clip` is the index in the batch (None for one clip), `seconds`
    where in the clip the first bad frame sits."""

    def __init__(self, message: str, transform: str, clip: int | None, seconds: float):
        super().__init__(message)
        self.transform, self.clip, self.seconds = transform, clip, seconds


def check_finite(x: np.ndarray, transform: str, seconds_per_frame: float, batched: bool) -> np.ndarray:
    """x as it is when every value is finite; else NonFiniteFeatures naming the transform, the
    clip (of a batch) and the second of its first non-finite frame. x: (..., F, frames)."""
    finite = np.isfinite(x)
    if finite.all():
        return x
    index = np.argwhere(~finite)[0]
    clip = int(index[0]) if batched else None
    seconds = float(index[-1]) * seconds_per_frame
    value = x[tuple(index)]
    what = "NaN" if np.isnan(value) else "inf"
    where = (f"clip {clip} of the batch, " if clip is not None else "") + f"{seconds:.3f} s into the clip"
    raise NonFiniteFeatures(f"the {transform} features are not finite ({what} at {where}): the audio is beyond what they can "
                            "represent — audio is expected in [-1, 1]; check the recording's level and format",
                            transform, clip, seconds)


def check_feature_config(cfg: DataConfig) -> None:
    if cfg.features not in FEATURES:
        raise DataError(f"features={cfg.features!r} is not known; use one of {', '.join(FEATURES)}")
    if cfg.features == "raw":
        return
    if cfg.n_fft < 16 or cfg.hop_length < 1 or cfg.n_mels < 2:
        raise DataError(f"n_fft={cfg.n_fft}, hop_length={cfg.hop_length}, n_mels={cfg.n_mels}: "
                        "need n_fft >= 16, hop_length >= 1, n_mels >= 2")
    if cfg.n_mels > cfg.n_fft // 2 + 1:
        raise DataError(f"n_mels={cfg.n_mels} exceeds the {cfg.n_fft // 2 + 1} FFT bins of n_fft={cfg.n_fft}; "
                        "lower n_mels or raise n_fft")
    if cfg.features in ("mfcc", "mfcc_deltas") and not 1 <= cfg.n_mfcc <= cfg.n_mels - (0 if cfg.mfcc_c0 else 1):
        raise DataError(f"n_mfcc={cfg.n_mfcc} must be between 1 and n_mels={cfg.n_mels}"
                        + ("" if cfg.mfcc_c0 else " - 1 (c0 is dropped)"))


@lru_cache(maxsize=16)
def _mel_filters(sr: float, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels) (Slaney mel scale and area
    normalization, 0 Hz to sr/2) as float32, in numpy: importing librosa for it costs ~1.1 s of
    CPU (numba, scipy.signal) in a fresh process. tests/test_cold_start.py checks it against
    librosa. (n_mels, n_fft//2+1)"""
    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        hz = np.asarray(hz, dtype=np.float64)
        return np.where(hz >= _MIN_LOG_HZ, _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-12) / _MIN_LOG_HZ) / _LOGSTEP,
                        hz / _F_SP)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL)), _F_SP * mel)

    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(float(sr) / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]  # Slaney: constant energy per band
    return weights


_F_SP = 200.0 / 3  # Slaney mel scale: linear below 1 kHz, logarithmic above (librosa.hz_to_mel, htk=False)
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


@lru_cache(maxsize=16)
def hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window, as scipy.signal.get_window("hann", n_fft, fftbins=True)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


@lru_cache(maxsize=16)
def _dct_matrix(n: int) -> np.ndarray:
    """(n, n) orthonormal DCT-II (scipy.fft.dct(type=2, norm="ortho") along an axis of length n)."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.sqrt(2.0 / n) * np.cos(np.pi * k * (2 * i + 1) / (2 * n))
    m[0] /= np.sqrt(2.0)
    return m


def stft(y: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """Complex STFT as librosa's (centered, zero-padded, periodic Hann window) in plain numpy:
    (..., T) -> (..., frames, n_fft//2+1)."""
    padded = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(n_fft // 2, n_fft // 2)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop_length, :]
    return np.fft.rfft(frames * hann(n_fft), axis=-1)


def _logmel(y: np.ndarray, sr: float, cfg: DataConfig) -> np.ndarray:
    """ln(mel power + 1e-6); the STFT matches librosa's (centered, zero-padded, periodic Hann)
    but is plain numpy so one clip costs ~1 ms (librosa's per-call overhead dominated)."""
    spectrum = stft(y, cfg.n_fft, cfg.hop_length)  # (..., frames, n_fft//2+1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    mel = power @ _mel_filters(float(sr), cfg.n_fft, cfg.n_mels).T  # (..., frames, n_mels), contiguous BLAS
    return np.swapaxes(np.log(mel + 1e-6), -1, -2).astype(np.float32)  # (..., n_mels, frames)


def _mfcc(logmel: np.ndarray, n: int, keep_c0: bool) -> np.ndarray:
    # MFCC = DCT-II (orthonormal) of the log-mel spectrum over the mel axis, as librosa does; a
    # matrix product in float64 (importing scipy.fft would cost ~0.3 s of CPU in a fresh process)
    cepstra = np.matmul(_dct_matrix(logmel.shape[-2]), logmel.astype(np.float64)).astype(np.float32)
    return cepstra[..., :n, :] if keep_c0 else cepstra[..., 1:n + 1, :]


def _delta(x: np.ndarray, order: int, half_width: int = 2) -> np.ndarray:
    """HTK regression deltas over +-half_width frames, edges repeated. (..., F, T) -> same."""
    for _ in range(order):
        t = x.shape[-1]
        padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(half_width, half_width)], mode="edge")
        num = sum(n * (padded[..., half_width + n:half_width + n + t] - padded[..., half_width - n:half_width - n + t])
                  for n in range(1, half_width + 1))
        x = (num / (2 * sum(n * n for n in range(1, half_width + 1)))).astype(np.float32)
    return x


def featurize_audio(waveform: np.ndarray, sr: float, cfg: DataConfig) -> np.ndarray:
    """Features of one clip (T,) or a batch (N, T), vectorized over the batch (see module doc)."""
    check_feature_config(cfg)
    y = np.asarray(waveform, dtype=np.float32)
    batched = y.ndim > 1

    def checked(x: np.ndarray, transform: str, seconds_per_frame: float | None = None) -> np.ndarray:
        return check_finite(x, transform, seconds_per_frame or cfg.hop_length / sr, batched)

    if cfg.features == "raw":
        return checked(y[..., None, :], "waveform", 1 / sr)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused by name just below
        logmel = checked(_logmel(y, sr, cfg), "log-mel")
    if cfg.features == "logmel":
        return logmel
    if cfg.features == "mfcc":
        return checked(_mfcc(logmel, cfg.n_mfcc, cfg.mfcc_c0).astype(np.float32), "MFCC")
    if cfg.features == "mfcc_deltas":
        cepstra = checked(_mfcc(logmel, cfg.n_mfcc, cfg.mfcc_c0).astype(np.float32), "MFCC")
        delta = checked(_delta(cepstra, 1), "delta")
        delta2 = checked(_delta(delta, 1), "delta-delta")
        return np.concatenate([cepstra, delta, delta2], axis=-2)  # (..., 3 n_mfcc, frames)
    cepstra = checked(_mfcc(logmel, cfg.n_mels - (0 if cfg.mfcc_c0 else 1), cfg.mfcc_c0), "MFCC")
    if not cfg.mfcc_c0:  # keep n_mels rows: pad the dropped c0's place at the end
        cepstra = np.concatenate([cepstra, np.zeros_like(cepstra[..., :1, :])], axis=-2)
    planes = [logmel, cepstra.astype(np.float32), checked(_delta(cepstra, 1), "delta"),
              checked(_delta(cepstra, 2), "delta-delta")]
    return np.stack(planes, axis=-3)  # (..., 4, n_mels, frames)


def feature_normalization_methods(cfg: DataConfig, n_channels: int) -> list[str]:
    """Per-channel (axis 0) method: stack4 uses robust MAD on the delta planes."""
    if cfg.features == "stack4" and cfg.normalization == "zscore":
        return ["zscore", "zscore", "robust", "robust"]
    return [cfg.normalization] * n_channels


def feature_channel_names(cfg: DataConfig, n_channels: int) -> list[str]:
    if cfg.features == "raw":
        return ["audio"]
    if cfg.features == "logmel":
        return [f"mel{i}" for i in range(n_channels)]
    first = 0 if cfg.mfcc_c0 else 1
    if cfg.features == "mfcc":
        return [f"mfcc{i}" for i in range(first, first + n_channels)]
    if cfg.features == "mfcc_deltas":
        names = [f"mfcc{i}" for i in range(first, first + n_channels // 3)]
        return names + [f"d_{n}" for n in names] + [f"dd_{n}" for n in names]
    return ["logmel", "mfcc", "delta", "delta2"]
