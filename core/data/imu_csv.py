"""IMU CSV files: long format (one row per sample) or a folder of one-file-per-recording CSVs.

Columns are detected by name or chosen in options:
    label   (label/activity/class/target/gesture)    required
    subject (subject/user/participant)               optional, the split group
    session (session/recording/trial/run)            optional, starts a new stream
    time    (time/timestamp/t)                       optional, gives the sampling rate
    channels: every other numeric column (a `sample`/`index` column is ignored)
Rows with an empty label are unlabeled: they never enter a window. Consecutive rows with
the same (subject, session) form one stream, cut into cfg.window/cfg.stride windows.

The file is read in chunks of options.chunk_rows rows, so a long recording is never parsed
whole; each stream is kept as a float32 array, up to options.max_stream_rows rows, and the
total windows up to options.max_windows — beyond either the load is refused with the limit.
Short NaN runs (<= options.max_nan_run samples) are interpolated and reported in info;
longer ones are refused with their line numbers.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.errors import DataError
from core.data.examples import Examples
from core.data.paths import resolve_path
from core.data.sources import SourceSpec, register_source, source_options
from core.spec import Param
from core.data.windowing import window_labels, window_stream

ROLE_NAMES = {
    "label": ("label", "activity", "class", "target", "gesture", "annotation", "y"),
    "subject": ("subject", "user", "subject_id", "user_id", "participant", "person"),
    "session": ("session", "recording", "trial", "run", "experiment", "exp_id"),
    "time": ("time", "timestamp", "t", "seconds", "time_s", "time_ms", "ms"),
}
IGNORED = ("sample", "index", "idx", "sample_index", "row", "unnamed: 0")
DELIMITERS = (",", ";", "\t", "|")

def _column(role: str) -> Param:
    return Param(role, "str", None, f"the {role} column's name (detected by name when not given: "
                 f"{', '.join(ROLE_NAMES[role][:4])}, ...)", nullable=True, null_means="detected by name",
                 label=f"{role.title()} column")


_NAMES = Param("name", "str", "", "a name")
MAX_NAN_RUN = Param("max_nan_run", "int", 5, "longest run of missing samples that is interpolated (longer runs "
                    "are refused with their line numbers)", low=0, high=1_000_000, unit="samples",
                    label="Max NaN run", sweep=False, advanced=True)
MAX_WINDOWS = Param("max_windows", "int", 1_000_000, "more windows than this are refused", low=1,
                    high=100_000_000, label="Max windows", sweep=False, advanced=True)
OPTIONS = (
    Param("delimiter", "choice", None, "column separator", choices=(",", ";", "\t", "|"), nullable=True,
          null_means="auto-detected among , ; tab |", label="Delimiter"),
    _column("label"), _column("subject"), _column("session"), _column("time"),
    Param("channels", "list", None, "channel columns", item=_NAMES, nullable=True,
          null_means="every other numeric column", label="Channels"),
    Param("sample_rate", "float", None, "sampling rate", low=1e-3, high=1e6, unit="Hz", nullable=True,
          null_means="from the time column, else 50 with a warning", label="Sample rate (Hz)", sweep=False),
    Param("classes", "list", None, "labels to keep, in this order; other labels count as unlabeled", item=_NAMES,
          nullable=True, null_means="every label", label="Classes"),
    Param("label_from", "choice", "column", "where a row's label comes from", choices=("column", "folder"),
          choice_help={"column": "the label column", "folder": "the name of the folder holding the file "
                                                                 "(one file per recording)"},
          label="Labels from"),
    MAX_NAN_RUN,
    Param("chunk_rows", "int", 200_000, "CSV rows parsed at a time", low=1000, high=10_000_000, sweep=False, advanced=True,
          label="Rows per chunk"),
    Param("max_stream_rows", "int", 20_000_000, "one stream longer than this is refused", low=1,
          high=1_000_000_000, sweep=False, label="Max stream rows", advanced=True),
    MAX_WINDOWS,
)
DEFAULT_OPTIONS = {p.name: p.default for p in OPTIONS}


def _open_text(path: Path):
    return gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, "r", newline="")


def read_header(path: Path, delimiter: str | None) -> tuple[list[str], str]:
    """(column names, delimiter) of a CSV, refusing empty, binary and one-column files."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); export the recording again")
    try:
        with _open_text(path) as f:
            first = ""
            for line in f:
                if line.strip():
                    first = line.rstrip("\r\n")
                    break
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise DataError(f"{path}: is not a readable text CSV ({e.__class__.__name__}: {e})") from None
    if not first:
        raise DataError(f"{path}: the file has no header row, only blank lines; it is empty")
    if "\x00" in first:
        raise DataError(f"{path}: looks binary, not a text CSV")
    if delimiter is None:
        delimiter = max(DELIMITERS, key=first.count)
    columns = [c.strip().strip('"') for c in first.split(delimiter)]
    if len(columns) < 2:
        raise DataError(f"{path}: the header {first[:80]!r} splits into one column with delimiter "
                        f"{delimiter!r}; the file uses another delimiter — set options.delimiter "
                        "(e.g. ',' ';' or '\\t')")
    return columns, delimiter


