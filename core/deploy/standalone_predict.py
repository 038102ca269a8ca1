#!/usr/bin/env python3
"""Classify recordings with a model exported from Sigscope, without Sigscope or PyTorch.

    python predict.py FILE [FILE...] [--json] [--top-k 3] [--hop SECONDS] [--aggregate mean|vote]

This file sits in a Sigscope deploy bundle beside model.onnx, classes.json, pipeline.json
(and mel_filters.npy for spectral audio features). It needs Python 3.9+, numpy, onnxruntime
and, for audio, soundfile; nothing else (the standard library aside).

It reads a file the way `python -m core predict --run RUN FILE` does and gives the same answer:
- audio (WAV/FLAC/OGG; content decides, not the name): mono or stereo (averaged, or the louder
  channel when the two cancel), at the run's sample rate — another rate is refused (Sigscope
  resamples with soxr, which is not reimplemented here); windows of the run's clip every `hop`
  samples plus one last zero-padded window for the tail; features (log-mel, MFCC, deltas, the
  "stack4" image) in numpy with the run's mel filter bank;
- IMU CSV (.csv or .csv.gz, a header row, delimiter , ; tab or |): the run's channel columns
  by name; one stream per consecutive (subject, session) rows; a time column, when there is
  one, must give the run's rate within 5 %; runs of up to 5 missing values are interpolated,
  longer ones refused; full windows only, every `hop` samples, within each stream;
then the run's normalization, the ONNX model, softmax per window and the file's answer: the
softmax of the mean log-probability over its windows (or a majority vote).

One line per file (label, probability, top-k); --json prints a list of objects. A file that
cannot be classified gives one error line (an {"file", "error"} object with --json) and the
others go on; the exit code is 1 when any file failed, 2 when the bundle itself is unusable.
No probability printed is ever NaN: inputs, features, logits and probabilities are checked.
"""
from __future__ import annotations

import argparse
import codecs
import csv
import gzip
import io
import json
import math
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BATCH = 128  # windows per ONNX call
AUDIO_MAGIC = {b"RIFF": "wav", b"RIFX": "wav", b"fLaC": "flac", b"OggS": "ogg"}
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
DELIMITERS = (",", ";", "\t", "|")
ROLE_NAMES = {  # core/data/imu_csv.py ROLE_NAMES (the label column is not needed to classify)
    "subject": ("subject", "user", "subject_id", "user_id", "participant", "person"),
    "session": ("session", "recording", "trial", "run", "experiment", "exp_id"),
    "time": ("time", "timestamp", "t", "seconds", "time_s", "time_ms", "ms"),
}
# cells pandas reads as missing (its default na_values); they are interpolated like empty cells
NA_CELLS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
            "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d*,\d+(?:[eE][-+]?\d+)?\s*$")
_DECIMAL_POINT = re.compile(r"\d\.\d|^\s*[-+]?\.\d")
_EPS = 1e-8
_NATS_PER_DB = np.log(10.0) / 10.0


class InputError(Exception):
    """A file that cannot be classified: one line saying what is wrong and what to do."""


class BundleError(Exception):
    """The bundle itself is incomplete or damaged."""


