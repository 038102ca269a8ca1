"""Real-world and hostile CSVs: the files people export are read (Excel's BOM, UTF-16, `;` and
tab delimiters, decimal commas, CRLF, quoted headers), and hostile ones are refused with one
line that names the problem and the limit, after bounded work: a long line, too many rows,
columns or windows, a gzip bomb are refused while the file is read, not after it is parsed.
"Huge" cases use sizes just over a lowered limit (SIGSCOPE_* variables), so they stay fast."""
from __future__ import annotations

import gzip
import time

import numpy as np
import pytest

from core import data
from core.config import DataConfig
from core.data import imu_csv
from core.errors import DataError
from core.infer import classify_bytes, classify_file, detect_kind, load_run
from core.infer.reading import read_windows
from tests.test_infer_bad_input import CHANNELS, stored_untrained_run

RATE = 50.0


@pytest.fixture(scope="module")
def imu():
    run_id = stored_untrained_run("csv-hostile-imu", "resnet1d", DataConfig(source="hapt"), (6, 128),
                                  ["WALKING", "SITTING"], CHANNELS, RATE, "imu",
                                  {"base_channels": 8, "num_stages": 2})
    return load_run(run_id)


@pytest.fixture
def reads(monkeypatch) -> list:
    """Every checked CSV stream opened during the test, to see how much of a file was read."""
    opened = []

    class Recorded(imu_csv.CsvBytes):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    monkeypatch.setattr(imu_csv, "CsvBytes", Recorded)
    return opened


def signals(rows: int = 400, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, len(CHANNELS))).round(3)


def table(values: np.ndarray, delimiter: str = ",", decimal: str = ".", newline: str = "\n",
          header: list[str] | None = None, quote_header: bool = False, time_column: np.ndarray | None = None) -> str:
    names = (["time"] if time_column is not None else []) + (header or CHANNELS)
    head = delimiter.join(f'"{n}"' if quote_header else n for n in names)
    lines = [head]
    for i, row in enumerate(values):
        cells = ([f"{time_column[i]:.4f}"] if time_column is not None else []) + [f"{v:.3f}" for v in row]
        lines.append(delimiter.join(c.replace(".", decimal) for c in cells))
    return newline.join(lines) + newline


def assert_names_the_limit(error: pytest.ExceptionInfo, name: str) -> None:
    message = str(error.value)
    assert f"SIGSCOPE_{name.upper()}" in message and "\n" not in message, message


# ---- valid files people export ------------------------------------------------------------
VALUES = signals()
QUOTED_NEWLINE_HEADER = '"comment\n(free text)",' + ",".join(CHANNELS)
EXPORTS = {
    "excel_utf8_bom": lambda: b"\xef\xbb\xbf" + table(VALUES).encode(),
    "utf16_le_bom": lambda: table(VALUES).encode("utf-16"),  # Python writes the machine's order: LE here
    "utf16_be_bom": lambda: b"\xfe\xff" + table(VALUES).encode("utf-16-be"),
    "semicolon_decimal_comma": lambda: table(VALUES, delimiter=";", decimal=",").encode(),
    "tab": lambda: table(VALUES, delimiter="\t").encode(),
    "crlf": lambda: table(VALUES, newline="\r\n").encode(),
    "quoted_header": lambda: table(VALUES, quote_header=True).encode(),
    "quoted_newline_in_header": lambda: "\n".join([QUOTED_NEWLINE_HEADER] + [
        "note," + ",".join(f"{v:.3f}" for v in row) for row in VALUES]).encode() + b"\n",
    "utf8_bom_semicolon_crlf_quoted": lambda: b"\xef\xbb\xbf" + table(
        VALUES, delimiter=";", decimal=",", newline="\r\n", quote_header=True).encode(),
    "gzip": lambda: gzip.compress(table(VALUES).encode()),
}


@pytest.mark.parametrize("export", sorted(EXPORTS))
def test_files_people_export_are_detected_read_exactly_and_classified(imu, tmp_path, export):
    path = tmp_path / "walk.csv"
    path.write_bytes(EXPORTS[export]())
    assert detect_kind(path) == "csv"
    read = read_windows(imu, path, "walk.csv", None)
    assert read.signal.shape == VALUES.shape, "every column, the first one included, every row"
    np.testing.assert_allclose(read.signal, VALUES, atol=1e-6)
    pred = classify_file(imu, path, explain="none")
    assert pred.label in imu.class_names and np.isfinite(list(pred.probabilities.values())).all()