def detect_roles(path: Path, columns: list[str], opts: dict, need_label: bool = True) -> dict:
    """{"label", "subject", "session", "time": column or None, "channels": [...]}."""
    lower = {c.lower(): c for c in columns}
    roles: dict = {}
    for role, names in ROLE_NAMES.items():
        chosen = opts.get(role)
        if chosen is not None:
            if chosen not in columns:
                raise DataError(f"{path}: options.{role}={chosen!r} is not a column; columns are {columns}")
            roles[role] = chosen
        else:
            roles[role] = next((lower[n] for n in names if n in lower), None)
    if roles["label"] is None and need_label:
        raise DataError(f"{path}: no label column (looked for {', '.join(ROLE_NAMES['label'])}); columns are "
                        f"{columns}. Name it with options.label, or use label_from='folder'")
    used = {v for v in roles.values() if v is not None}
    if opts.get("channels"):
        missing = [c for c in opts["channels"] if c not in columns]
        if missing:
            raise DataError(f"{path}: options.channels {missing} are not columns; columns are {columns}")
        channels = list(opts["channels"])
    else:
        channels = [c for c in columns if c not in used and c.lower() not in IGNORED]
    if not channels:
        raise DataError(f"{path}: no channel columns left after label/subject/session/time; columns are {columns}")
    roles["channels"] = channels
    return roles


class StreamWindows:
    """Collects windows from many streams; labels are strings mapped to class indices."""

    def __init__(self, cfg: DataConfig, opts: dict, source_name: str) -> None:
        self.cfg, self.opts, self.source_name = cfg, opts, source_name
        fixed = opts.get("classes")
        self.fixed_classes = list(fixed) if fixed else None
        self.class_index: dict[str, int] = {c: i for i, c in enumerate(self.fixed_classes or [])}
        self.windows: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.groups: list[np.ndarray] = []
        self.ids: list[np.ndarray] = []
        self.n_windows = 0
        self.rows = 0
        self.unlabeled_rows = 0
        self.row_counts: dict[str, int] = {}
        self.interpolated = 0
        self.streams = 0
        self.subjects: set[str] = set()

    def label_ids(self, labels: np.ndarray) -> np.ndarray:
        """String labels -> class indices, -1 for empty/ignored labels; counts rows per label."""
        out = np.full(len(labels), -1, dtype=np.int64)
        values, inverse = np.unique(labels, return_inverse=True)
        for k, value in enumerate(values):
            name = str(value).strip()
            count = int((inverse == k).sum())
            if name in ("", "nan", "None", "<NA>"):
                continue
            self.row_counts[name] = self.row_counts.get(name, 0) + count
            if name not in self.class_index:
                if self.fixed_classes is not None:
                    continue
                self.class_index[name] = len(self.class_index)
            out[inverse == k] = self.class_index[name]
        return out

    def add(self, path: Path, values: np.ndarray, labels: np.ndarray, lines: np.ndarray,
            channels: list[str], subject: str, session: str) -> None:
        """One stream: (T, C) values, (T,) class indices (-1 unlabeled), (T,) file line numbers."""
        values = fill_nan_runs(path, values, lines, channels, int(self.opts["max_nan_run"]), self)
        self.rows += len(values)
        self.unlabeled_rows += int((labels < 0).sum())
        self.streams += 1
        self.subjects.add(subject)
        starts, window_label, keep = window_labels(labels, self.cfg.window, self.cfg.stride, self.cfg.label_mode)
        if not keep.any():
            return
        kept = starts[keep]
        self.n_windows += len(kept)
        if self.n_windows > int(self.opts["max_windows"]):
            raise DataError(f"{path}: more than {self.opts['max_windows']} windows (options.max_windows); "
                            "use a larger stride, fewer files, or raise the limit")
        self.windows.append(window_stream(values, self.cfg.window, self.cfg.stride)[keep])
        self.labels.append(window_label[keep])
        self.groups.append(np.full(len(kept), subject, dtype=object))
        self.ids.append(np.array([f"{subject}:{session}:{s}" for s in kept], dtype=object))

    def examples(self, channels: list[str], rate: float, info: dict) -> Examples:
        names = self.fixed_classes or sorted(self.class_index)
        remap = np.array([names.index(c) for c in self.class_index], dtype=np.int64)  # first-seen -> sorted
        if self.windows:
            x = np.concatenate(self.windows)
            y = remap[np.concatenate(self.labels)]
            groups, ids = np.concatenate(self.groups).astype(str), np.concatenate(self.ids).astype(str)
        else:
            x = np.zeros((0, len(channels), self.cfg.window), np.float32)
            y = np.zeros(0, np.int64)
            groups = ids = np.zeros(0, dtype=str)
        info = {**info, "rows": self.rows, "unlabeled_rows": self.unlabeled_rows,
                "row_class_counts": dict(sorted(self.row_counts.items())), "streams": self.streams,
                "subjects": len(self.subjects), "interpolated_values": self.interpolated,
                "window_count": int(len(y)), "window": self.cfg.window, "stride": self.cfg.stride}
        return Examples(x=x, y=y, groups=groups, ids=ids, class_names=list(names), channel_names=list(channels),
                        sample_rate=rate, signal="imu", info=info)