# ---- the bundle --------------------------------------------------------------------------
class Bundle:
    """model.onnx + classes.json + pipeline.json (+ mel_filters.npy) from one folder."""

    def __init__(self, folder: Path = HERE) -> None:
        try:
            self.pipeline = json.loads((folder / "pipeline.json").read_text(encoding="utf-8"))
            self.classes = list(json.loads((folder / "classes.json").read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            raise BundleError(f"{folder}: pipeline.json or classes.json is missing or damaged ({e}); "
                              "unzip the whole bundle again") from None
        p = self.pipeline
        if p.get("format") != "sigscope-bundle" or int(p.get("version", 0)) != 1:
            raise BundleError(f"{folder}/pipeline.json is not a version-1 Sigscope bundle pipeline; use the "
                              "predict.py that came in the same zip")
        self.signal = p["signal"]
        self.sample_rate = float(p["sample_rate"])
        self.window = int(p["window"])
        self.hop = int(p["hop"])
        self.channels = list(p.get("channels") or [])
        self.features = p["features"]
        self.normalization = p["normalization"]
        self.limits = p["limits"]
        self.input_shape = tuple(int(v) for v in p["input"]["shape"])
        self.mel = None
        if self.signal == "audio" and self.features["type"] != "raw":
            try:
                self.mel = np.load(folder / self.features["mel_filters"], allow_pickle=False).astype(np.float32)
            except (OSError, ValueError) as e:
                raise BundleError(f"{folder}: {self.features['mel_filters']} is missing or damaged ({e}); unzip the "
                                  "whole bundle again") from None
            want = (int(self.features["n_mels"]), int(self.features["n_fft"]) // 2 + 1)
            if self.mel.shape != want:
                raise BundleError(f"{folder}: the mel filter bank is {self.mel.shape}, pipeline.json says {want}")
        try:
            import onnxruntime as ort
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self.session = ort.InferenceSession(str(folder / "model.onnx"), options,
                                                providers=["CPUExecutionProvider"])
        except ImportError:
            raise BundleError("onnxruntime is not installed: pip install onnxruntime numpy soundfile") from None
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise BundleError(f"{folder}/model.onnx cannot be loaded ({type(e).__name__}: {e}); unzip the whole "
                              "bundle again") from None
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name  # what the model calls it, not an assumption
        fixed = model_input.shape[0] if model_input.shape else None
        self.fixed_batch = fixed if isinstance(fixed, int) and fixed > 0 else None  # exported for one batch size

    @property
    def window_seconds(self) -> float:
        return self.window / self.sample_rate

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, *input_shape) -> (N, K), in batches (zero-padded to a model's fixed batch size)."""
        size = self.fixed_batch or BATCH
        out = []
        for i in range(0, len(x), size):
            part = x[i:i + size]
            if self.fixed_batch and len(part) < size:
                part = np.concatenate([part, np.zeros((size - len(part), *part.shape[1:]), part.dtype)])
            out.append(self.session.run(None, {self.input_name: part})[0][:len(x) - i])
        return np.concatenate(out).astype(np.float32)


# ---- reading a file ----------------------------------------------------------------------
def detect_kind(head: bytes) -> str:
    """"audio" or "csv" from the file's first bytes (never from its name)."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "csv"  # UTF-16 text (checked first: FF FE also reads as an MPEG frame sync)
    if (head[:4] in AUDIO_MAGIC and (head[:4] not in (b"RIFF", b"RIFX") or head[8:12] == b"WAVE")) or \
            head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio"
    if head[:2] == b"\x1f\x8b":
        return "csv"
    text = head[3:] if head.startswith(codecs.BOM_UTF8) else head
    first = text.lstrip(b" \t\r\n").split(b"\n", 1)[0]
    try:
        line = first.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first[:e.start].decode("utf-8") if e.start >= len(first) - 3 else ""
    if line and b"\x00" not in first and any(len(_fields(line, d)) >= 2 for d in DELIMITERS):
        return "csv"
    raise InputError("is neither audio (WAV/FLAC/OGG) nor a text CSV (no header row of column names separated by "
                     ", ; tab or |)")


def read_audio(path: Path, b: Bundle, notes: list[str]) -> np.ndarray:
    """(T,) float32 mono at the run's rate, checked as Sigscope checks it (core/data/audio.py)."""
    with open(path, "rb") as f:
        head = f.read(65536)
    size = path.stat().st_size
    if head[:4] in (b"RIFF", b"RIFX"):
        _check_riff(head, size)
    try:
        import soundfile as sf
    except ImportError:
        raise InputError("reading audio needs soundfile: pip install soundfile") from None
    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - libsndfile's errors
        mp3 = head[:3] == b"ID3" or head[:1] == b"\xff"
        what = "MP3 (this libsndfile cannot decode MP3: convert it to WAV)" if mp3 else "file"
        raise InputError(f"cannot decode this audio {what} ({e}); export it again") from None
    limit = float(b.limits["max_audio_seconds"])
    if info.channels > 2:
        raise InputError(f"has {info.channels} channels; mono or stereo only — mix down the channel you mean "
                         "(e.g. `ffmpeg -i in.wav -ac 1 out.wav`)")
    if info.frames == 0:
        raise InputError("holds no audio samples (zero-length)")
    if info.frames / info.samplerate > limit:
        raise InputError(f"is {info.frames / info.samplerate:.1f} s long; the limit is {limit:g} s per file — cut it "
                         "into shorter files")
    try:
        y, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (T, channels)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"cannot decode ({e})") from None
    if len(y) == 0:
        raise InputError("holds no audio samples (zero-length)")
    finite = np.isfinite(y)
    if not finite.all():
        t, c = np.argwhere(~finite)[0]
        raise InputError(f"sample {t} ({t / rate:.3f} s) is {'NaN' if np.isnan(y[t, c]) else 'inf'}; the file is "
                         "damaged — export it again")
    peak_limit = float(b.limits["max_audio_peak"])
    if np.abs(y).max() > peak_limit:
        raise InputError(f"float samples reach {float(np.abs(y).max()):.3g}; audio is expected in [-1, 1] (limit "
                         f"±{peak_limit:g}) — rescale the recording")
    mono, note = mix_to_mono(y)
    if note:
        notes.append(note)
    if float(rate) != b.sample_rate:
        raise InputError(f"is sampled at {rate:g} Hz; this model was trained at {b.sample_rate:g} Hz and this "
                         f"predict.py does not resample — convert it first (e.g. `ffmpeg -i in.wav -ar "
                         f"{b.sample_rate:g} out.wav`, or `sox in.wav -r {b.sample_rate:g} out.wav`)")
    y = np.asarray(mono, dtype=np.float32)
    peak = float(np.max(np.abs(y)))
    if peak < float(b.limits["silence_peak"]):
        level = "digital silence" if peak == 0 else f"peak {20 * math.log10(peak):.0f} dBFS"
        raise InputError(f"is silent ({level}); there is nothing to classify — check the microphone")
    shortest = max(1, math.ceil(float(b.limits["min_clip_fraction"]) * b.window))
    if len(y) < shortest:
        raise InputError(f"is {1000 * len(y) / b.sample_rate:.1f} ms long; the shortest recording classified is "
                         f"{shortest / b.sample_rate:.3f} s ({float(b.limits['min_clip_fraction']):.1%} of the "
                         f"{b.window_seconds:g} s clip) — record a longer stretch")
    if len(y) < b.window:
        notes.append(f"{len(y) / b.sample_rate:.2f} s is shorter than the run's {b.window_seconds:g} s clip: "
                     "zero-padded at the end, as in training")
    return y


def _check_riff(data: bytes, file_size: int) -> None:
    """Refuse a WAV whose header is damaged or whose audio is truncated (libsndfile reads on)."""
    if data[8:12] != b"WAVE":
        raise InputError("RIFF file that is not WAVE audio; give a WAV recording")
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
        raise InputError("WAV header has no 'fmt ' chunk; the file is damaged — export it again")
    if found["rate"] == 0:
        raise InputError("WAV header says 0 Hz sample rate; the file is damaged — export it again")
    if "declared" not in found:
        raise InputError("WAV has no 'data' chunk (no audio); export it again")
    if found["declared"] == 0 or found["present"] <= 0:
        raise InputError("WAV holds no audio samples (zero-length data chunk)")
    if found["declared"] != 0xFFFFFFFF and found["present"] < found["declared"]:
        raise InputError(f"WAV is truncated: the header declares {found['declared']} bytes of audio, the file holds "
                         f"{found['present']}; copy or export it again")


def mix_to_mono(y: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(T, C<=2) -> (T,): stereo averaged unless the average would cancel (core.data.audio.mix_to_mono)."""
    if y.shape[1] == 1:
        return y[:, 0], None
    left, right = y[:, 0].astype(np.float64), y[:, 1].astype(np.float64)
    energy_l, energy_r, cross = float(left @ left), float(right @ right), float(left @ right)
    mid_energy = max((energy_l + energy_r + 2 * cross) / 4, 0.0)
    louder = max(energy_l, energy_r)
    if mid_energy >= louder / 4:
        return y.mean(axis=1), "stereo averaged to mono"
    side, channel = ("left", y[:, 0]) if energy_l >= energy_r else ("right", y[:, 1])
    return np.ascontiguousarray(channel), f"stereo: the channels cancel when averaged; used the {side} channel"


def sliding_starts(length: int, window: int, hop: int) -> np.ndarray:
    """Every hop samples, plus one last (zero-padded) window for the tail (core.infer.reading)."""
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - window + 1, hop, dtype=np.int64)
    if starts[-1] + window < length:
        starts = np.append(starts, starts[-1] + hop)
    return starts


def fit_clip(y: np.ndarray, length: int) -> np.ndarray:
    """Crop or zero-pad at the end to `length` samples."""
    return y[:length] if len(y) >= length else np.pad(y, (0, length - len(y)))


# ---- IMU CSV -----------------------------------------------------------------------------
def read_csv_text(path: Path, b: Bundle) -> str:
    """The CSV's text: gzip decompressed (a ratio over max_gzip_ratio refused), BOMs handled."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        most = float(b.limits["max_gzip_ratio"]) * max(len(raw), 1 << 16)
        out, inflater = [], gzip.GzipFile(fileobj=io.BytesIO(raw))
        total = 0
        try:
            while True:
                block = inflater.read(1 << 16)
                if not block:
                    break
                total += len(block)
                if total > most:
                    raise InputError(f"decompresses to more than {b.limits['max_gzip_ratio']:g} times its size "
                                     "(a guard against gzip bombs); give the plain CSV")
                out.append(block)
        except (OSError, EOFError, zlib.error):
            raise InputError("is not a valid gzip file (truncated or corrupt); copy it again, or give the plain "
                             "CSV") from None
        raw = b"".join(out)
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    elif raw.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    else:
        encoding = "utf-8"
    if b"\x00" in raw[:4096] and encoding != "utf-16":
        raise InputError("looks binary, not a text CSV")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        raise InputError("is not a UTF-8 or UTF-16 text CSV; save it as CSV UTF-8") from None


def _fields(record: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([record.rstrip("\r\n")], delimiter=delimiter, skipinitialspace=True), [])
    except csv.Error:
        return []


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "."))
        return True
    except ValueError:
        return False


def read_imu(path: Path, b: Bundle, notes: list[str]) -> list[tuple[str, np.ndarray]]:
    """[(stream name, (T, C) float32)] of the run's channels, one per (subject, session) run of rows."""
    text = read_csv_text(path, b)
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise InputError("the file is empty (no header row)")
    header = lines[first]
    row = next((line.strip() for line in lines[first + 1:] if line.strip()), "")
    counted = sorted(DELIMITERS, key=lambda d: -len(_fields(header, d)))
    fits = [d for d in counted if len(_fields(header, d)) >= 2 and (not row or len(_fields(row, d)) ==
                                                                    len(_fields(header, d)))]
    delimiter = fits[0] if fits else counted[0]
    names = [c.strip() for c in _fields(header, delimiter)]
    if len(names) < 2:
        raise InputError("is not a CSV of signals: its header has no , ; tab or | separator")
    if all(_is_number(n) for n in names):
        raise InputError(f"has no header row (its first row holds numbers); add one naming the columns, e.g. "
                         f"{','.join(b.channels)}")
    cells = _fields(row, delimiter) if row else []
    decimal = "," if delimiter != "," and any(_DECIMAL_COMMA.match(c) for c in cells) and \
        not any(_DECIMAL_POINT.search(c) for c in cells) else "."
    columns, seen = [], {}
    for i, name in enumerate(names):  # as pandas names them: empty -> "unnamed: i", repeats -> "x.1"
        name = name or f"unnamed: {i}"
        count = seen.get(name, 0)
        seen[name] = count + 1
        columns.append(name if count == 0 else f"{name}.{count}")
    missing = [c for c in b.channels if c not in columns]
    if missing:
        raise InputError(f"has no column(s) {missing}; this model was trained on channels {b.channels} (the CSV has "
                         f"{columns[:12]}). Rename the columns to match")
    lower = {c.lower(): c for c in columns}
    role = {r: next((lower[n] for n in names_ if n in lower), None) for r, names_ in ROLE_NAMES.items()}
    position = {c: i for i, c in enumerate(columns)}
    channel_at = [position[c] for c in b.channels]
    key_at = [position[role[r]] for r in ("subject", "session") if role[r] is not None]
    time_at = position[role["time"]] if role["time"] is not None else None
    bound = float(b.limits["max_abs_value"])
    max_rows = int(b.limits["max_rows"])

    def number(cell: str, column: str, line: int, bounded: bool = True) -> float:
        cell = cell.strip()
        if cell in NA_CELLS:
            return math.nan
        try:
            if "_" in cell:  # Python reads 1_000 as a number; Sigscope's reader (pandas) does not
                raise ValueError(cell)
            value = float(cell.replace(",", ".") if decimal == "," else cell)
        except ValueError:
            raise InputError(f"non-numeric value {cell[:20]!r} in column {column!r} at line {line}; signals must be "
                             "numbers — fix or remove those rows") from None
        if math.isinf(value) or (bounded and abs(value) > bound):
            raise InputError(f"{'an infinite value' if math.isinf(value) else f'{value:.3g}, beyond |x| <= {bound:g}'}"
                             f" in column {column!r} at line {line}; signals must be finite numbers in their "
                             "physical unit — fix or remove those rows")
        return value

    streams, current, rows, times, line_numbers = [], None, [], [], []

    def flush():
        if not rows:
            return
        values = np.asarray(rows, dtype=np.float64).astype(np.float32)
        keys = dict(zip([r for r in ("subject", "session") if role[r] is not None], current or ()))
        name = f"{keys.get('subject', path.stem)}:{keys.get('session', '0')}"
        if time_at is not None:
            _check_rate(np.asarray(times, dtype=np.float64), role["time"], b, line_numbers)
        values = fill_nan_runs(values, np.asarray(line_numbers), b.channels, int(b.limits["max_nan_run"]))
        streams.append((name, values))

    reader = csv.reader(io.StringIO("\n".join(lines[first + 1:])), delimiter=delimiter, skipinitialspace=True)
    count = 0
    try:
        for offset, cells in enumerate(reader):
            line = first + 2 + offset
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if len(cells) > len(columns):
                raise InputError(f"line {line} has {len(cells)} fields, the header {len(columns)} (delimiter "
                                 f"{delimiter!r}); fix that row or remove it")
            cells = cells + [""] * (len(columns) - len(cells))  # short rows: missing cells, as pandas reads them
            count += 1
            if count > max_rows:
                raise InputError(f"has more than {max_rows} rows (the limit per file); cut the recording into "
                                 "shorter files")
            key = tuple(cells[i].strip() for i in key_at)
            if current is not None and key != current:
                flush()
                rows, times, line_numbers = [], [], []
            current = key
            rows.append([number(cells[i], columns[i], line) for i in channel_at])
            line_numbers.append(line)
            if time_at is not None:
                times.append(number(cells[time_at], columns[time_at], line, bounded=False))
    except csv.Error as e:
        raise InputError(f"cannot parse as CSV with delimiter {delimiter!r}: {e}") from None
    if count == 0:
        raise InputError("the file has a header but no rows")
    flush()
    kept = []
    for name, values in streams:
        if len(values) < b.window:
            notes.append(f"stream {name} has {len(values)} rows, fewer than one {b.window}-sample window: skipped")
        else:
            kept.append((name, values))
    if not kept:
        raise InputError(f"no stream has a full window of {b.window} samples ({b.window_seconds:g} s at "
                         f"{b.sample_rate:g} Hz); record a longer stretch")
    return kept


def _check_rate(times: np.ndarray, column: str, b: Bundle, lines: list[int]) -> None:
    """A time column that runs backwards, or says another rate than the run's, is refused."""
    steps = np.diff(times)
    back = np.flatnonzero(steps < 0)
    if len(back):
        raise InputError(f"the time column {column!r} runs backwards at line {lines[int(back[0]) + 1]}; sort the rows "
                         "by time, or give each recording its own session column")
    known = steps[np.isfinite(steps)]
    if len(known) and (not (known > 0).any() or np.median(known) <= 0):
        raise InputError(f"the time column {column!r} does not advance on most rows; it cannot give the sampling "
                         "rate — fix it, or rename it")
    if len(times) < 3:
        return
    dt = float(np.median(steps))
    if not np.isfinite(dt) or dt <= 0:
        return
    name = column.lower()
    scale = 1e-3 if name.endswith("ms") else 1e-6 if name.endswith("us") else 1e-9 if name.endswith("ns") else 1.0
    rate = 1.0 / (dt * scale)
    if abs(rate - b.sample_rate) > float(b.limits["rate_tolerance"]) * b.sample_rate:
        raise InputError(f"the time column says {rate:.1f} Hz; this model was trained at {b.sample_rate:g} Hz. "
                         f"Resample the recording to {b.sample_rate:g} Hz")


def fill_nan_runs(values: np.ndarray, lines: np.ndarray, channels: list[str], max_run: int) -> np.ndarray:
    """Interpolate runs of <= max_run missing samples per channel; refuse longer runs by line."""
    missing = np.isnan(values)
    if not missing.any():
        return values
    values = values.copy()
    for c in np.flatnonzero(missing.any(axis=0)):
        gaps = missing[:, c]
        edges = np.diff(np.concatenate([[0], gaps.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        longest = int(np.argmax(ends - starts))
        if ends[longest] - starts[longest] > max_run or gaps.all():
            raise InputError(f"{ends[longest] - starts[longest]} consecutive missing values in column "
                             f"{channels[c]!r} at lines {lines[starts[longest]]}-{lines[ends[longest] - 1]} (runs up "
                             f"to {max_run} are interpolated); fill or cut them")
        good = np.flatnonzero(~gaps)
        values[gaps, c] = np.interp(np.flatnonzero(gaps), good, values[good, c])
    return values


# ---- features (core/data/features.py, in numpy) ------------------------------------------
def hann(n: int) -> np.ndarray:
    """Periodic Hann window (scipy.signal.get_window("hann", n, fftbins=True))."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def dct_matrix(n: int) -> np.ndarray:
    """(n, n) orthonormal DCT-II: row k applied to a length-n vector gives coefficient k."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.sqrt(2.0 / n) * np.cos(np.pi * k * (2 * i + 1) / (2 * n))
    m[0] /= np.sqrt(2.0)
    return m


def _check_finite(x: np.ndarray, transform: str) -> np.ndarray:
    if not np.isfinite(x).all():
        raise InputError(f"the {transform} features are not finite: the audio is beyond what they can represent — "
                         "audio is expected in [-1, 1]; check the recording's level and format")
    return x


def logmel(y: np.ndarray, f: dict, mel: np.ndarray) -> np.ndarray:
    """(..., T) -> (..., n_mels, frames): ln(mel power + 1e-6), centered zero-padded STFT, periodic Hann."""
    n_fft, hop = int(f["n_fft"]), int(f["hop_length"])
    padded = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(n_fft // 2, n_fft // 2)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :]
    spectrum = np.fft.rfft(frames * hann(n_fft), axis=-1)  # (..., frames, n_fft//2+1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = np.log(power @ mel.T + float(f["log_offset"]))
    return np.swapaxes(out, -1, -2).astype(np.float32)


def mfcc(lm: np.ndarray, n: int, keep_c0: bool) -> np.ndarray:
    """Orthonormal DCT-II over the mel axis; coefficients 0..n-1, or 1..n without c0."""
    cepstra = np.matmul(dct_matrix(lm.shape[-2]), lm.astype(np.float64)).astype(np.float32)
    return cepstra[..., :n, :] if keep_c0 else cepstra[..., 1:n + 1, :]


def delta(x: np.ndarray, order: int, half_width: int = 2) -> np.ndarray:
    """HTK regression deltas over +-half_width frames, edges repeated. (..., F, T) -> same."""
    for _ in range(order):
        t = x.shape[-1]
        padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(half_width, half_width)], mode="edge")
        num = sum(n * (padded[..., half_width + n:half_width + n + t] - padded[..., half_width - n:half_width - n + t])
                  for n in range(1, half_width + 1))
        x = (num / (2 * sum(n * n for n in range(1, half_width + 1)))).astype(np.float32)
    return x


def featurize(clips: np.ndarray, f: dict, mel: np.ndarray | None) -> np.ndarray:
    """(N, T) clips -> (N, *input_shape) features, as core.data.features.featurize_audio."""
    y = np.asarray(clips, dtype=np.float32)
    kind = f["type"]
    if kind == "raw":
        return _check_finite(y[..., None, :], "waveform")
    lm = _check_finite(logmel(y, f, mel), "log-mel")
    if kind == "logmel":
        return lm
    n_mels, keep_c0, half = int(f["n_mels"]), bool(f["mfcc_c0"]), int(f.get("delta_half_width", 2))
    if kind == "mfcc":
        return _check_finite(mfcc(lm, int(f["n_mfcc"]), keep_c0), "MFCC")
    if kind == "mfcc_deltas":
        cepstra = _check_finite(mfcc(lm, int(f["n_mfcc"]), keep_c0), "MFCC")
        d1 = _check_finite(delta(cepstra, 1, half), "delta")
        d2 = _check_finite(delta(d1, 1, half), "delta-delta")
        return np.concatenate([cepstra, d1, d2], axis=-2)
    if kind != "stack4":
        raise BundleError(f"pipeline.json names features {kind!r}, which this predict.py does not know")
    cepstra = _check_finite(mfcc(lm, n_mels - (0 if keep_c0 else 1), keep_c0), "MFCC")
    if not keep_c0:  # keep n_mels rows: a zero row in the dropped c0's place, at the end
        cepstra = np.concatenate([cepstra, np.zeros_like(cepstra[..., :1, :])], axis=-2)
    planes = [lm, cepstra, _check_finite(delta(cepstra, 1, half), "delta"),
              _check_finite(delta(cepstra, 2, half), "delta-delta")]
    return np.stack(planes, axis=-3)  # (N, 4, n_mels, frames)


# ---- normalization (core/data/normalize.py apply_normalization) --------------------------
def normalize(x: np.ndarray, norm: dict) -> np.ndarray:
    kind = (norm or {}).get("kind", "none")
    x = np.asarray(x, dtype=np.float32)
    if kind == "none":
        return x
    if kind == "per_example":
        mid = x.mean(axis=-1, keepdims=True)
        spread = x.std(axis=-1, keepdims=True)
        return ((x - mid) / np.where(spread > _EPS, spread, 1.0)).astype(np.float32)
    if kind == "per_utterance":
        voiced = voiced_frames(x, norm["energy"], float(norm.get("top_db", 30.0)))  # (..., T)
        n_lead = x.ndim - voiced.ndim
        w = voiced.reshape(voiced.shape[:-1] + (1,) * n_lead + voiced.shape[-1:]).astype(np.float32)
        count = w.sum(axis=-1, keepdims=True)
        mid = (x * w).sum(axis=-1, keepdims=True) / count
        spread = np.sqrt((((x - mid) ** 2) * w).sum(axis=-1, keepdims=True) / count)
        return ((x - mid) / np.where(spread > _EPS, spread, 1.0)).astype(np.float32)
    if kind not in ("zscore", "robust"):
        raise BundleError(f"pipeline.json names normalization {kind!r}, which this predict.py does not know")
    center = np.asarray(norm["center"], dtype=np.float32)
    scale = np.asarray(norm["scale"], dtype=np.float32)
    if x.shape[-center.ndim:-1] != center.shape[:-1]:
        raise BundleError(f"inputs of shape {x.shape[1:]} do not match the normalization's {center.shape[:-1]}")
    return ((x - center) / scale).astype(np.float32)


def voiced_frames(x: np.ndarray, energy: dict, top_db: float) -> np.ndarray:
    grid = x[..., energy["plane"], :, :] if energy.get("plane") is not None else x
    e = (grid[..., 0, :] if energy["rows"] == "first" else grid.mean(axis=-2)) * energy["scale"]
    return e >= e.max(axis=-1, keepdims=True) - top_db * _NATS_PER_DB


# ---- answers -----------------------------------------------------------------------------
def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def aggregate_probs(window_probs: np.ndarray, how: str = "mean") -> np.ndarray:
    """(N, K) -> (K,): softmax of the mean log-probability, or the share of windows' votes."""
    if how == "mean":
        logp = np.log(np.clip(window_probs, 1e-12, 1.0)).mean(axis=0)
        p = np.exp(logp - logp.max())
        return p / p.sum()
    votes = np.bincount(window_probs.argmax(axis=1), minlength=window_probs.shape[1]).astype(np.float64)
    votes += 1e-6 * window_probs.mean(axis=0)
    return votes / votes.sum()


def flat_warnings(signal: np.ndarray, kind: str, channels: list[str], silence: float) -> list[str]:
    x = np.asarray(signal, dtype=np.float64).reshape(len(signal), -1)
    std = x.std(axis=0)
    floor = np.full(x.shape[1], silence) if kind == "audio" else 1e-6 * np.maximum(1.0, np.abs(x).max(axis=0))
    flat = std < floor
    if flat.all():
        return ["every channel is constant over the whole file: the signal holds no information, so this answer "
                "only reflects the model's bias"]
    if flat.any():
        names = [channels[c] if c < len(channels) else str(c) for c in np.flatnonzero(flat)]
        return [f"channel(s) {', '.join(names)} hold one value over the whole file: the answer rests on the others"]
    return []


def classify(b: Bundle, path: Path, top_k: int, hop_seconds: float | None, aggregate: str) -> dict:
    """One file's answer as a JSON-able dict (the fields `python -m core predict --json` prints)."""
    if path.is_dir():
        raise InputError("is a folder; give the recordings in it")
    if not path.is_file():
        raise InputError("no such file")
    if path.stat().st_size == 0:
        raise InputError("the file is empty (0 bytes)")
    hop = b.hop if hop_seconds is None else int(round(hop_seconds * b.sample_rate))
    if hop < 1:
        raise InputError(f"--hop {hop_seconds} s is less than one sample at {b.sample_rate:g} Hz")
    with open(path, "rb") as f:
        head = f.read(4096)
    kind = detect_kind(head)
    if kind == "csv" and path.name.lower().endswith(AUDIO_EXTENSIONS):
        raise InputError(f"is not audio despite its {path.suffix} name; give a real recording")
    if kind == "audio" and b.signal != "audio":
        raise InputError("is audio, but this model classifies IMU CSVs")
    if kind == "csv" and b.signal != "imu":
        raise InputError("is a CSV, but this model classifies audio recordings (WAV/FLAC/OGG)")
    notes: list[str] = []
    if kind == "audio":
        signal = read_audio(path, b, notes)
        starts = sliding_starts(len(signal), b.window, hop)
    else:
        streams = read_imu(path, b, notes)
        pieces, all_starts, offset = [], [], 0
        for _, values in streams:
            all_starts.append(np.arange(0, len(values) - b.window + 1, hop, dtype=np.int64) + offset)
            pieces.append(values)
            offset += len(values)
        signal, starts = np.concatenate(pieces).astype(np.float32), np.concatenate(all_starts)
    if len(starts) > int(b.limits["max_windows"]):
        raise InputError(f"gives {len(starts)} windows; the limit is {b.limits['max_windows']} per file — classify "
                         "a shorter stretch or use a larger --hop")
    probs = []
    for i in range(0, len(starts), BATCH):
        batch = starts[i:i + BATCH]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if b.signal == "audio":
                x = featurize(np.stack([fit_clip(signal[s:s + b.window], b.window) for s in batch]), b.features, b.mel)
            else:
                x = np.stack([signal[s:s + b.window].T for s in batch])  # (N, C, window)
            x = normalize(x, b.normalization)
        if tuple(x.shape[1:]) != b.input_shape:
            raise BundleError(f"the pipeline gives inputs of shape {tuple(x.shape[1:])}, the model takes "
                              f"{b.input_shape}; the bundle is inconsistent")
        if not np.isfinite(x).all():
            raise InputError("the model input is not finite after the run's normalization: the values are beyond "
                             "what the run's statistics can scale — check the file's units and range")
        logits = b.logits(x)
        if not np.isfinite(logits).all():
            raise InputError("the model gave non-finite logits; the file's values are likely far outside what the "
                             "run was trained on — check its units and range")
        p = softmax(logits)
        if not np.isfinite(p).all():
            raise InputError("the probabilities are not finite; refused rather than shown")
        probs.append(p)
    window_probs = np.concatenate(probs)
    clip = aggregate_probs(window_probs, aggregate)
    if not np.isfinite(clip).all():
        raise InputError("the combined probabilities are not finite; refused rather than shown")
    order = np.argsort(-clip)
    k = max(1, min(int(top_k), len(b.classes)))
    duration = len(signal) / b.sample_rate
    top = window_probs.argmax(axis=1)
    windows = [{"start": round(float(s) / b.sample_rate, 4),
                "end": round(min(float(s) / b.sample_rate + b.window_seconds, duration), 4),
                "label": b.classes[top[i]], "p": round(float(window_probs[i, top[i]]), 6)}
               for i, s in enumerate(starts)]
    out = {"file": str(path), "label": b.classes[order[0]], "confidence": round(float(clip[order[0]]), 6),
           "entropy": round(float(-(clip * np.log(np.clip(clip, 1e-12, 1.0))).sum()), 6),
           "margin": round(float(clip[order[0]] - (clip[order[1]] if len(clip) > 1 else 0.0)), 6),
           "probabilities": {c: round(float(v), 6) for c, v in zip(b.classes, clip)},
           "top_k": [{"label": b.classes[i], "p": round(float(clip[i]), 6)} for i in order[:k]],
           "aggregate": aggregate, "duration": round(duration, 4), "window_seconds": round(b.window_seconds, 4),
           "hop_seconds": round(hop / b.sample_rate, 4), "windows": windows}
    warnings = flat_warnings(signal, b.signal, b.channels, float(b.limits["silence_peak"]))
    if warnings:
        out["warnings"] = warnings
    if notes:
        out["notes"] = notes
    return out


def one_line(error: BaseException) -> str:
    text = str(error) if isinstance(error, (InputError, BundleError)) else f"{type(error).__name__}: {error}"
    return (text.strip().splitlines() or [type(error).__name__])[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Classify recordings with this Sigscope deploy bundle "
                                     "(numpy + onnxruntime + soundfile; no Sigscope, no torch).")
    parser.add_argument("files", nargs="+", metavar="FILE", help="WAV/FLAC/OGG recordings or IMU CSV(.gz) files")
    parser.add_argument("--json", action="store_true", help="print JSON (a list, one object per file)")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per file (3)")
    parser.add_argument("--hop", type=float, default=None,
                        help="seconds between window starts (default: the run's: half the clip for audio)")
    parser.add_argument("--aggregate", choices=["mean", "vote"], default="mean",
                        help="combine windows by mean log-probability (default) or majority vote")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k {args.top_k}: list at least one class")
    try:
        bundle = Bundle()
    except BundleError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, ValueError) as e:  # a pipeline.json edited by hand
        print(f"error: {HERE}/pipeline.json lacks or mangles an entry ({type(e).__name__}: {e}); unzip the bundle "
              "again", file=sys.stderr)
        return 2
    results, failed = [], False
    for name in args.files:
        try:
            results.append(classify(bundle, Path(name), args.top_k, args.hop, args.aggregate))
        except BundleError as e:
            print(f"error: {one_line(e)}", file=sys.stderr)
            return 2
        except Exception as e:  # noqa: BLE001 - one bad file never stops the others
            results.append({"file": name, "error": one_line(e)})
            failed = True
    if args.json:
        print(json.dumps(results, indent=1, allow_nan=False))
    for r in results:
        if "error" in r:
            print(f"{r['file']}: error: {r['error']}", file=sys.stderr)
        elif not args.json:
            top = ", ".join(f"{t['label']} {t['p']:.3f}" for t in r["top_k"])
            print(f"{r['file']}: {r['label']} (p={r['confidence']:.3f}, margin {r['margin']:.3f}; {top}; "
                  f"{len(r['windows'])} window(s) over {r['duration']:.2f} s)")
            for w in r.get("warnings", []):
                print(f"{r['file']}: warning: {w}")
            for n in r.get("notes", []):
                print(f"{r['file']}: note: {n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