def test_an_excel_bom_upload_keeps_its_first_column(imu):
    pred = classify_bytes(imu, EXPORTS["excel_utf8_bom"](), "from excel.csv", explain="none")
    assert pred.label in imu.class_names and pred.signal.shape[1] == len(CHANNELS)


def test_training_reads_the_same_exports(tmp_path):
    rows = signals(120)
    labels = np.where(np.arange(120) < 60, "walk", "sit")
    text = table(rows, delimiter=";", decimal=",", newline="\r\n", quote_header=True).splitlines()
    text = [text[0] + ';"label"'] + [line + f";{label}" for line, label in zip(text[1:], labels)]
    path = tmp_path / "export.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(text).encode("utf-8") + b"\r\n")
    bundle = data.load(DataConfig(source="imu_csv", path=str(path), window=10, stride=5, split="random",
                                  options={"sample_rate": RATE}))
    assert bundle.channel_names == CHANNELS and bundle.class_names == ["sit", "walk"]
    assert np.isfinite(bundle.train.x).all()


# ---- bounded work -------------------------------------------------------------------------
def test_a_long_line_is_refused_as_soon_as_it_is_read(imu, tmp_path, monkeypatch, reads):
    monkeypatch.setenv("SIGSCOPE_MAX_LINE_BYTES", "10000")
    path = tmp_path / "long.csv"
    path.write_text(",".join(CHANNELS) + "\n" + ",".join(["1.0"] * 50_000) + "\n" + "0,0,0,0,0,0\n" * 10)
    with pytest.raises(DataError, match=r"line 2 is longer than 10000 bytes") as error:
        classify_file(imu, path, explain="none")
    assert_names_the_limit(error, "max_line_bytes")


def test_a_few_megabyte_file_on_one_line_is_refused_after_reading_the_limit_and_one_block(imu, tmp_path, reads):
    path = tmp_path / "one_line.csv"
    path.write_text(",".join(["1.0"] * 1_000_000))  # 4 MB, no newline
    started = time.process_time()
    with pytest.raises(DataError, match="line 1 is longer than") as error:
        classify_file(imu, path, explain="none")
    cpu = time.process_time() - started
    assert_names_the_limit(error, "max_line_bytes")
    limit = imu_csv.limits().max_line_bytes
    assert reads and all(r.compressed <= limit + imu_csv.READ_BLOCK for r in reads), [r.compressed for r in reads]
    print(f"one-line {path.stat().st_size / 2**20:.1f} MiB file refused after {cpu * 1000:.0f} ms of CPU, "
          f"{max(r.compressed for r in reads)} bytes read")


def test_rows_over_the_limit_are_refused_while_reading(imu, tmp_path, monkeypatch, reads):
    monkeypatch.setenv("SIGSCOPE_MAX_ROWS", "1000")
    path = tmp_path / "many_rows.csv"
    path.write_text(table(signals(8000)))
    with pytest.raises(DataError, match="more than 1001 lines") as error:
        classify_file(imu, path, explain="none")
    assert_names_the_limit(error, "max_rows")
    assert max(r.compressed for r in reads) < path.stat().st_size / 2, "refused before the file was read"
    monkeypatch.setenv("SIGSCOPE_MAX_ROWS", "8000")
    assert classify_file(imu, path, explain="none").label in imu.class_names  # at the limit: read


def test_columns_over_the_limit_are_refused_from_the_header(imu, tmp_path, monkeypatch):
    monkeypatch.setenv("SIGSCOPE_MAX_COLUMNS", "10")
    path = tmp_path / "wide.csv"
    extra = [f"extra_{i}" for i in range(14)]
    path.write_text(",".join(CHANNELS + extra) + "\n" + ",".join(["0.5"] * 20) + "\n")
    with pytest.raises(DataError, match="has 20 columns; the limit is max_columns=10") as error:
        classify_file(imu, path, explain="none")
    assert_names_the_limit(error, "max_columns")