def fill_nan_runs(path: Path, values: np.ndarray, lines: np.ndarray, channels: list[str],
                  max_run: int, counter=None) -> np.ndarray:
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
            raise DataError(f"{path}: {ends[longest] - starts[longest]} consecutive missing values in column "
                            f"{channels[c]!r} at lines {lines[starts[longest]]}-{lines[ends[longest] - 1]} "
                            f"(runs up to options.max_nan_run={max_run} are interpolated); fill or cut them")
        good = np.flatnonzero(~gaps)
        values[gaps, c] = np.interp(np.flatnonzero(gaps), good, values[good, c])
        if counter is not None:
            counter.interpolated += int(gaps.sum())
    return values


def _numeric(path: Path, chunk: pd.DataFrame, channels: list[str], first_line: int) -> np.ndarray:
    """(rows, C) float32 of the channel columns; a non-numeric cell is refused with its line."""
    out = np.empty((len(chunk), len(channels)), dtype=np.float32)
    for c, name in enumerate(channels):
        column = chunk[name]
        numbers = pd.to_numeric(column, errors="coerce")
        bad = numbers.isna().to_numpy() & column.notna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path}: non-numeric value {str(column.iloc[i])!r} in column {name!r} at line "
                            f"{first_line + i} ({int(bad.sum())} such cells in this part); fix or remove those rows")
        out[:, c] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def read_streams(path: Path, opts: dict, label_default: str | None = None,
                 session_default: str = "0") -> Iterator[tuple]:
    """Yield (values (T, C), labels (T,) str, lines (T,), channels, subject, session, rate_hint)
    per stream of one CSV, reading opts["chunk_rows"] rows at a time."""
    columns, delimiter = read_header(path, opts.get("delimiter"))
    roles = detect_roles(path, columns, opts, need_label=label_default is None)
    channels = roles["channels"]
    keys = [k for k in (roles["subject"], roles["session"]) if k is not None]
    text_cols = {c: str for c in keys + ([roles["label"]] if roles["label"] else [])}
    buffer: list[tuple] = []
    current: tuple | None = None
    buffered_rows = 0
    limit = int(opts["max_stream_rows"])

    def flush():
        values = np.concatenate([b[0] for b in buffer])
        labels = np.concatenate([b[1] for b in buffer])
        lines = np.concatenate([b[2] for b in buffer])
        times = np.concatenate([b[3] for b in buffer]) if roles["time"] else None
        subject = current[0] if roles["subject"] else path.stem
        session = current[-1] if roles["session"] else session_default
        return values, labels, lines, channels, str(subject), str(session), times

    try:
        reader = pd.read_csv(path, sep=delimiter, chunksize=int(opts["chunk_rows"]), dtype=text_cols,
                             skipinitialspace=True, skip_blank_lines=True, engine="c")
        line = 2
        for chunk in reader:
            chunk.columns = [str(c).strip().strip('"') for c in chunk.columns]
            values = _numeric(path, chunk, channels, line)
            times = _numeric(path, chunk, [roles["time"]], line)[:, 0] if roles["time"] else None
            if roles["label"]:
                labels = chunk[roles["label"]].fillna("").to_numpy(dtype=str)
            else:
                labels = np.full(len(chunk), label_default, dtype=object).astype(str)
            lines = np.arange(line, line + len(chunk))
            line += len(chunk)
            key = np.zeros(len(chunk), dtype=np.int64)  # one code per (subject, session) in this chunk
            for column in keys:
                codes, uniques = pd.factorize(chunk[column])
                key = key * (len(uniques) + 1) + codes
            cut = np.flatnonzero(key[1:] != key[:-1]) + 1
            for a, b in zip(np.concatenate([[0], cut]), np.concatenate([cut, [len(chunk)]])):
                k = tuple(chunk[keys].iloc[a].astype(str)) if keys else ("",)
                if current is not None and k != current:
                    yield flush()
                    buffer, buffered_rows = [], 0
                current = k
                buffer.append((values[a:b], labels[a:b], lines[a:b], None if times is None else times[a:b]))
                buffered_rows += b - a
                if buffered_rows > limit:
                    raise DataError(f"{path}: one stream (subject/session {current}) has more than {limit} rows "
                                    "(options.max_stream_rows); split the recording or raise the limit")
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: cannot parse as CSV with delimiter {delimiter!r}: {e}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file has a header but no rows") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: is not a text CSV ({e})") from None
    if buffer:
        yield flush()


