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

import codecs
import csv
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from core.config import DataConfig
from core.errors import DataError
from core.limits import Limits, how_to_raise, limits
from core.data.examples import Examples
from core.data.paths import resolve_path
from core.data.sources import SourceSpec, register_source, source_options
from core.spec import Param
from core.data.windowing import window_labels, window_stream

# pandas (~0.3 s of CPU to import) is imported where a CSV is parsed: every data source registers
# by importing its module, so a process that reads no CSV (profile, audio predict) never pays it
if TYPE_CHECKING:
    import pandas as pd

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


READ_BLOCK = 1 << 16  # bytes read from the file (and decompressed from a .gz) at a time
CHUNK_CELLS = 1 << 23  # most cells parsed at a time (a chunk of a wide file has fewer rows)
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d*,\d+(?:[eE][-+]?\d+)?\s*$")
_DECIMAL_POINT = re.compile(r"\d\.\d|^\s*[-+]?\.\d")


class CsvBytes(io.RawIOBase):
    """A CSV file's text as UTF-8 bytes, with the input limits checked while it is read.

    gzip is recognized by its content and decompressed as a stream, READ_BLOCK at a time: a
    ratio of decompressed to compressed bytes over limits().max_gzip_ratio (counted from the
    first block on) is refused on the way, and a truncated .gz is a DataError. A UTF-8 BOM is
    dropped, UTF-16 (with its BOM) re-encoded as UTF-8. A line longer than max_line_bytes,
    or more than `max_lines` lines, is refused as soon as it is read: nothing holds more
    than the limit plus one block."""

    def __init__(self, path: Path, lim: Limits, max_lines: int | None = None) -> None:
        super().__init__()
        self.path, self.lim, self.max_lines = path, lim, max_lines
        self._file = open(path, "rb")
        self.gzip = self._file.read(2) == b"\x1f\x8b"
        self._file.seek(0)
        self._inflate = zlib.decompressobj(wbits=31) if self.gzip else None
        self.compressed = 0  # bytes of the file read so far
        self.inflated = 0  # bytes decompressed so far
        self.lines = 0  # newlines seen so far
        self._line = 0  # bytes since the last newline
        self._pending = b""
        self._decoder = None
        self._first = True
        self._ended = False
        self.encoding = "utf-8"

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()
        super().close()

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_BLOCK), b""))
        if not self._pending:
            self._pending = self._next_text()
        if size >= len(self._pending):  # the parser asks for more than a block: hand the block over whole
            out, self._pending = self._pending, b""
        else:
            out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def unread(self, data: bytes) -> None:
        """Hand `data` (text already read) out again before the rest of the file."""
        self._pending = data + self._pending

    def _next_text(self) -> bytes:
        while True:
            data = self._next_raw()
            if self._first and data:
                self._first = False
                if data.startswith(UTF8_BOM):
                    data, self.encoding = data[3:], "utf-8-sig"
                elif data[:2] in UTF16_BOMS:
                    self.encoding = "utf-16-le" if data[:2] == b"\xff\xfe" else "utf-16-be"
                    self._decoder = codecs.getincrementaldecoder("utf-16")()
            if self._decoder is not None:
                try:
                    data = self._decoder.decode(data, final=not data).encode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"{self.path}: starts like UTF-16 text but does not decode as UTF-16; save "
                                    "it again as UTF-8 (or UTF-16) CSV") from None
            self._count_lines(data)
            if data or self._ended:
                return data

    def _next_raw(self) -> bytes:
        if not self.gzip:
            data = self._file.read(READ_BLOCK)
            self.compressed += len(data)
            self._ended = not data
            return data
        while True:
            inflate = self._inflate
            if inflate.unconsumed_tail:
                source = inflate.unconsumed_tail
            elif inflate.eof:  # one gzip member ended: another may follow
                source = inflate.unused_data or self._read_compressed()
                if not source.strip(b"\x00"):  # the end (zero padding after the last member is allowed)
                    self._ended = True
                    return b""
                inflate = self._inflate = zlib.decompressobj(wbits=31)
            else:
                source = self._read_compressed()
                if not source:
                    raise DataError(f"{self.path}: the gzip file is truncated (it ends before its end-of-stream "
                                    "marker); copy or download it again")
            try:
                out = inflate.decompress(source, READ_BLOCK)
            except zlib.error:
                raise DataError(f"{self.path}: is not a valid gzip file (its compressed data is corrupt); copy or "
                                "download it again, or give the plain CSV") from None
            self.inflated += len(out)
            ratio = self.lim.max_gzip_ratio
            if self.inflated > ratio * max(self.compressed, READ_BLOCK):
                raise DataError(f"{self.path}: decompresses to more than {ratio:g} times its compressed size "
                                f"(refused after {self.inflated / 2**20:.1f} MiB; the limit is max_gzip_ratio="
                                f"{ratio:g}, a guard against gzip bombs); {how_to_raise('max_gzip_ratio')}")
            if out:
                return out

    def _read_compressed(self) -> bytes:
        data = self._file.read(READ_BLOCK)
        self.compressed += len(data)
        return data

    def _count_lines(self, text: bytes) -> None:
        """Refuse a line over max_line_bytes or more than max_lines lines as soon as they are read."""
        limit = self.lim.max_line_bytes
        newlines = int(np.count_nonzero(np.frombuffer(text, dtype=np.uint8) == 10))  # 6x bytes.count
        if newlines == 0:
            self._line += len(text)
            longest, where = self._line, 0
        else:
            first, last = text.find(b"\n"), text.rfind(b"\n")
            longest, where = self._line + first, 0  # `where`: newlines before the longest line
            if last - first > limit:  # a long line between the first and last newline of this block
                gaps = np.diff(np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 10)) - 1
                if gaps.max() > longest:
                    longest, where = int(gaps.max()), int(gaps.argmax()) + 1
            self._line = len(text) - last - 1
            if self._line > longest:
                longest, where = self._line, newlines
        if longest > limit:
            raise DataError(f"{self.path}: line {self.lines + where + 1} is longer than {limit} bytes (the limit is "
                            f"max_line_bytes={limit}): a CSV of signals has one short row per line — is the file "
                            f"on one line, or not a CSV? {how_to_raise('max_line_bytes')}")
        self.lines += newlines
        if self.max_lines is not None and self.lines > self.max_lines:
            raise DataError(f"{self.path}: has more than {self.max_lines} lines (the limit is max_rows="
                            f"{self.lim.max_rows} rows per file); cut the recording into shorter files, or "
                            f"{how_to_raise('max_rows')}")


