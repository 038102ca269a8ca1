"""Decode one audio file to mono float32 at a chosen rate, checking its content first.

    y = decode_audio(path, sample_rate=8000)     # (T,) float32 in [-1, 1]

Content decides, not the extension: RIFF/WAVE headers are checked for a 0 Hz rate and for
truncation (fewer data bytes than the header declares); soundfile decodes WAV/FLAC/OGG
(and MP3 where libsndfile has it), librosa/audioread is the fallback for MP3.
Mono and stereo are accepted; more channels are refused — a multichannel array recording
is not one signal, and averaging 8 microphones silently would hide that. Stereo is averaged
unless the average would cancel (channels in opposite phase, e.g. one an inverted copy of
the other): then the louder channel is used, and the choice is said in `notes`.
Files longer than `max_seconds` (default 600 s) are refused with that limit stated, before
anything is decoded. Decoded samples are checked before anything else sees them: a float
WAV can hold NaN/inf (refused naming the sample and its second) or values far outside
[-1, 1] (refused above the `max_audio_peak` limit, whose spectrogram would overflow).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.limits import how_to_raise, limits

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
MAX_CHANNELS = 2
DEFAULT_MAX_SECONDS = 600.0


def sniff_format(head: bytes) -> str | None:
    """"wav" | "flac" | "ogg" | "mp3" from a file's first bytes, None when not audio."""
    if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def _check_riff(path: Path, data: bytes, file_size: int) -> dict:
    """Sample rate, channels and declared vs present data bytes of a RIFF/WAVE file."""
    pos, found = 12, {}
    while pos + 8 <= len(data):
        chunk_id, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk_id == b"fmt " and pos + 16 <= len(data):
            _, channels, rate = struct.unpack("<HHI", data[pos + 8:pos + 16])
            found.update(channels=channels, rate=rate)
        elif chunk_id == b"data":
            found.update(declared=size, present=file_size - (pos + 8))
            break
        pos += 8 + size + (size & 1)
    if "rate" not in found:
        raise DataError(f"{path}: WAV header has no 'fmt ' chunk; the file is damaged — export it again")
    if found["rate"] == 0:
        raise DataError(f"{path}: WAV header says 0 Hz sample rate; the file is damaged — export it again")
    if "declared" not in found:
        raise DataError(f"{path}: WAV has no 'data' chunk (no audio); export it again")
    if found["declared"] == 0 or found["present"] <= 0:
        raise DataError(f"{path}: WAV holds no audio samples (zero-length data chunk)")
    # 0xFFFFFFFF / 0 are written by streaming recorders that never patched the size.
    if found["declared"] not in (0xFFFFFFFF,) and found["present"] < found["declared"]:
        raise DataError(f"{path}: WAV is truncated: the header declares {found['declared']} bytes of audio, "
                        f"the file holds {found['present']}; copy or export it again")
    return found


