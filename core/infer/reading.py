"""Reading a user's file or upload into windows the run can classify.

Audio is decoded (content-checked) to the run's rate; IMU CSVs go through the training reader
(columns by name, chunked, short NaN runs interpolated), one stream per subject/session.
Nothing read is executed or unpickled. Uploads are written to a fresh private temp folder
under a fixed name with a suffix chosen from the content, so a user's `../../x.wav` or
`con.wav` never reaches a path.
"""
from __future__ import annotations

import math
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.data.audio import AUDIO_EXTENSIONS, decode_audio, probe_audio, sniff_format
from core.data.windowing import window_labels, window_starts
from core.errors import ConfigError, DataError, SigscopeError
from core.limits import Limits, how_to_raise, limits


def _limits_at_import() -> Limits:
    try:
        return limits()
    except ConfigError:  # a bad SIGSCOPE_* value is refused, with its name, where the limit is checked
        return Limits()


# The limits in force when this module was imported, for pages and messages that state them;
# every check reads limits() when it runs (core/limits.py declares them).
_AT_IMPORT = _limits_at_import()
MAX_UPLOAD_BYTES = _AT_IMPORT.max_upload_bytes  # per uploaded file
MAX_AUDIO_SECONDS = _AT_IMPORT.max_audio_seconds  # of audio per file
MAX_WINDOWS = _AT_IMPORT.max_windows  # windows classified per file
SILENCE_PEAK = 1e-4  # -80 dBFS: nothing to classify below this
RATE_TOLERANCE = 0.05  # an IMU CSV's rate may differ this much from the run's


@dataclass
class Windows:
    """One file read for a run: `signal` ((T,) audio at the run's rate, or (T, C) IMU streams
    laid end to end), window `starts` (samples), the CSV's labels per window (`truth`, -1 for
    unknown; None for audio), its `streams`, `notes` for the user and the hop in samples."""

    signal: np.ndarray
    starts: np.ndarray
    hop: int
    truth: np.ndarray | None = None
    streams: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


WANTED = {"audio": "give a WAV/FLAC/OGG/MP3 recording (this run classifies audio)",
          "imu": "give an IMU CSV (this run classifies IMU streams)", None: "give a recording or an IMU CSV"}


def detect_kind(path: Path, signal: str | None = None) -> str:
    """"audio" or "csv" from the file's content (never from its name); `signal` (the run's:
    "audio" or "imu") picks the words of a refusal."""
    size = path.stat().st_size if path.is_file() else -1
    if size < 0:
        raise DataError(f"{path}: no such file")
    if size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(4096)
    if _utf16_csv(head):
        return "csv"
    if sniff_format(head) is not None:
        return "audio"
    if head[:2] == b"\x1f\x8b":
        return "csv"  # gzip: the CSV reader decompresses it (checked while it does)
    from core.data.imu_csv import looks_like_csv

    if looks_like_csv(head):  # UTF-8 (BOM or not) or UTF-16 text whose header holds a delimiter
        return "csv"
    raise DataError(f"{path}: is neither audio (WAV/FLAC/OGG/MP3) nor a text CSV (its content is not audio, and its first "
                    f"line is no header: column names separated by , ; tab or |, or one name above a column of numbers); {WANTED.get(signal, WANTED[None])}")