def test_windows_are_counted_as_rows_stream_and_refused_at_the_crossing(imu, tmp_path, monkeypatch, reads):
    monkeypatch.setenv("SIGSCOPE_MAX_WINDOWS", "50")
    path = tmp_path / "long_walk.csv.gz"
    path.write_bytes(gzip.compress(table(signals(40_000)).encode()))  # 623 windows at the run's stride
    with pytest.raises(DataError, match="more than 50 windows") as error:
        classify_file(imu, path, explain="none")
    assert_names_the_limit(error, "max_windows")
    streamed = max(r.compressed for r in reads)
    assert streamed < path.stat().st_size / 2, f"{streamed} of {path.stat().st_size} bytes read"


def test_a_gzip_bomb_is_refused_while_it_is_decompressed(imu, tmp_path, monkeypatch, reads):
    monkeypatch.setenv("SIGSCOPE_MAX_GZIP_RATIO", "20")
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress((",".join(CHANNELS) + "\n" + "0,0,0,0,0,0\n" * 500_000).encode()))
    assert path.stat().st_size * 20 < 6_000_000
    with pytest.raises(DataError, match="decompresses to more than 20 times its compressed size") as error:
        classify_file(imu, path, explain="none")
    assert_names_the_limit(error, "max_gzip_ratio")
    bound = 20 * max(path.stat().st_size, imu_csv.READ_BLOCK) + imu_csv.READ_BLOCK
    assert all(r.inflated <= bound for r in reads), "stopped within one block of the ratio"


def test_a_truncated_or_corrupt_gzip_is_a_clean_refusal(imu, tmp_path):
    whole = gzip.compress(table(signals(4000)).encode())
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(DataError, match="gzip file is truncated"):
        classify_file(imu, cut, explain="none")
    with pytest.raises(DataError, match="gzip file is truncated"):  # the training reader too
        list(imu_csv.read_streams(cut, {**imu_csv.DEFAULT_OPTIONS, "channels": CHANNELS}, label_default=""))
    corrupt = tmp_path / "corrupt.csv.gz"
    corrupt.write_bytes(whole[:20] + bytes(200) + whole[220:])
    with pytest.raises(DataError, match="not a valid gzip file"):
        classify_file(imu, corrupt, explain="none")


def test_an_upload_over_the_size_limit_names_the_limit(imu, monkeypatch):
    monkeypatch.setenv("SIGSCOPE_MAX_UPLOAD_MIB", "1")
    with pytest.raises(DataError, match="over the 1 MiB upload limit") as error:
        classify_bytes(imu, table(signals(40_000)).encode(), "big.csv")
    assert_names_the_limit(error, "max_upload_mib")


# ---- time columns -------------------------------------------------------------------------
def test_a_time_column_that_is_constant_or_runs_backwards_is_refused_with_its_line(imu, tmp_path):
    good = np.arange(400) / RATE
    path = tmp_path / "timed.csv"
    path.write_text(table(VALUES, time_column=good))
    assert classify_file(imu, path, explain="none").label in imu.class_names

    path.write_text(table(VALUES, time_column=np.full(400, 12.5)))
    with pytest.raises(DataError, match=r"time column 'time' is constant \(12.5 from line 2 to 401\)"):
        classify_file(imu, path, explain="none")

    backwards = good.copy()
    backwards[250:] -= 3.0  # line 252 jumps back 3 s
    path.write_text(table(VALUES, time_column=backwards))
    with pytest.raises(DataError, match=r"time column 'time' runs backwards at line 252"):
        classify_file(imu, path, explain="none")


def test_a_time_column_in_epoch_milliseconds_gives_the_rate(imu, tmp_path):
    path = tmp_path / "epoch.csv"
    epoch_ms = 1_733_480_000_000 + np.arange(400) * 1000 / RATE  # float32 would round these to 131 s steps
    path.write_text(table(VALUES, time_column=epoch_ms).replace("time,", "time_ms,", 1))
    assert classify_file(imu, path, explain="none").label in imu.class_names
    path.write_text(table(VALUES, time_column=epoch_ms / 2).replace("time,", "time_ms,", 1))  # 100 Hz
    with pytest.raises(DataError, match="the time column says 100.0 Hz"):
        classify_file(imu, path, explain="none")


def test_a_time_column_restarting_per_session_is_fine(tmp_path):
    rows = [f"{s},{i / RATE:.3f},{v:.3f},{-v:.3f},{'walk' if i < 50 else 'sit'}"
            for s in (1, 2) for i, v in enumerate(np.random.default_rng(s).normal(size=100))]
    path = tmp_path / "sessions.csv"
    path.write_text("session,time,acc_x,acc_y,label\n" + "\n".join(rows) + "\n")
    bundle = data.load(DataConfig(source="imu_csv", path=str(path), window=10, stride=5, split="random"))
    assert bundle.sample_rate == pytest.approx(RATE) and bundle.info["streams"] == 2