@dataclass(frozen=True)
class CsvHeader:
    """How a CSV is written, read from its header and first row."""

    columns: list[str]
    delimiter: str
    decimal: str  # "." or "," (decimal commas, with a ; or tab delimiter)
    header_lines: int  # lines up to and including the header (blank lines before it, a quoted newline in it)


def _record_end(text: bytes, start: int) -> int:
    """Index of the newline that ends the CSV record starting at `start` (a newline inside
    quotes does not end it); -1 when the record does not end in `text`."""
    quotes, pos = 0, start
    while True:
        newline = text.find(b"\n", pos)
        if newline < 0:
            return -1
        quotes += text.count(b'"', pos, newline)
        if quotes % 2 == 0:
            return newline
        pos = newline + 1


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


def show_columns(columns: list[str], most: int = 12) -> str:
    """Column names for a message: at most `most`, each cut to 40 characters."""
    names = [c if len(c) <= 40 else c[:39] + "…" for c in columns[:most]]
    return repr(names) + (f" and {len(columns) - most} more" if len(columns) > most else "")


def _sniff(path: Path, stream: CsvBytes, delimiter: str | None) -> CsvHeader:
    """Read the header record and the first row (quotes as the csv module reads them), pick
    the delimiter and decimal mark, and hand the data rows back to `stream`."""
    lim = stream.lim
    text = b""
    start = header_end = row_end = -1
    while True:
        block = stream.read(READ_BLOCK)
        text += block
        if start < 0:
            stripped = len(text) - len(text.lstrip(b" \t\r\n"))
            start = stripped if stripped < len(text) else -1
            start = text.rfind(b"\n", 0, start) + 1 if start >= 0 else -1
        if start >= 0 and header_end < 0:
            header_end = _record_end(text, start)
        if header_end >= 0:
            row_start = header_end + 1
            while row_start < len(text) and text[row_start:row_start + 1] in (b"\r", b"\n"):
                row_start += 1
            row_end = _record_end(text, row_start)
            if row_end >= 0:
                break
        if not block:
            break
        if len(text) > 2 * lim.max_line_bytes + READ_BLOCK:
            raise DataError(f"{path}: its first record does not end within {2 * lim.max_line_bytes} bytes (an "
                            "unclosed quote?); not a readable CSV")
    if start < 0:
        raise DataError(f"{path}: the file has no header row, only blank lines; it is empty")
    if b"\x00" in text:
        raise DataError(f"{path}: looks binary, not a text CSV")
    header_end = len(text) if header_end < 0 else header_end
    try:
        header = text[start:header_end].decode("utf-8")
        row = text[header_end + 1:row_end].decode("utf-8").strip() if row_end >= 0 else \
            text[header_end + 1:].decode("utf-8", errors="ignore").strip()
    except UnicodeDecodeError:
        raise DataError(f"{path}: is not a UTF-8 or UTF-16 text CSV (its header does not decode); save it as "
                        "CSV UTF-8") from None
    given = delimiter
    if delimiter is None:
        counted = sorted(DELIMITERS, key=lambda d: -len(_fields(header, d)))  # most fields first (stable)
        fits = [d for d in counted if len(_fields(header, d)) >= 2 and (not row or len(_fields(row, d)) ==
                                                                        len(_fields(header, d)))]
        delimiter = fits[0] if fits else counted[0]
    names = [c.strip() for c in _fields(header, delimiter)]
    if len(names) < 2 and given:
        raise DataError(f"{path}: its header splits into one column with options.delimiter={given!r}; the file "
                        "uses another delimiter — set options.delimiter (e.g. ',' ';' or '\\t')")
    if len(names) < 2 and not _one_signal_column(names[0], row):
        if _is_number(names[0]):
            raise DataError(f"{path}: has no header row (its first line is a number); add a first line naming "
                            "the column, e.g. value")
        raise DataError(f"{path}: is not a CSV of signals: its first line has no {' '.join(map(repr, DELIMITERS))} "
                        "separator, and it is not one signal's column (a name, then one number per line). Give a CSV "
                        "with a header row of column names")
    if len(names) > lim.max_columns:
        raise DataError(f"{path}: has {len(names)} columns; the limit is max_columns={lim.max_columns}. Keep the "
                        f"signal columns only, or {how_to_raise('max_columns')}")
    cells = _fields(row, delimiter) if row else []
    if cells and len(cells) != len(names):
        raise DataError(f"{path}: is not a table: its header has {len(names)} fields separated by {delimiter!r} "
                        f"but the next row has {len(cells)}; give a CSV with one header row of column names")
    if all(_is_number(n) for n in names):
        raise DataError(f"{path}: has no header row (its first row holds numbers, not column names); add a "
                        "header row naming the columns, e.g. acc_x,acc_y,acc_z")
    decimal = "."
    if delimiter != "," and any(_DECIMAL_COMMA.match(c) for c in cells) and \
            not any(_DECIMAL_POINT.search(c) for c in cells):
        decimal = ","
    columns, seen = [], {}
    for i, name in enumerate(names):  # as pandas names them: empty -> "unnamed: i", repeats -> "x.1"
        name = name or f"unnamed: {i}"
        count = seen.get(name, 0)
        seen[name] = count + 1
        columns.append(name if count == 0 else f"{name}.{count}")
    stream.unread(text[header_end + 1:])
    return CsvHeader(columns, delimiter, decimal, text[:header_end + 1].count(b"\n") or 1)


