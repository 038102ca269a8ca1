"""The hostile-input corpus: audio files, CSVs, checkpoints, classes.json, run ids, file names,
`--set` values, config files and profiler shapes that a careless, curious or malicious person
could hand Sigscope.

Each `Case` builds its files in a folder and says what the worker runs (`op` and fields, see
worker.py) and, where one answer is right, which: "refuse" (a one-line message naming the
problem, with `says` in it) or "answer" (finite probabilities). Cases without `expect` may go
either way; every case fails on a traceback, a hang, a runaway allocation or a NaN answer.
"""
from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
GOOD_WAV = ROOT / "data" / "fsdd" / "recordings" / "3_george_0.wav"
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
IMU_RATE = 50.0


@dataclass
class Context:
    folder: Path
    imu_run: str  # run ids of stored runs (an IMU resnet1d, an audio model)
    audio_run: str
    imu_dir: Path  # the IMU run's folder, copied and damaged by checkpoint cases

    def path(self, name: str) -> Path:
        return self.folder / name


@dataclass
class Case:
    name: str
    build: Callable[[Context], dict]  # -> the worker's case fields (op, file, run, ...)
    expect: str | None = None  # "refuse" | "answer" | None (either, but cleanly)
    says: str = ""  # a word the refusal must contain (case-insensitive)


CASES: list[Case] = []


def add(name: str, build: Callable[[Context], dict], expect: str | None = None, says: str = "") -> None:
    CASES.append(Case(name, build, expect, says))