def probe_audio(path: str | Path) -> dict:
    """Check an audio file's content without decoding it: format, rate, channels, seconds."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes), not audio")
    with open(path, "rb") as f:
        head = f.read(65536)
    kind = sniff_format(head)
    if kind is None:
        raise DataError(f"{path}: is not audio (content starts {head[:12]!r}, not WAV/FLAC/OGG/MP3) "
                        "despite its name; give a real recording")
    if kind == "wav":
        _check_riff(path, head, size)
    import soundfile as sf
    try:
        info = sf.info(str(path))
        return {"format": kind, "sample_rate": float(info.samplerate), "channels": int(info.channels),
                "seconds": float(info.frames) / info.samplerate if info.samplerate else 0.0, "frames": int(info.frames)}
    except (RuntimeError, sf.LibsndfileError) as e:
        if kind != "mp3":
            raise DataError(f"{path}: cannot decode this {kind.upper()} file ({e}); export it again") from None
        return {"format": kind, "sample_rate": None, "channels": None, "seconds": None, "frames": None}


def decode_audio(path: str | Path, sample_rate: float, max_seconds: float = DEFAULT_MAX_SECONDS,
                 notes: list[str] | None = None, limit_name: str = "options.max_seconds") -> np.ndarray:
    """(T,) float32 mono at `sample_rate`; DataError naming the file for anything unusable.
    `notes` (when given) gets a line saying how stereo was mixed down; `limit_name` is how a
    refusal names the duration limit (a source option, or the classify limit's variable)."""
    path = Path(path)
    meta = probe_audio(path)
    if meta["channels"] is not None and meta["channels"] > MAX_CHANNELS:
        raise DataError(f"{path}: has {meta['channels']} channels; Sigscope takes mono or stereo (mixed down to "
                        "mono). Pick or mix down the channel you mean (e.g. `ffmpeg -i in.wav -ac 1 out.wav`)")
    if meta["seconds"] is not None and meta["seconds"] > max_seconds:
        long = f"{meta['seconds'] / 60:.1f} min" if meta["seconds"] >= 60 else f"{meta['seconds']:.1f} s"
        raise DataError(f"{path}: is {long} long; the limit is {max_seconds:g} s per file "
                        f"({limit_name}). Cut it into shorter files or raise the limit")
    if meta["frames"] == 0:
        raise DataError(f"{path}: holds no audio samples (zero-length)")
    if meta["sample_rate"] is not None:
        import soundfile as sf
        try:
            y, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (T, channels)
        except (RuntimeError, sf.LibsndfileError) as e:
            raise DataError(f"{path}: cannot decode ({e})") from None
    else:  # MP3 without libsndfile support: librosa/audioread
        try:
            import librosa
            y, rate = librosa.load(str(path), sr=None, mono=False, duration=max_seconds + 1)
        except Exception as e:  # audioread raises several unrelated types
            raise DataError(f"{path}: cannot decode MP3 ({e.__class__.__name__}: {e})") from None
        if y.ndim == 2:
            if y.shape[0] > MAX_CHANNELS:
                raise DataError(f"{path}: has {y.shape[0]} channels; Sigscope takes mono or stereo")
        y = np.asarray(y, dtype=np.float32)
        y = y.T if y.ndim == 2 else y[:, None]  # (T, channels), as soundfile gives
        if len(y) > max_seconds * rate:
            raise DataError(f"{path}: is longer than the {max_seconds:g} s limit per file ({limit_name})")
    if len(y) == 0:
        raise DataError(f"{path}: holds no audio samples (zero-length)")
    check_samples(path, y, float(rate))
    mono = mix_to_mono(y)
    if mono.note and notes is not None:
        notes.append(mono.note)
    return resample(np.asarray(mono.samples, dtype=np.float32), float(rate), float(sample_rate))


def check_samples(path: Path, y: np.ndarray, rate: float) -> None:
    """DataError for a NaN/inf sample or a float sample beyond the max_audio_peak limit,
    naming the sample, its second (and channel, for stereo). y: (T, C)."""
    finite = np.isfinite(y)
    if not finite.all():
        t, c = np.argwhere(~finite)[0]
        what = "NaN" if np.isnan(y[t, c]) else (("+inf" if y[t, c] > 0 else "-inf") + " (or beyond 32-bit float range)")
        where = f" of channel {c + 1}" if y.shape[1] > 1 else ""
        raise DataError(f"{path}: sample {t}{where} ({t / rate:.3f} s) is {what}; a float WAV can store "
                        "non-finite values but no recording makes them — the file is damaged or was written "
                        "from a failed computation; export it again")
    limit = limits().max_audio_peak
    magnitude = np.abs(y)
    t, c = np.unravel_index(int(np.argmax(magnitude)), y.shape)
    if magnitude[t, c] > limit:
        raise DataError(f"{path}: float samples reach {float(y[t, c]):.3g} (at {t / rate:.3f} s); audio is expected "
                        f"in [-1, 1] and the limit is ±{limit:g} (integer-scaled float audio must be divided by "
                        f"32768) — rescale the recording, or {how_to_raise('max_audio_peak')}")


@dataclass(frozen=True)
class Mono:
    """One channel made from a recording's channels, and how (None for a mono file)."""

    samples: np.ndarray  # (T,)
    note: str | None = None


def mix_to_mono(y: np.ndarray) -> Mono:
    """(T, C) with C <= 2 -> mono. Stereo is averaged, unless averaging would cancel: when the
    average keeps less than a quarter of the louder channel's energy (-6 dB, what averaging a
    channel with silence gives) the channels are in opposite phase — an inverted copy, a
    miswired microphone — and the average would throw the sound away, so the louder channel
    is used instead. Channels that correlate positively always average (they cannot cancel)."""
    if y.shape[1] == 1:
        return Mono(y[:, 0])
    left, right = y[:, 0].astype(np.float64), y[:, 1].astype(np.float64)
    energy_l, energy_r, cross = float(left @ left), float(right @ right), float(left @ right)
    mid_energy = max((energy_l + energy_r + 2 * cross) / 4, 0.0)
    louder = max(energy_l, energy_r)
    if mid_energy >= louder / 4:
        return Mono(y.mean(axis=1), "stereo averaged to mono")
    side, channel = ("left", y[:, 0]) if energy_l >= energy_r else ("right", y[:, 1])
    correlation = cross / np.sqrt(energy_l * energy_r) if energy_l * energy_r > 0 else 0.0
    lost = "to silence" if mid_energy <= louder * 1e-10 else f"to {10 * np.log10(mid_energy / louder):.0f} dB"
    return Mono(np.ascontiguousarray(channel), f"stereo: the channels cancel when averaged (correlation "
                f"{correlation:+.2f}, the average falls {lost}); used the {side} channel")


def resample(y: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    """(T,) at rate_in -> (T',) at rate_out (soxr, high quality); identity when equal."""
    if rate_in == rate_out:
        return y
    import soxr
    return soxr.resample(y, rate_in, rate_out, quality="HQ").astype(np.float32)


def fit_clip(y: np.ndarray, length: int, align: str = "start") -> np.ndarray:
    """Pad with zeros or crop to `length` samples; align 'start' keeps the beginning,
    'center' keeps the middle. (T,) -> (length,)"""
    if len(y) >= length:
        start = 0 if align == "start" else (len(y) - length) // 2
        return y[start:start + length]
    pad = length - len(y)
    before = 0 if align == "start" else pad // 2
    return np.pad(y, (before, pad - before))