# ---- non-finite and overflowing values ----------------------------------------------------
@pytest.mark.parametrize("cell, what", [("inf", "an infinite value"), ("-inf", "an infinite value"),
                                        ("1e308", "overflows float32"), ("3.5e38", "overflows float32"),
                                        ("1e30", r"beyond the limit \|x\| <= 1e\+09 \(max_abs_value")])
def test_non_finite_and_overflowing_values_are_refused_with_line_and_column(imu, tmp_path, cell, what):
    text = table(VALUES).splitlines()
    cells = text[101].split(",")
    cells[2] = cell  # acc_z on line 102
    text[101] = ",".join(cells)
    path = tmp_path / "overflow.csv"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=rf"overflow.csv: .*{what}.* in column 'acc_z' at line 102"):
        classify_file(imu, path, explain="none")


def test_a_file_of_values_near_1e30_is_refused_not_classified_as_nan(imu, tmp_path):
    path = tmp_path / "huge.csv"
    path.write_text(table(np.full((400, 6), 1.0)).replace("1.000", "1e30"))
    with pytest.raises(DataError, match="huge.csv: 1e\\+30, beyond the limit .* in column 'acc_x' at line 2") as e:
        classify_file(imu, path, explain="none")
    assert_names_the_limit(e, "max_abs_value")


def test_infinite_values_are_refused_for_training_too(tmp_path):
    rows = [f"{v:.3f},{'inf' if i == 30 else '0.1'},{'walk' if i < 60 else 'sit'}"
            for i, v in enumerate(np.random.default_rng(0).normal(size=120))]
    path = tmp_path / "train.csv"
    path.write_text("acc_x,acc_y,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match="an infinite value in column 'acc_y' at line 32"):
        data.load(DataConfig(source="imu_csv", path=str(path), window=10, stride=5, split="random"))


def test_short_nan_runs_are_still_interpolated(imu, tmp_path):
    text = table(VALUES).splitlines()
    text[50] = ",".join(["nan"] + text[50].split(",")[1:])
    path = tmp_path / "gap.csv"
    path.write_text("\n".join(text) + "\n")
    pred = classify_file(imu, path, explain="none")
    assert np.isfinite(pred.signal).all() and np.isfinite(list(pred.probabilities.values())).all()


def test_a_row_with_more_fields_than_the_header_is_refused_with_its_line(imu, tmp_path):
    text = table(VALUES).splitlines()
    text[300] += ",0.5"  # line 301
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"ragged.csv: line 301 has 7 fields, the header 6"):
        classify_file(imu, path, explain="none")


# ---- no file content in an error ----------------------------------------------------------
SECRET = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
NOT_TABLES = {
    "passwd": SECRET.encode(),
    "a letter": b"Dear team, the secret code is 4711, keep it.\nBest regards\n",
    "numbers only": b"0.5,0.25,0.125\n1,2,3\n",
    "binary": bytes(range(256)) * 8,
}


@pytest.mark.parametrize("name", sorted(NOT_TABLES))
def test_an_unknown_file_is_refused_without_echoing_its_content(imu, tmp_path, name):
    path = tmp_path / "upload.csv"
    path.write_bytes(NOT_TABLES[name])
    for read in (lambda: classify_file(imu, path, explain="none"),
                 lambda: data.load(DataConfig(source="imu_csv", path=str(path), window=10, stride=5))):
        with pytest.raises(DataError) as error:
            read()
        message = str(error.value)
        for secret in ("root:x", "/bin/bash", "secret code", "4711", "Dear team", "0.125"):
            assert secret not in message, message
        assert "\n" not in message and len(message) < 400, message


def test_a_real_csv_with_the_wrong_columns_names_them_briefly(imu, tmp_path):
    path = tmp_path / "wrong.csv"
    names = [f"sensor_{i}" for i in range(200)]
    path.write_text(",".join(names) + "\n" + ",".join(["0.1"] * 200) + "\n")
    with pytest.raises(DataError, match=r"has no column\(s\) .*'sensor_0'.* and 188 more") as error:
        classify_file(imu, path, explain="none")
    assert len(str(error.value)) < 800
