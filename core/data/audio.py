"""Decode one audio file to mono float32 at a chosen rate, checking its content first.

    y = decode_audio(path, sample_rate=8000)     # (T,) float32 in [-1, 1]

Content decides, not the extension: RIFF/WAVE headers are checked for a 0 Hz rate and for
truncation (fewer data bytes than the header declares); soundfile decodes WAV/FLAC/OGG
(and MP3 where libsndfile has it), librosa/audioread is the fallback for MP3.
Mono and stereo are accepted (stereo is averaged); more channels are refused — a
multichannel array recording is not one signal, and averaging 8 microphones silently
would hide that. Files longer than `max_seconds` (default 600 s) are refused with that
limit stated, before anything is decoded.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from core.errors import DataError

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


def decode_audio(path: str | Path, sample_rate: float, max_seconds: float = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """(T,) float32 mono at `sample_rate`; DataError naming the file for anything unusable."""
    path = Path(path)
    meta = probe_audio(path)
    if meta["channels"] is not None and meta["channels"] > MAX_CHANNELS:
        raise DataError(f"{path}: has {meta['channels']} channels; Sigscope takes mono or stereo (averaged to "
                        "mono). Pick or mix down the channel you mean (e.g. `ffmpeg -i in.wav -ac 1 out.wav`)")
    if meta["seconds"] is not None and meta["seconds"] > max_seconds:
        raise DataError(f"{path}: is {meta['seconds'] / 60:.1f} min long; the limit is {max_seconds:g} s per file "
                        "(options.max_seconds). Cut it into shorter files or raise the limit")
    if meta["frames"] == 0:
        raise DataError(f"{path}: holds no audio samples (zero-length)")
    if meta["sample_rate"] is not None:
        import soundfile as sf
        try:
            y, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (T, channels)
        except (RuntimeError, sf.LibsndfileError) as e:
            raise DataError(f"{path}: cannot decode ({e})") from None
        y = y.mean(axis=1)
    else:  # MP3 without libsndfile support: librosa/audioread
        try:
            import librosa
            y, rate = librosa.load(str(path), sr=None, mono=False, duration=max_seconds + 1)
        except Exception as e:  # audioread raises several unrelated types
            raise DataError(f"{path}: cannot decode MP3 ({e.__class__.__name__}: {e})") from None
        if y.ndim == 2:
            if y.shape[0] > MAX_CHANNELS:
                raise DataError(f"{path}: has {y.shape[0]} channels; Sigscope takes mono or stereo")
            y = y.mean(axis=0)
        if len(y) > max_seconds * rate:
            raise DataError(f"{path}: is longer than the {max_seconds:g} s limit per file (options.max_seconds)")
    if len(y) == 0:
        raise DataError(f"{path}: holds no audio samples (zero-length)")
    if not np.all(np.isfinite(y)):
        raise DataError(f"{path}: decoded audio contains NaN/Inf samples; the file is damaged")
    return resample(np.asarray(y, dtype=np.float32), float(rate), float(sample_rate))


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