def estimate_rate(times: np.ndarray | None, time_column: str | None) -> float | None:
    """Sampling rate from a time column (seconds; ms/us/ns by the column's name)."""
    if times is None or len(times) < 3:
        return None
    dt = float(np.median(np.diff(times)))
    if not np.isfinite(dt) or dt <= 0:
        return None
    name = (time_column or "").lower()
    scale = 1e-3 if name.endswith("ms") else 1e-6 if name.endswith("us") else 1e-9 if name.endswith("ns") else 1.0
    return 1.0 / (dt * scale)


def load_imu_files(cfg: DataConfig, path: Path, opts: dict, source_name: str, info: dict | None = None) -> Examples:
    """Windows of one CSV file or of every CSV under a folder (one recording per file)."""
    files = csv_files(path)
    collector = StreamWindows(cfg, opts, source_name)
    channels: list[str] | None = None
    rate = opts.get("sample_rate")
    rate_from = "options.sample_rate" if rate else None
    for file in files:
        label_default = file.parent.name if opts["label_from"] == "folder" else None
        session_default = str(file.relative_to(path)) if path.is_dir() else "0"
        for values, labels, lines, chans, subject, session, times in read_streams(file, opts, label_default, session_default):
            if channels is None:
                channels = chans
            elif chans != channels:
                raise DataError(f"{file}: channels {chans} differ from the first file's {channels}; "
                                "every recording needs the same columns (or set options.channels)")
            if rate is None:
                rate = estimate_rate(times, opts.get("time") or "time")
                rate_from = "time column" if rate else None
            collector.add(file, values, collector.label_ids(labels), lines, chans, subject, session)
    warnings = []
    if rate is None:
        rate, rate_from = 50.0, "assumed"
        warnings.append("no time column and no options.sample_rate: assuming 50 Hz")
    info = {**(info or {}), "path": str(path), "files": len(files), "sample_rate_from": rate_from}
    if warnings:
        info["warnings"] = warnings
    return collector.examples(channels or [], float(rate), info)


def csv_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and (p.suffix.lower() in (".csv", ".txt", ".tsv")
                                                                  or p.name.lower().endswith(".csv.gz")))
    if not files:
        raise DataError(f"{path}: the folder holds no .csv/.csv.gz/.tsv/.txt files")
    return files


def load_imu_csv(cfg: DataConfig) -> Examples:
    opts = source_options(cfg)
    return load_imu_files(cfg, resolve_path(cfg, None, None), opts, "imu_csv")


def imu_csv_files(cfg: DataConfig) -> list[Path]:
    return csv_files(resolve_path(cfg, None, None))


register_source(SourceSpec("imu_csv", load_imu_csv,
                           "Any IMU CSV: long format or a folder of one-file-per-recording CSVs; "
                           "label/subject/session/time columns detected or chosen",
                           signal="imu", options=OPTIONS, default_data="none: give path",
                           files=imu_csv_files, needs_path=True))
