"""WISDM v1.1 raw accelerometer: `user,activity,timestamp,x,y,z;` at 20 Hz, 6 activities, 36 users.

The real file has trailing `;`, blank lines, records broken across two lines and records
with missing fields. The parser is tolerant but never silent: every record it cannot
use is listed in info["skipped"] with its line number(s) and reason, records rebuilt from
two lines in info["joined"], and blank lines counted. Consecutive records of the same
(user, activity) form one stream; users are the split groups. Users bring their own copy
(path is required); it is not redistributed here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.config import DataConfig
from core.errors import DataError
from core.data.examples import Examples
from core.data.imu_csv import DEFAULT_OPTIONS, MAX_NAN_RUN, MAX_WINDOWS, StreamWindows
from core.data.paths import resolve_path
from core.data.sources import SourceSpec, register_source, source_options
from core.spec import Param

CHANNELS = ["acc_x", "acc_y", "acc_z"]
MAX_LISTED = 200  # skipped/joined records listed individually; all are counted


def _parse_record(text: str) -> tuple[str, str, float, float, float] | str:
    """A record's (user, activity, x, y, z), or the reason it is unusable."""
    fields = [f.strip() for f in text.split(",")]
    if fields and fields[-1] == "":
        fields = fields[:-1]  # "…,z,;" style trailing comma
    if len(fields) < 6:
        return f"missing fields ({len(fields)} of 6)"
    if len(fields) > 6:
        return f"too many fields ({len(fields)} of 6)"
    user, activity = fields[0], fields[1]
    if not user or not activity:
        return "empty user or activity"
    try:
        x, y, z = float(fields[3]), float(fields[4]), float(fields[5])
    except ValueError:
        return f"non-numeric acceleration {fields[3:6]}"
    if not all(np.isfinite([x, y, z])):
        return "non-finite acceleration"
    return user, activity, x, y, z


def parse_wisdm(path: Path) -> tuple[list[tuple], dict]:
    """Records (user, activity, x, y, z, line) and a report of what was skipped or joined."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes)")
    records: list[tuple] = []
    skipped: list[dict] = []
    joined: list[dict] = []
    blank = 0
    pending, pending_line = "", 0  # text of a record whose ';' has not come yet

    def skip(line_no: str, reason: str, text: str) -> None:
        skipped.append({"lines": line_no, "reason": reason, "text": text[:80]})

    try:
        with open(path, "r", encoding="utf-8", errors="strict") as f:
            for n, raw in enumerate(f, start=1):
                line = raw.strip()
                if not line:
                    blank += 1
                    continue
                if pending:  # the previous line stopped mid-record
                    text = pending + line
                    where = f"{pending_line}-{n}"
                    parsed = _parse_record(text.split(";")[0])
                    if isinstance(parsed, tuple):
                        records.append(parsed + (pending_line,))
                        joined.append({"lines": where})
                        rest = ";".join(text.split(";")[1:]).strip()
                        pending = ""
                        if rest.strip(";"):
                            line = rest  # more records after the joined one on this line
                        else:
                            continue
                    else:
                        skip(str(pending_line), f"incomplete record, not completed by line {n}: "
                             f"{_parse_record(pending)}", pending)
                        pending = ""
                parts = line.split(";")
                complete, tail = parts[:-1], parts[-1].strip()
                for text in complete:
                    if not text.strip():
                        continue
                    parsed = _parse_record(text)
                    if isinstance(parsed, tuple):
                        records.append(parsed + (n,))
                    else:
                        skip(str(n), parsed, text)
                if tail:
                    parsed = _parse_record(tail)
                    if isinstance(parsed, tuple):  # a whole record without its ';'
                        records.append(parsed + (n,))
                    else:
                        pending, pending_line = tail, n
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: is not a text file ({e})") from None
    if pending:
        skip(str(pending_line), "incomplete record at end of file", pending)
    report = {"records": len(records), "skipped_count": len(skipped), "skipped": skipped[:MAX_LISTED],
              "joined_count": len(joined), "joined": joined[:MAX_LISTED], "blank_lines": blank}
    return records, report


def load_wisdm(cfg: DataConfig) -> Examples:
    opts = source_options(cfg)
    path = resolve_path(cfg, None, None)
    records, report = parse_wisdm(path)
    if not records:
        raise DataError(f"{path}: no usable WISDM records (user,activity,timestamp,x,y,z;) — "
                        f"{report['skipped_count']} skipped, e.g. {report['skipped'][:3]}")
    users = np.array([r[0] for r in records])
    activities = np.array([r[1] for r in records])
    values = np.array([r[2:5] for r in records], dtype=np.float32)
    lines = np.array([r[5] for r in records])
    collector = StreamWindows(cfg, {**DEFAULT_OPTIONS, **opts}, "wisdm")
    change = np.flatnonzero((users[1:] != users[:-1]) | (activities[1:] != activities[:-1])) + 1
    for a, b in zip(np.concatenate([[0], change]), np.concatenate([change, [len(records)]])):
        labels = collector.label_ids(activities[a:b])
        collector.add(path, values[a:b], labels, lines[a:b], CHANNELS, str(users[a]), f"{activities[a]}@{lines[a]}")
    return collector.examples(CHANNELS, float(opts["sample_rate"]), {"path": str(path), **report})


register_source(SourceSpec(
    "wisdm", load_wisdm,
    "WISDM v1.1 raw accelerometer (user,activity,timestamp,x,y,z; at 20 Hz); tolerant parser that "
    "reports every skipped line",
    signal="imu",
    options=(Param("classes", "list", None, "activities to keep, in this order", item=Param("name", "str", "", "an activity"),
                   nullable=True, null_means="every activity", label="Classes"),
             Param("sample_rate", "float", 20.0, "sampling rate", low=1e-3, high=1e6, unit="Hz",
                   label="Sample rate (Hz)", sweep=False),
             MAX_NAN_RUN, MAX_WINDOWS),
    default_data="none: give path to WISDM_ar_v1.1_raw.txt", files=lambda cfg: [resolve_path(cfg, None, None)],
    nominal_rate=20.0, needs_path=True, suggested={"split": "subject"}))