def open_csv(path: Path, delimiter: str | None = None, max_rows: int | None = None) -> tuple[CsvBytes, CsvHeader]:
    """The CSV's data rows as a checked stream (see CsvBytes) and its header; max_rows: refuse
    more data rows than this while reading (None: no limit)."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); export the recording again")
    lim = limits()
    stream = CsvBytes(path, lim)
    try:
        header = _sniff(path, stream, delimiter)
    except BaseException:
        stream.close()
        raise
    if max_rows is not None:
        stream.max_lines = max_rows + header.header_lines
    return stream, header


def read_header(path: Path, delimiter: str | None) -> tuple[list[str], str]:
    """(column names, delimiter) of a CSV, refusing empty, binary and header-less files, files
    that are not a table, and one-column files but a signal's (a name, then numbers)."""
    stream, header = open_csv(path, delimiter)
    stream.close()
    return header.columns, header.delimiter


def _one_signal_column(name: str, row: str) -> bool:
    """A one-column CSV of one signal: a column name (not a number), then a number per row."""
    name = name.strip()
    return bool(name) and not _is_number(name) and len(name) <= 64 and _is_number(row.strip())


def looks_like_csv(head: bytes) -> bool:
    """Whether the first bytes of a file (not gzip) read as a text table: a header record
    (UTF-8, with or without BOM, or UTF-16 with BOM) holding a delimiter, or one column's name
    followed by a number (a one-signal CSV)."""
    if head[:2] in UTF16_BOMS:
        head = head[:len(head) // 2 * 2].decode("utf-16", errors="ignore").encode("utf-8")
    elif head.startswith(UTF8_BOM):
        head = head[3:]
    head = head.lstrip(b" \t\r\n")
    if not head or b"\x00" in head:
        return False
    end = _record_end(head, 0)
    record = head if end < 0 else head[:end]
    try:
        text = record.decode("utf-8")
    except UnicodeDecodeError as e:
        if end >= 0 or e.start < len(record) - 3:  # a character cut at the end of `head` is fine
            return False
        text = record[:e.start].decode("utf-8")
    if not text.replace("\t", " ").replace("\r", "").replace("\n", " ").isprintable():
        return False  # control characters: binary, not a header of column names
    if any(len(_fields(text, d)) >= 2 for d in DELIMITERS):
        return True
    rows = head[end + 1:].lstrip(b"\r\n") if end >= 0 else b""
    row_end = _record_end(rows, 0)
    first_row = rows[:row_end] if row_end >= 0 else rows[:64]
    return _one_signal_column(text, first_row.decode("utf-8", errors="replace"))


def detect_roles(path: Path, columns: list[str], opts: dict, need_label: bool = True) -> dict:
    """{"label", "subject", "session", "time": column or None, "channels": [...]}."""
    lower = {c.lower(): c for c in columns}
    roles: dict = {}
    for role, names in ROLE_NAMES.items():
        chosen = opts.get(role)
        if chosen is not None:
            if chosen not in columns:
                raise DataError(f"{path}: options.{role}={chosen!r} is not a column; columns are {show_columns(columns)}")
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
            raise DataError(f"{path}: options.channels {missing} are not columns; columns are {show_columns(columns)}")
        channels = list(opts["channels"])
    else:
        channels = [c for c in columns if c not in used and c.lower() not in IGNORED
                    and not c.lower().startswith("unnamed: ")]
    if not channels:
        raise DataError(f"{path}: no channel columns left after label/subject/session/time; columns are {show_columns(columns)}")
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


def _cell(value) -> str:
    text = str(value)
    return repr(text if len(text) <= 20 else text[:19] + "…")


def _numeric(path: Path, chunk: pd.DataFrame, channels: list[str], first_line: int,
             dtype=np.float32, bound: float | None = None) -> np.ndarray:
    """(rows, C) numbers of the channel columns; a non-numeric cell, a value that is infinite
    or overflows `dtype`, or one beyond `bound` in magnitude is refused with its line and column.
    Empty cells and NaN stay NaN (fill_nan_runs interpolates short runs)."""
    import pandas as pd

    out = np.empty((len(chunk), len(channels)), dtype=dtype)
    for c, name in enumerate(channels):
        column = chunk[name]
        numbers = column if column.dtype.kind == "f" else pd.to_numeric(column, errors="coerce")
        if column.dtype.kind not in "fiu":
            bad = numbers.isna().to_numpy() & column.notna().to_numpy()
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DataError(f"{path}: non-numeric value {_cell(column.iloc[i])} in column {name!r} at line "
                                f"{first_line + i} ({int(bad.sum())} such cells in this part); fix or remove those "
                                "rows")
        with np.errstate(over="ignore"):  # float32 overflow is refused just below, with its line
            out[:, c] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        over = np.isinf(out[:, c]) if bound is None else np.abs(out[:, c]) > bound  # NaN is neither
        if over.any():
            i = int(np.flatnonzero(over)[0])
            given = float(numbers.iloc[i])
            what = ("an infinite value" if np.isinf(given) else
                    f"{given:.3g}, which overflows {np.dtype(dtype).name}" if np.isinf(out[i, c]) else
                    f"{given:.3g}, beyond the limit |x| <= {bound:g} (max_abs_value; {how_to_raise('max_abs_value')})")
            raise DataError(f"{path}: {what} in column {name!r} at line {first_line + i} ({int(over.sum())} such "
                            "values in this part); signals must be finite numbers in their physical unit — fix or "
                            "remove those rows")
    return out


def check_time(path: Path, times: np.ndarray, lines: np.ndarray, column: str) -> None:
    """Refuse a time column that runs backwards or does not advance within one stream.

    Refused rather than noted: the time column sets the sampling rate and the order of the
    samples; rows out of order, or a column that is not time, would make windows of samples
    that were never next to each other, and the answer would look like any other."""
    if len(times) < 2:
        return
    steps = np.diff(times)
    back = np.flatnonzero(steps < 0)
    if len(back):
        i = int(back[0])
        raise DataError(f"{path}: the time column {column!r} runs backwards at line {lines[i + 1]} ({times[i + 1]:.6g} "
                        f"after {times[i]:.6g} on line {lines[i]}); sort the rows by time, or give each recording "
                        "its own session column so its time can restart")
    known = steps[np.isfinite(steps)]
    if len(known) and not (known > 0).any():
        raise DataError(f"{path}: the time column {column!r} is constant ({times[0]:.6g} from line {lines[0]} to "
                        f"{lines[-1]}); it cannot give the sampling rate — fix it, or rename it and set options."
                        "sample_rate")
    if len(known) and np.median(known) <= 0:
        i = int(np.flatnonzero(steps == 0)[0])
        raise DataError(f"{path}: the time column {column!r} does not advance on most rows (first repeated at line "
                        f"{lines[i + 1]}); it cannot give the sampling rate — fix it, or rename it and set options."
                        "sample_rate")


def read_streams(path: Path, opts: dict, label_default: str | None = None, session_default: str = "0",
                 max_rows: int | None = None, on_rows: Callable[[int], None] | None = None) -> Iterator[tuple]:
    """Yield (values (T, C), labels (T,) str, lines (T,), channels, subject, session, times)
    per stream of one CSV, reading opts["chunk_rows"] rows at a time from a checked stream
    (see CsvBytes: line length, gzip ratio and, with `max_rows`, the row count are refused
    while reading). on_rows(n): called as the current stream grows to n rows, so a caller
    can refuse (raise) before the rest is read. Values are float32, finite and within
    limits().max_abs_value; times float64, checked to run forwards (check_time)."""
    stream, header = open_csv(path, opts.get("delimiter"), max_rows)
    try:
        yield from _read_streams(path, opts, stream, header, label_default, session_default, on_rows)
    finally:
        stream.close()


def _read_streams(path, opts, stream, header, label_default, session_default, on_rows):
    import pandas as pd

    columns, delimiter = header.columns, header.delimiter
    roles = detect_roles(path, columns, opts, need_label=label_default is None)
    channels = roles["channels"]
    keys = [k for k in (roles["subject"], roles["session"]) if k is not None]
    text = keys + ([roles["label"]] if roles["label"] else [])
    position = {name: i for i, name in enumerate(columns)}
    bound = limits().max_abs_value
    buffer: list[tuple] = []
    current: tuple | None = None
    buffered_rows = 0
    limit = int(opts["max_stream_rows"])

    def flush():
        values = np.concatenate([b[0] for b in buffer])
        labels = np.concatenate([b[1] for b in buffer])
        lines = np.concatenate([b[2] for b in buffer])
        times = np.concatenate([b[3] for b in buffer]) if roles["time"] else None
        if times is not None:
            check_time(path, times, lines, roles["time"])
        subject = current[0] if roles["subject"] else path.stem
        session = current[-1] if roles["session"] else session_default
        return values, labels, lines, channels, str(subject), str(session), times

    line = header.header_lines + 1
    try:
        # every column is parsed (usecols would let a row with an extra field through unnoticed);
        # a wide file gets fewer rows per chunk, so a chunk holds at most CHUNK_CELLS cells
        rows = max(1, min(int(opts["chunk_rows"]), CHUNK_CELLS // len(columns)))
        reader = pd.read_csv(stream, sep=delimiter, header=None, names=list(range(len(columns))), index_col=False,
                             decimal=header.decimal, chunksize=rows, dtype={position[c]: str for c in text},
                             skipinitialspace=True, skip_blank_lines=True, engine="c")
        for chunk in reader:
            chunk.columns = [columns[i] for i in chunk.columns]
            values = _numeric(path, chunk, channels, line, np.float32, bound)
            times = _numeric(path, chunk, [roles["time"]], line, np.float64)[:, 0] if roles["time"] else None
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
                if on_rows is not None:
                    on_rows(buffered_rows)
    except pd.errors.ParserError as e:
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if fields:  # pandas counts lines from the first data row
            expected, at, saw = map(int, fields.groups())
            raise DataError(f"{path}: line {at + header.header_lines} has {saw} fields, the header {expected} "
                            f"(delimiter {delimiter!r}); fix that row or remove it") from None
        raise DataError(f"{path}: cannot parse as CSV with delimiter {delimiter!r}: "
                        f"{str(e).strip().splitlines()[-1][:200]}") from None
    except pd.errors.EmptyDataError:
        pass  # no rows: refused just below
    except UnicodeDecodeError:
        raise DataError(f"{path}: is not a UTF-8 or UTF-16 text CSV (a byte sequence does not decode); save it "
                        "as CSV UTF-8") from None
    if line == header.header_lines + 1:
        raise DataError(f"{path}: the file has a header but no rows")
    if buffer:
        yield flush()


def time_column(path: Path, opts: dict) -> str | None:
    """The file's time column (chosen in options or detected by name), whose name gives the unit."""
    columns, _ = read_header(path, opts.get("delimiter"))
    return detect_roles(path, columns, opts, need_label=False)["time"]


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
        unit_from = time_column(file, opts) if rate is None else None  # "time_ms" is in milliseconds
        for values, labels, lines, chans, subject, session, times in read_streams(file, opts, label_default, session_default):
            if channels is None:
                channels = chans
            elif chans != channels:
                raise DataError(f"{file}: channels {chans} differ from the first file's {channels}; "
                                "every recording needs the same columns (or set options.channels)")
            if rate is None:
                rate = estimate_rate(times, unit_from)
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