# ---- audio --------------------------------------------------------------------------------
def tone(seconds: float, rate: int, channels: int = 1, amp: float = 0.3) -> np.ndarray:
    t = np.arange(max(int(round(seconds * rate)), 0)) / rate
    y = amp * np.sin(2 * np.pi * 440 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    return y if channels == 1 else np.stack([y] * channels, axis=1)


def wav(y: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def audio_case(name: str, make_bytes: Callable[[], bytes], expect: str | None = None, says: str = "",
               upload_name: str = "clip.wav", env: dict | None = None, op: str = "classify_bytes",
               run: str = "audio") -> None:
    def build(ctx: Context) -> dict:
        path = ctx.path(f"{name}.bin")
        path.write_bytes(make_bytes())
        return {"op": op, "run": ctx.audio_run if run == "audio" else ctx.imu_run, "file": str(path),
                "name": upload_name, "env": env or {}}
    add(f"audio/{name}", build, expect, says)


for rate in (8000, 11025, 16000, 22050, 44100, 48000):
    for subtype in ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        audio_case(f"tone-{rate}-{subtype}", lambda r=rate, s=subtype: wav(tone(1.0, r), r, s), "answer")
for seconds in (0.5, 2.0, 10.0):
    audio_case(f"length-{seconds}s", lambda s=seconds: wav(tone(s, 8000), 8000), "answer")
for samples in (1, 2, 8, 80, 400, 2000):
    audio_case(f"short-{samples}-samples", lambda n=samples: wav(tone(n / 8000, 8000, amp=0.5), 8000))
audio_case("no-frames", lambda: wav(np.zeros(0), 8000), "refuse")
audio_case("stereo", lambda: wav(tone(1.0, 8000, 2), 8000), "answer")
audio_case("stereo-inverted", lambda: wav(np.stack([tone(1, 8000), -tone(1, 8000)], 1), 8000), "answer")
audio_case("stereo-one-silent", lambda: wav(np.stack([tone(1, 8000), 0 * tone(1, 8000)], 1), 8000), "answer")
for channels in (3, 4, 8):
    audio_case(f"channels-{channels}", lambda c=channels: wav(tone(1.0, 8000, c), 8000))
audio_case("white-noise", lambda: wav(np.random.default_rng(0).uniform(-0.5, 0.5, 8000), 8000), "answer")
audio_case("square-clipped", lambda: wav(np.sign(tone(1.0, 8000)) * 0.999, 8000), "answer")
audio_case("digital-silence", lambda: wav(np.zeros(8000), 8000), "refuse", "silent")
audio_case("near-silence", lambda: wav(1e-6 * tone(1.0, 8000, amp=1), 8000, "FLOAT"), "refuse", "silent")
for value in (0.5, -1.0, 0.01):
    audio_case(f"dc-{value}", lambda v=value: wav(np.full(8000, v), 8000, "FLOAT"))
for amp in (1e30, -1e30, 1e10, 1e5):
    audio_case(f"float-amplitude-{amp:g}", lambda a=amp: wav(np.full(8000, a) * np.sign(tone(1, 8000) + 1e-9), 8000,
                                                               "FLOAT"), "refuse")
audio_case("float-amplitude-2", lambda: wav(2.0 * tone(1.0, 8000, amp=1), 8000, "FLOAT"))
for label, value, where in (("nan-start", np.nan, 0), ("nan-middle", np.nan, 4000), ("inf", np.inf, 100),
                            ("minus-inf", -np.inf, 7999)):
    def nonfinite(v=value, i=where) -> bytes:
        y = tone(1.0, 8000).astype(np.float32)
        y[i] = v
        return wav(y, 8000, "FLOAT")
    audio_case(f"float-{label}", nonfinite, "refuse")
audio_case("float-all-nan", lambda: wav(np.full(8000, np.nan), 8000, "FLOAT"), "refuse")
_GOOD = GOOD_WAV.read_bytes()
for cut in (0, 1, 4, 8, 12, 16, 20, 36, 40, 44, 45, 100, 1000, len(_GOOD) - 1):
    audio_case(f"truncated-at-{cut}", lambda c=cut: _GOOD[:c], "refuse" if cut < 44 else None)


def header_patch(offset: int, fmt: str, value) -> Callable[[], bytes]:
    def make() -> bytes:
        data = bytearray(wav(tone(1.0, 8000), 8000))
        struct.pack_into(fmt, data, offset, value)
        return bytes(data)
    return make


# RIFF header fields: 4 riff size, 22 channels, 24 sample rate, 28 byte rate, 32 block align,
# 34 bits per sample, 20 format code, 40 data size
for label, offset, fmt, value in (("riff-size-huge", 4, "<I", 0xFFFFFFFF), ("channels-0", 22, "<H", 0),
                                  ("channels-65535", 22, "<H", 65535), ("rate-0", 24, "<I", 0),
                                  ("rate-4e9", 24, "<I", 4_000_000_000), ("rate-1", 24, "<I", 1),
                                  ("bits-7", 34, "<H", 7), ("format-99", 20, "<H", 99),
                                  ("data-size-huge", 40, "<I", 0xFFFFFFF0), ("block-align-0", 32, "<H", 0)):
    audio_case(f"header-{label}", header_patch(offset, fmt, value))
for size in (1, 10, 1000, 100_000):
    for upload in ("clip.wav", "clip.mp3", "clip"):
        audio_case(f"random-{size}-bytes-as-{upload}",
                   lambda n=size: np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes(), "refuse",
                   upload_name=upload)
audio_case("riff-then-random", lambda: b"RIFF" + np.random.default_rng(1).integers(0, 256, 5000, np.uint8).tobytes())
audio_case("flac", lambda: wav(tone(1.0, 8000), 8000, "PCM_16", "FLAC"), "answer", upload_name="clip.flac")
audio_case("ogg", lambda: wav(tone(1.0, 8000), 8000, "VORBIS", "OGG"), "answer", upload_name="clip.ogg")
audio_case("flac-truncated", lambda: wav(tone(1.0, 8000), 8000, "PCM_16", "FLAC")[:300], upload_name="clip.flac")
audio_case("ogg-truncated", lambda: wav(tone(1.0, 8000), 8000, "VORBIS", "OGG")[:300], upload_name="clip.ogg")
audio_case("text-named-wav", lambda: b"hello, this is not audio\n", "refuse")
audio_case("csv-named-wav", lambda: b"acc_x,acc_y\n1,2\n", "refuse")
audio_case("over-the-duration-limit", lambda: wav(tone(6.0, 8000), 8000), "refuse", "SIGSCOPE_MAX_AUDIO_SECONDS",
           env={"SIGSCOPE_MAX_AUDIO_SECONDS": "5"})
audio_case("over-the-upload-limit", lambda: wav(np.random.default_rng(2).uniform(-.3, .3, 600_000), 8000),
           "refuse", "MiB", env={"SIGSCOPE_MAX_UPLOAD_MIB": "1"})
audio_case("wav-to-an-imu-run", lambda: wav(tone(1.0, 8000), 8000), "refuse", run="imu")
audio_case("cli-route-tone", lambda: wav(tone(1.0, 16000), 16000), "answer", op="classify_file")
audio_case("cli-route-inf", lambda: wav(np.full(8000, np.inf, np.float32), 8000, "FLOAT"), "refuse",
           op="classify_file")


# ---- IMU CSVs -----------------------------------------------------------------------------
def imu_table(rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(rows) / IMU_RATE
    base = np.stack([np.sin(2 * np.pi * 1.5 * t + k) for k in range(6)], 1)
    return (base + 0.1 * rng.standard_normal((rows, 6))).astype(np.float64)


def csv_text(values: np.ndarray, header: list[str] | None = None, delimiter: str = ",", newline: str = "\n",
             fmt: Callable[[float], str] = lambda v: f"{v:.6f}", extra: dict[str, list] | None = None) -> str:
    header = header or CHANNELS
    extra = extra or {}
    lines = [delimiter.join(list(extra) + header)]
    for i, row in enumerate(values):
        lines.append(delimiter.join([str(col[i]) for col in extra.values()] + [fmt(v) for v in row]))
    return newline.join(lines) + newline


def csv_case(name: str, make: Callable[[], bytes | str], expect: str | None = None, says: str = "",
             env: dict | None = None, upload_name: str = "walk.csv", op: str = "classify_bytes",
             run: str = "imu") -> None:
    def build(ctx: Context) -> dict:
        data = make()
        path = ctx.path(f"{name}.bin")
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return {"op": op, "run": ctx.imu_run if run == "imu" else ctx.audio_run, "file": str(path),
                "name": upload_name, "env": env or {}}
    add(f"csv/{name}", build, expect, says)


GOOD_CSV = csv_text(imu_table(400))
for rows in (128, 129, 256, 1000, 5000):
    csv_case(f"rows-{rows}", lambda n=rows: csv_text(imu_table(n)), "answer")
csv_case("utf8-bom", lambda: codecs.BOM_UTF8 + GOOD_CSV.encode(), "answer")
csv_case("utf16-le", lambda: GOOD_CSV.encode("utf-16"), "answer")
csv_case("utf16-be", lambda: codecs.BOM_UTF16_BE + GOOD_CSV.encode("utf-16-be"), "answer")
csv_case("semicolon", lambda: csv_text(imu_table(400), delimiter=";"), "answer")
csv_case("tab", lambda: csv_text(imu_table(400), delimiter="\t"), "answer")
csv_case("decimal-comma", lambda: csv_text(imu_table(400), delimiter=";", fmt=lambda v: f"{v:.6f}".replace(".", ",")),
         "answer")
csv_case("crlf", lambda: csv_text(imu_table(400), newline="\r\n"), "answer")
csv_case("quoted-header", lambda: GOOD_CSV.replace(",".join(CHANNELS), ",".join(f'"{c}"' for c in CHANNELS), 1),
         "answer")
csv_case("quoted-newline-in-header", lambda: csv_text(imu_table(400), extra={'"note\nhere"': ["x"] * 400}), "answer")
csv_case("spaces-after-commas", lambda: csv_text(imu_table(400), delimiter=", "))
csv_case("trailing-delimiter", lambda: "\n".join(line + "," for line in GOOD_CSV.splitlines()) + "\n")
csv_case("blank-lines", lambda: GOOD_CSV.replace("\n", "\n\n"))
csv_case("pipe-delimiter", lambda: csv_text(imu_table(400), delimiter="|"))
csv_case("columns-reordered", lambda: csv_text(imu_table(400)[:, ::-1], header=CHANNELS[::-1]), "answer")
csv_case("extra-columns", lambda: csv_text(imu_table(400), extra={"temp": [20.5] * 400, "note": ["ok"] * 400}),
         "answer")
csv_case("missing-column", lambda: csv_text(imu_table(400)[:, :5], header=CHANNELS[:5]), "refuse", "gyro_z")
csv_case("duplicate-column", lambda: csv_text(np.c_[imu_table(400), imu_table(400)[:, :1]],
                                              header=CHANNELS + ["acc_x"]))
csv_case("renamed-columns", lambda: csv_text(imu_table(400), header=[c.upper() for c in CHANNELS]))


def with_cell(value: str, row: int = 10, col: int = 2, rows: int = 400) -> Callable[[], str]:
    def make() -> str:
        lines = csv_text(imu_table(rows)).splitlines()
        cells = lines[row + 1].split(",")
        cells[col] = value
        lines[row + 1] = ",".join(cells)
        return "\n".join(lines) + "\n"
    return make


for label, value, expect in (("inf", "inf", "refuse"), ("minus-inf", "-inf", "refuse"), ("Infinity", "Infinity", "refuse"),
                             ("1e308", "1e308", "refuse"), ("1e39", "1e39", "refuse"), ("nan-one", "nan", "answer"),
                             ("empty-cell", "", "answer"), ("text-cell", "abc", None), ("hex", "0x10", None),
                             ("underscore", "1_000", None), ("true", "true", None), ("1e-400", "1e-400", "answer"),
                             ("subnormal", "1e-45", "answer"), ("long-number", "1" * 400, "refuse"),
                             ("minus-zero", "-0.0", "answer")):
    csv_case(f"cell-{label}", with_cell(value), expect)
csv_case("all-1e30", lambda: csv_text(np.full((400, 6), 1e30)), "refuse")
csv_case("column-minus-1e30", lambda: csv_text(np.c_[imu_table(400)[:, :5], np.full(400, -1e30)]), "refuse")
csv_case("all-1e20", lambda: csv_text(np.full((400, 6), 1e20) * np.sign(imu_table(400))), "refuse")
csv_case("all-inf", lambda: csv_text(np.full((400, 6), np.inf)), "refuse")
csv_case("all-nan", lambda: csv_text(np.full((400, 6), np.nan)), "refuse")
csv_case("nan-run-long", lambda: csv_text(np.where(np.arange(400)[:, None] < 200, np.nan, imu_table(400))), "refuse")
csv_case("constant", lambda: csv_text(np.full((400, 6), 0.25)))
csv_case("zeros", lambda: csv_text(np.zeros((400, 6))))
csv_case("empty-file", lambda: b"", "refuse", "empty")
csv_case("header-only", lambda: ",".join(CHANNELS) + "\n", "refuse")
csv_case("one-row", lambda: csv_text(imu_table(1)), "refuse")
csv_case("shorter-than-a-window", lambda: csv_text(imu_table(127)), "refuse")
csv_case("2000-columns", lambda: csv_text(np.zeros((200, 2000)), header=CHANNELS + [f"c{i}" for i in range(1994)]),
         "refuse", "SIGSCOPE_MAX_COLUMNS")
csv_case("2MB-header", lambda: ",".join(CHANNELS + ["x" * 2_000_000]) + "\n1,2,3,4,5,6,7\n", "refuse",
         "SIGSCOPE_MAX_LINE_BYTES")
csv_case("one-line-3MB", lambda: ",".join(["0.123456"] * 350_000), "refuse", "SIGSCOPE_MAX_LINE_BYTES")
csv_case("rows-over-the-limit", lambda: csv_text(imu_table(3000)), "refuse", "SIGSCOPE_MAX_ROWS",
         env={"SIGSCOPE_MAX_ROWS": "2000"})
csv_case("windows-over-the-limit", lambda: csv_text(imu_table(3000)), "refuse", "SIGSCOPE_MAX_WINDOWS",
         env={"SIGSCOPE_MAX_WINDOWS": "5"})
csv_case("over-the-upload-limit", lambda: csv_text(imu_table(20_000)), "refuse", "MiB",
         env={"SIGSCOPE_MAX_UPLOAD_MIB": "1"})
_t = np.arange(400) / IMU_RATE
for label, times, expect in (("time-50Hz", _t, "answer"), ("time-100Hz", _t / 2, "refuse"),
                             ("time-constant", np.zeros(400), "refuse"), ("time-backwards", _t[::-1], "refuse"),
                             ("time-random", np.random.default_rng(3).uniform(0, 8, 400), "refuse")):
    csv_case(label, lambda ts=times: csv_text(imu_table(400), extra={"time": [f"{v:.4f}" for v in ts]}), expect)
csv_case("time-text", lambda: csv_text(imu_table(400), extra={"time": ["noon"] * 400}))
csv_case("time-nan", lambda: csv_text(imu_table(400), extra={"time": ["nan"] * 400}))
csv_case("labels-known", lambda: csv_text(imu_table(400), extra={"activity": ["WALKING"] * 400}), "answer")
csv_case("labels-unknown", lambda: csv_text(imu_table(400), extra={"activity": ["FLYING"] * 400}), "answer")
csv_case("labels-numeric", lambda: csv_text(imu_table(400), extra={"activity": list(range(400))}), "answer")
csv_case("two-subjects", lambda: csv_text(imu_table(400), extra={"subject": [1] * 200 + [2] * 200}), "answer")
csv_case("a-subject-a-row", lambda: csv_text(imu_table(400), extra={"subject": list(range(400))}), "refuse")
csv_case("gzip", lambda: gzip.compress(GOOD_CSV.encode()), "answer", upload_name="walk.csv.gz")
csv_case("gzip-truncated", lambda: gzip.compress(csv_text(imu_table(3000)).encode())[:5000], "refuse",
         upload_name="walk.csv.gz")
csv_case("gzip-bomb", lambda: gzip.compress((",".join(CHANNELS) + "\n" + "0,0,0,0,0,0\n" * 3_000_000).encode(), 9),
         "refuse", "SIGSCOPE_MAX_GZIP_RATIO", upload_name="walk.csv.gz")
csv_case("gzip-of-random", lambda: gzip.compress(np.random.default_rng(4).integers(0, 256, 5000, np.uint8).tobytes()),
         "refuse", upload_name="walk.csv.gz")
csv_case("gzip-twice", lambda: gzip.compress(gzip.compress(GOOD_CSV.encode())), "refuse", upload_name="walk.csv.gz")
csv_case("gzip-header-only", lambda: b"\x1f\x8b", "refuse", upload_name="walk.csv.gz")
for size in (3, 100, 10_000):
    csv_case(f"random-{size}-bytes", lambda n=size: np.random.default_rng(n + 7).integers(0, 256, n, np.uint8).tobytes(),
             "refuse")
csv_case("nul-bytes", lambda: GOOD_CSV.replace("\n", "\x00\n", 5), None)
csv_case("passwd-like", lambda: "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin\n", "refuse")
csv_case("json", lambda: json.dumps({"acc_x": [1, 2, 3]}), "refuse")
csv_case("html", lambda: "<html><body><table><tr><td>acc_x</td></tr></table></body></html>\n", "refuse")
csv_case("csv-to-an-audio-run", lambda: GOOD_CSV, "refuse", run="audio")
csv_case("cli-route-good", lambda: GOOD_CSV, "answer", op="classify_file")
csv_case("cli-route-inf", with_cell("inf"), "refuse", op="classify_file")
csv_case("cli-route-bom", lambda: codecs.BOM_UTF8 + GOOD_CSV.encode(), "answer", op="classify_file")


# ---- run folders: checkpoints, classes.json, config.json, normalization.json ---------------
def run_folder_case(name: str, damage: Callable[[Path], None], expect: str | None = "refuse", says: str = "") -> None:
    def build(ctx: Context) -> dict:
        folder = ctx.path(f"run-{name}")
        shutil.copytree(ctx.imu_dir, folder)
        damage(folder)
        good = ctx.path("good-imu.csv")
        if not good.exists():
            good.write_text(GOOD_CSV)
        return {"op": "load_run_dir", "dir": str(folder), "file": str(good)}
    add(f"run/{name}", build, expect, says)


def _best(folder: Path) -> Path:
    return folder / "checkpoints" / "best.pt"


def _state(folder: Path) -> dict:
    import torch
    return torch.load(_best(folder), weights_only=True)


def _save(folder: Path, obj) -> None:
    import torch
    torch.save(obj, _best(folder))


class _Payload:
    """A pickle that would create a marker file if it were ever unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickle_payload(folder: Path) -> None:
    import torch
    torch.save({"model": _Payload(str(folder / "PWNED"))}, _best(folder))


def _edit_state(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        state = _state(folder)
        edit(state["model"])
        _save(folder, state)
    return damage


def _first_weight(model: dict) -> str:
    return next(k for k, v in model.items() if v.dtype.is_floating_point and v.dim() > 1)


run_folder_case("intact", lambda f: None, "answer")
run_folder_case("best-random-bytes", lambda f: _best(f).write_bytes(os.urandom(4096)))
run_folder_case("best-empty", lambda f: _best(f).write_bytes(b""))
run_folder_case("best-truncated", lambda f: _best(f).write_bytes(_best(f).read_bytes()[:2000]))
run_folder_case("best-text", lambda f: _best(f).write_text("not a checkpoint"))
run_folder_case("best-missing", lambda f: _best(f).unlink())
run_folder_case("best-pickle-payload", _pickle_payload, "refuse")
run_folder_case("best-plain-tensor", lambda f: _save(f, __import__("torch").zeros(3)))
run_folder_case("best-without-model", lambda f: _save(f, {"weights": {}}))
run_folder_case("best-model-is-list", lambda f: _save(f, {"model": [1, 2, 3]}))
run_folder_case("best-missing-key", _edit_state(lambda m: m.pop(_first_weight(m))), "refuse")
run_folder_case("best-extra-key", _edit_state(lambda m: m.__setitem__("surprise.weight", __import__("torch").ones(2))),
                "refuse")
run_folder_case("best-wrong-shape", _edit_state(lambda m: m.__setitem__(_first_weight(m), __import__("torch").ones(3, 3))),
                "refuse")
run_folder_case("best-nan-weights", _edit_state(lambda m: m[_first_weight(m)].fill_(float("nan"))), "refuse")
run_folder_case("best-inf-weights", _edit_state(lambda m: m[_first_weight(m)].view(-1)[0:1].fill_(float("inf"))),
                "refuse")
run_folder_case("best-huge-weights", _edit_state(lambda m: m[_first_weight(m)].fill_(1e38)))
run_folder_case("best-int-weights", _edit_state(lambda m: m.__setitem__(_first_weight(m),
                                                                        m[_first_weight(m)].to(__import__("torch").int64))))


def _json_edit(name: str, edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        result = edit(data)
        (folder / name).write_text(json.dumps(data if result is None else result))
    return damage


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_text(text)


for file in ("classes.json", "config.json", "normalization.json"):
    stem = file.split(".")[0]
    run_folder_case(f"{stem}-not-json", _write(file, "{not json"))
    run_folder_case(f"{stem}-empty", _write(file, ""))
    run_folder_case(f"{stem}-a-list", _write(file, "[1, 2, 3]"))
    run_folder_case(f"{stem}-missing", lambda f, n=file: (f / n).unlink())
    run_folder_case(f"{stem}-binary", lambda f, n=file: (f / n).write_bytes(os.urandom(300)))
run_folder_case("classes-huge-input-shape", _json_edit("classes.json", lambda d: d.__setitem__("input_shape", [6, 10**9])))
run_folder_case("classes-negative-input-shape", _json_edit("classes.json", lambda d: d.__setitem__("input_shape", [6, -5])))
run_folder_case("classes-names-not-strings", _json_edit("classes.json", lambda d: d.__setitem__("class_names", [1, None])))
run_folder_case("classes-no-names", _json_edit("classes.json", lambda d: d.__setitem__("class_names", [])))
run_folder_case("classes-duplicate-names", _json_edit("classes.json", lambda d: d.__setitem__("class_names", ["A", "A"])))
run_folder_case("classes-rate-zero", _json_edit("classes.json", lambda d: d.__setitem__("sample_rate", 0)))
run_folder_case("classes-rate-nan", lambda f: (f / "classes.json").write_text(
    (f / "classes.json").read_text().replace('"sample_rate": 50.0', '"sample_rate": NaN')))
run_folder_case("classes-kind-unknown", _json_edit("classes.json", lambda d: d.__setitem__("input_kind", "smell")))
run_folder_case("config-unknown-model", _json_edit("config.json", lambda d: d["model"].__setitem__("name", "nope")))
run_folder_case("config-hparam-out-of-range",
                _json_edit("config.json", lambda d: d["model"]["hparams"].__setitem__("base_channels", -4)))
run_folder_case("config-deeply-nested", _write("config.json", "[" * 100_000 + "]" * 100_000))
run_folder_case("normalization-nan-mean", lambda f: (f / "normalization.json").write_text(
    json.dumps({"kind": "channel", "mean": [float("nan")] * 6, "std": [1.0] * 6}).replace("NaN", "NaN")))
run_folder_case("normalization-zero-std", _write("normalization.json",
                                                 json.dumps({"kind": "channel", "mean": [0.0] * 6, "std": [0.0] * 6})))
run_folder_case("normalization-wrong-length", _write("normalization.json",
                                                     json.dumps({"kind": "channel", "mean": [0.0] * 2, "std": [1.0] * 2})))


# ---- run ids, upload names -----------------------------------------------------------------
for label, run_id in (("traversal", "../../etc/passwd"), ("empty", ""), ("very-long", "x" * 10_000),
                      ("encoded", "%2e%2e%2f"), ("nul", "run\x00id"), ("shell", "run;rm -rf /"), ("glob", "*"),
                      ("unicode", "rún-ïd"), ("spaces", "   "), ("absolute", "/tmp"), ("windows", "..\\..\\x"),
                      ("newline", "run\nid")):
    add(f"run-id/{label}", lambda ctx, r=run_id: {"op": "load_run", "id": r}, "refuse")
for label, upload in (("traversal", "../../x.wav"), ("device", "con.wav"), ("nul", "a\x00b.wav"),
                      ("very-long", "a" * 10_000 + ".wav"), ("wrong-extension", "clip.csv"), ("absolute", "/etc/passwd"),
                      ("markup", "<script>alert(1)</script>.wav"), ("unicode", "gräuschen-音.wav"),
                      ("newline", "a\nb.wav"), ("empty", ""), ("dots", "...."), ("control", "\x1b[31mred.wav")):
    audio_case(f"upload-name-{label}", lambda: wav(tone(1.0, 8000), 8000), "answer" if label != "wrong-extension"
               else None, upload_name=upload)


# ---- --set values and config files ----------------------------------------------------------
_SET_CASES = [
    ("optim.lr", "nan", "refuse"), ("optim.lr", "inf", "refuse"), ("optim.lr", "-1", "refuse"), ("optim.lr", "0", "refuse"),
    ("optim.lr", "abc", "refuse"), ("optim.lr", "1e400", "refuse"), ("optim.lr", "[]", "refuse"), ("optim.lr", "", "refuse"),
    ("optim.lr", "0.003", "answer"), ("optim.lr", " 1e-3 ", "answer"),
    ("train.epochs", "-1", "refuse"), ("train.epochs", "0", "refuse"), ("train.epochs", "1e12", "refuse"),
    ("train.epochs", "2.5", "refuse"), ("train.epochs", "true", "refuse"), ("train.epochs", "3", "answer"),
    ("train.batch_size", "0", "refuse"), ("train.batch_size", "-5", "refuse"), ("train.batch_size", "1e9", "refuse"),
    ("train.batch_size", "abc", "refuse"), ("model.name", "nope", "refuse"), ("model.name", "../x", "refuse"),
    ("model.name", "", "refuse"), ("data.source", "nope", "refuse"), ("data.source", "/etc/passwd", "refuse"),
    ("data.window", "-1", "refuse"), ("data.window", "0", "refuse"), ("data.window", "1e12", "refuse"),
    ("data.window", "abc", "refuse"), ("data.window", "-2s", "refuse"), ("data.window", "nan", "refuse"),
    ("foo.bar", "1", "refuse"), ("optim", "1", "refuse"), ("", "1", "refuse"), ("optim.lr.x", "1", "refuse"),
    ("data.augment.jitter.p", "2", "refuse"), ("data.augment.jitter.p", "-0.1", "refuse"),
    ("data.augment.jitter.p", "nan", "refuse"), ("data.augment.nope.p", "0.5", "refuse"),
    ("train.seed", "-1", None), ("train.seed", "1e30", "refuse"), ("train.device", "tpu", "refuse"),
    ("train.amp", "maybe", "refuse"), ("train.label_smoothing", "1.5", "refuse"),
    ("train.label_smoothing", "-0.1", "refuse"), ("optim.name", "sgd", "answer"), ("optim.name", "SGD; drop", "refuse"),
    ("name", "x" * 10_000, "refuse"), ("name", "a\x00b", None), ("model.hparams.nope", "3", "refuse"),
    ("train.processes", "1000", "refuse"), ("train.processes", "-1", "refuse"),
]
for key, value, expect in _SET_CASES:
    label = f"{key or 'empty-key'}={value[:20]!r}"
    add(f"set/{label}", lambda ctx, k=key, v=value: {"op": "overrides", "set": {k: v}}, expect)
for label, text, expect in (("truncated", "{", "refuse"), ("a-list", "[]", "refuse"), ("null", "null", None),
                            ("model-a-number", '{"model": 5}', "refuse"),
                            ("epochs-nan", '{"train": {"epochs": NaN}}', "refuse"),
                            ("epochs-infinity", '{"train": {"epochs": Infinity}}', "refuse"),
                            ("deeply-nested", "[" * 100_000 + "]" * 100_000, "refuse"),
                            ("huge-number", '{"optim": {"lr": 1' + "0" * 5000 + "}}", "refuse"),
                            ("unknown-section", '{"nope": {}}', "refuse"), ("empty-object", "{}", "answer"),
                            ("duplicate-keys", '{"train": {"epochs": 2, "epochs": 3}}', "answer"),
                            ("string-epochs", '{"train": {"epochs": "3"}}', None)):
    add(f"config/{label}", lambda ctx, t=text: {"op": "config_json", "text": t}, expect)


# ---- the profiler ---------------------------------------------------------------------------
for label, shape, batch, expect in (("huge-time", (6, 100_000_000), 32, "refuse"), ("huge-batch", (6, 128), 100_000_000, "refuse"),
                                    ("huge-channels", (1_000_000, 128), 32, "refuse"), ("zero-time", (6, 0), 32, "refuse"),
                                    ("negative-time", (6, -1), 32, "refuse"), ("one-sample", (6, 1), 32, None),
                                    ("batch-zero", (6, 128), 0, "refuse"), ("batch-negative", (6, 128), -1, "refuse"),
                                    ("normal", (6, 128), 32, "answer"), ("three-dims", (6, 128, 2), 32, "refuse")):
    add(f"profile/{label}", lambda ctx, s=shape, b=batch: {"op": "profile", "model": "resnet1d", "shape": list(s),
                                                           "batch": b, "hparams": {"base_channels": 8}}, expect)
add("profile/unknown-model", lambda ctx: {"op": "profile", "model": "nope", "shape": [6, 128]}, "refuse")
add("profile/bad-hparam", lambda ctx: {"op": "profile", "model": "resnet1d", "shape": [6, 128],
                                       "hparams": {"base_channels": -1}}, "refuse")

_names = [c.name for c in CASES]
assert len(_names) == len(set(_names)), sorted(n for n in _names if _names.count(n) > 1)