def _utf16_csv(head: bytes) -> bool:
    """A UTF-16 CSV with its BOM: checked before the audio sniffers, since FF FE also reads as
    an MPEG frame sync."""
    if head[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        return False
    from core.data.imu_csv import looks_like_csv

    return looks_like_csv(head)


def sliding_starts(length: int, window: int, hop: int) -> np.ndarray:
    """Window starts covering the whole signal: every `hop` samples, plus one last window
    (zero-padded) when the tail would be left out; a signal shorter than one window gets one."""
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    starts = window_starts(length, window, hop)
    if starts[-1] + window < length:
        starts = np.append(starts, starts[-1] + hop)
    return starts


def read_windows(model, path: Path, name: str, hop: float | None) -> Windows:
    """The windows of one file, checked against the run (a Predictor or Ensemble: its primary's
    pipeline): audio for audio runs, an IMU CSV with the run's channels for IMU runs. hop:
    seconds between window starts (default: the run's stride)."""
    hop_samples = model.stride if hop is None else int(round(float(hop) * model.sample_rate))
    if hop_samples < 1:
        raise ConfigError(f"hop={hop} s is less than one sample at {model.sample_rate:g} Hz")
    kind = detect_kind(path, model.signal)
    claimed = next((ext for ext in AUDIO_EXTENSIONS if name.lower().endswith(ext)), None)
    if claimed and kind != "audio":
        raise DataError(f"{path}: is not audio despite its {claimed} name (its content is text, not "
                        "WAV/FLAC/OGG/MP3); give a real recording")
    if kind == "audio" and model.signal != "audio":
        raise DataError(f"{path}: is audio, but run {model.run_id} is an IMU model; pick an audio run")
    if kind == "csv" and model.signal != "imu":
        raise DataError(f"{path}: is a CSV, but run {model.run_id} is an audio model; pick an IMU run "
                        "or give a WAV/FLAC/OGG/MP3 recording")
    if kind == "audio":
        notes: list[str] = []
        signal = _read_audio(model, path, notes)
        read = Windows(signal, sliding_starts(len(signal), model.window, hop_samples), hop_samples, notes=notes)
    else:
        read = _read_imu(model, path, hop_samples)
    if len(read.starts) > limits().max_windows:
        raise _too_many_windows(path, len(read.starts), hop_samples, model)
    return read


def _too_many_windows(path: Path, count: int | str, hop: int, model) -> DataError:
    most = limits().max_windows
    return DataError(f"{path}: would make {count} windows at a {hop / model.sample_rate:g} s hop; the limit is "
                     f"max_windows={most} per file — use a larger hop or a shorter recording, or "
                     f"{how_to_raise('max_windows')}")


def _read_audio(model, path: Path, notes: list[str]) -> np.ndarray:
    """The recording as mono at the run's rate (samples checked finite and in range at decode,
    stereo mixed down so it cannot cancel), refused when silent or too short to classify.

    Shorter than the run's clip but at least `min_clip_fraction` of it (default an eighth):
    zero-padded at the end, as training pads its short clips, with a note. Shorter still is
    refused: the model would see almost only padding, so its answer would be about the zeros
    (a 1-sample file was classified "7, p=0.82"). An eighth, not a quarter: the FSDD digits
    the audio runs train on are 0.14-1.3 s in 1 s clips, 6 % of them under 0.25 s, and a
    minimum must not refuse clips like the ones the run learned from."""
    from core.limits import how_to_raise, limits

    lim = limits()
    meta = probe_audio(path)
    y = decode_audio(path, model.sample_rate, lim.max_audio_seconds, notes, "SIGSCOPE_MAX_AUDIO_SECONDS")
    if meta.get("sample_rate") and abs(meta["sample_rate"] - model.sample_rate) > 0.5:
        notes.append(f"resampled from {meta['sample_rate']:g} Hz to the run's {model.sample_rate:g} Hz")
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak < SILENCE_PEAK:
        level = "digital silence" if peak == 0 else f"peak {20 * math.log10(peak):.0f} dBFS"
        raise DataError(f"{path}: is silent ({level}); there is nothing to classify — check the microphone "
                        "or the recording level")
    shortest = max(1, math.ceil(lim.min_clip_fraction * model.window))
    if len(y) < shortest:
        raise DataError(f"{path}: is {1000 * len(y) / model.sample_rate:.1f} ms long ({len(y)} "
                        f"sample{'s' if len(y) != 1 else ''} at {model.sample_rate:g} Hz); the shortest recording "
                        f"classified is {lim.min_clip_fraction:.1%} of the run's {model.window_seconds:g} s clip "
                        f"({shortest / model.sample_rate:.3f} s), as the rest would be padding — record a longer "
                        f"stretch, or {how_to_raise('min_clip_fraction')}")
    if len(y) < model.window:
        notes.append(f"{len(y) / model.sample_rate:.2f} s is shorter than the run's "
                     f"{model.window_seconds:g} s clip: zero-padded at the end, as in training")
    return y


def _read_imu(model, path: Path, hop: int) -> Windows:
    """An IMU CSV's streams end to end, with their window starts and the label column's answers.

    Bounded while it reads (see core.data.imu_csv.CsvBytes): line length, gzip ratio, columns
    and rows (limits().max_rows) are refused as they are read, and the windows the rows read
    so far would make are counted as they stream, so a file over limits().max_windows is
    refused at the chunk that crosses it, not after it is parsed whole."""
    from core.data.imu_csv import (DEFAULT_OPTIONS, detect_roles, estimate_rate, fill_nan_runs, read_header,
                                   read_streams, show_columns)

    lim = limits()
    columns, _ = read_header(path, None)
    missing = [c for c in model.channel_names if c not in columns]
    channels, renamed = list(model.channel_names), None
    if missing and len(channels) == 1 and len(columns) == 1:  # one signal for a one-channel run: no doubt which
        channels, renamed = list(columns), f"column '{columns[0]}' read as the run's one channel '{channels[0]}'"
    elif missing:
        raise DataError(f"{path}: has no column(s) {missing}; run {model.run_id} was trained on channels "
                        f"{model.channel_names} (the CSV has {show_columns(columns)}). Rename the columns to match")
    # a chunk never holds many more rows than the windows allowed need
    chunk_rows = min(int(DEFAULT_OPTIONS["chunk_rows"]), max(1000, (lim.max_windows + 1) * hop + model.window))
    opts = {**DEFAULT_OPTIONS, "channels": channels, "chunk_rows": chunk_rows}
    time_name = detect_roles(path, columns, opts, need_label=False)["time"]  # its name gives the unit (time_ms)
    index = {name: i for i, name in enumerate(model.class_names)}
    pieces, all_starts, truths, streams, notes = [], [], [], [], [renamed] if renamed else []
    offset = 0
    done = [0]  # windows of the streams read so far

    def count_windows(rows: int) -> None:  # the current stream has `rows` rows so far
        if done[0] + (rows - model.window) // hop + 1 > lim.max_windows:
            raise _too_many_windows(path, f"more than {lim.max_windows}", hop, model)

    for values, labels, lines, channels, subject, session, times in read_streams(
            path, opts, label_default="", max_rows=lim.max_rows, on_rows=count_windows):
        rate = estimate_rate(times, time_name)
        if rate is not None and abs(rate - model.sample_rate) > RATE_TOLERANCE * model.sample_rate:
            raise DataError(f"{path}: the time column says {rate:.1f} Hz; run {model.run_id} was trained at "
                            f"{model.sample_rate:g} Hz. Resample the recording to {model.sample_rate:g} Hz")
        values = fill_nan_runs(path, values, lines, channels, int(opts["max_nan_run"]))
        name = f"{subject}:{session}"
        if len(values) < model.window:
            notes.append(f"stream {name} has {len(values)} rows, fewer than one {model.window}-sample window: skipped")
            continue
        names, inverse = np.unique(labels, return_inverse=True)
        ids = np.array([index.get(str(v).strip(), -1) for v in names], dtype=np.int64)[inverse.reshape(-1)]
        starts, true, keep = window_labels(ids, model.window, hop, "majority")
        done[0] += len(starts)
        pieces.append(values)
        all_starts.append(starts + offset)
        truths.append(np.where(keep, true, -1))
        streams.append({"name": name, "start": round(offset / model.sample_rate, 4),
                        "end": round((offset + len(values)) / model.sample_rate, 4), "windows": int(len(starts))})
        offset += len(values)
    if not pieces:
        raise DataError(f"{path}: no stream has a full window of {model.window} samples "
                        f"({model.window_seconds:g} s at {model.sample_rate:g} Hz); record a longer stretch")
    return Windows(np.concatenate(pieces).astype(np.float32), np.concatenate(all_starts), hop,
                   np.concatenate(truths), streams, notes)


def error_line(error: BaseException, replace: dict[str, str] | None = None) -> str:
    """One line a person can act on; temp paths replaced by the name the user gave."""
    text = str(error) if isinstance(error, SigscopeError) else f"{type(error).__name__}: {error}"
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    return (text.strip().splitlines() or [type(error).__name__])[0]


# ---- uploads -----------------------------------------------------------------------------
_SUFFIX = {"wav": ".wav", "flac": ".flac", "ogg": ".ogg", "mp3": ".mp3"}


def upload_suffix(data: bytes) -> str:
    """A safe suffix chosen from the content: .wav/.flac/.ogg/.mp3, .csv.gz or .csv."""
    kind = None if _utf16_csv(data[:4096]) else sniff_format(data[:4096])
    if kind is not None:
        return _SUFFIX[kind]
    return ".csv.gz" if data[:2] == b"\x1f\x8b" else ".csv"


@contextmanager
def private_copies(blobs: list[bytes]):
    """Paths of `blobs` written to a fresh private temp folder, each under a fixed name with a
    suffix chosen from its content; the folder is removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="sigscope-upload-"))
    try:
        paths = [folder / f"upload{i}{upload_suffix(data)}" for i, data in enumerate(blobs)]
        for path, data in zip(paths, blobs):
            path.write_bytes(data)
        yield paths
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def display_name(name: str, limit: int = 120) -> str:
    """A user-given file name made safe to show: control characters dropped, length capped.
    It is never used as a path."""
    text = "".join(ch for ch in str(name or "upload") if ch.isprintable()).strip() or "upload"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def check_upload_size(data: bytes, label: str) -> None:
    """Refuse an upload over limits().max_upload_mib before anything is written or read."""
    most = limits().max_upload_bytes
    if len(data) > most:
        raise DataError(f"{label}: {len(data) / 2**20:.1f} MiB is over the {most // 2**20} MiB upload limit "
                        f"(max_upload_mib); cut the recording into shorter files, or {how_to_raise('max_upload_mib')}")
