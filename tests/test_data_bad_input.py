"""Bad input: each case gives a DataError that names the file and the problem."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core import data
from core.config import DataConfig
from core.data.audio import decode_audio
from core.errors import SigscopeError

HEADER = "subject,session,time,acc_x,acc_y,acc_z,label"


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header] + rows) + "\n")
    return path


def imu_rows(n: int = 120, labels=("walk", "sit"), subject: int = 1) -> list[str]:
    rng = np.random.default_rng(subject)
    return [f"{subject},0,{i * 0.02:.2f},{rng.normal():.4f},{rng.normal():.4f},{rng.normal():.4f},"
            f"{labels[(i // 30) % len(labels)]}" for i in range(n)]


def load_csv(path: Path, **kw):
    return data.load(DataConfig(source="imu_csv", path=str(path), window=10, stride=5, split="random", **kw))


def refused(path: Path, match: str, **kw):
    with pytest.raises(data.DataError, match=match) as err:
        load_csv(path, **kw)
    assert str(path) in str(err.value)
    assert isinstance(err.value, SigscopeError)


def test_a_good_csv_detects_roles_and_rate(tmp_path):
    bundle = load_csv(write_csv(tmp_path / "ok.csv", imu_rows()))
    assert bundle.channel_names == ["acc_x", "acc_y", "acc_z"] and bundle.class_names == ["sit", "walk"]
    assert bundle.sample_rate == pytest.approx(50.0)


def test_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    refused(tmp_path / "empty.csv", "empty")


def test_wrong_delimiter(tmp_path):
    path = write_csv(tmp_path / "semi.csv", [r.replace(",", ";") for r in imu_rows()], HEADER.replace(",", ";"))
    refused(path, "one column .*delimiter", options={"delimiter": ","})
    assert load_csv(path).channel_names == ["acc_x", "acc_y", "acc_z"]  # auto-detected when not forced


def test_missing_label_column(tmp_path):
    rows = [r.rsplit(",", 1)[0] for r in imu_rows()]
    refused(write_csv(tmp_path / "nolabel.csv", rows, HEADER.rsplit(",", 1)[0]), "no label column")


def test_non_numeric_values_name_the_line(tmp_path):
    rows = imu_rows()
    rows[40] = rows[40].replace(rows[40].split(",")[4], "abc", 1)
    refused(write_csv(tmp_path / "text.csv", rows), r"non-numeric value 'abc' in column 'acc_y' at line 42")


def test_nan_runs_are_refused_with_lines_and_short_gaps_interpolated(tmp_path):
    rows = imu_rows()
    for i in range(50, 60):  # a 10-sample hole in acc_x, lines 52-61
        parts = rows[i].split(",")
        parts[3] = ""
        rows[i] = ",".join(parts)
    refused(write_csv(tmp_path / "nan.csv", rows), "10 consecutive missing values in column 'acc_x' at lines 52-61")
    bundle = load_csv(tmp_path / "nan.csv", options={"max_nan_run": 10})
    assert bundle.info["interpolated_values"] == 10
    assert np.isfinite(bundle.train.x).all()


def test_single_class(tmp_path):
    with pytest.raises(data.DataError, match="only one class"):
        load_csv(write_csv(tmp_path / "one.csv", imu_rows(labels=("walk",))))


def test_long_stream_is_read_in_chunks_and_refused_beyond_the_stated_limit(tmp_path):
    # 3 hours at 20 Hz = 216,000 rows, streamed in 50,000-row chunks
    n = 3 * 3600 * 20
    rng = np.random.default_rng(0)
    values = rng.normal(size=(n, 3)).round(3)
    labels = np.where((np.arange(n) // 2000) % 2 == 0, "walk", "sit")
    path = tmp_path / "three_hours.csv"
    with open(path, "w") as f:
        f.write("subject,acc_x,acc_y,acc_z,label\n")
        f.writelines(f"1,{a},{b},{c},{l}\n" for (a, b, c), l in zip(values.tolist(), labels))
    cfg = dict(source="imu_csv", path=str(path), window=300, stride=150, split="random")  # windows straddle chunks
    chunked = data.load(DataConfig(**cfg, options={"chunk_rows": 50_000, "sample_rate": 20}))
    whole = data.load(DataConfig(**cfg, options={"chunk_rows": 1_000_000, "sample_rate": 20}))
    assert chunked.info["window_count"] == whole.info["window_count"] == (n - 300) // 150 + 1
    assert np.array_equal(chunked.train.x, whole.train.x)
    with pytest.raises(data.DataError, match=r"more than 100000 rows \(options.max_stream_rows\)"):
        data.load(DataConfig(**cfg, options={"chunk_rows": 50_000, "max_stream_rows": 100_000, "sample_rate": 20}))


# ---- audio -------------------------------------------------------------------------------

def tone(seconds=0.3, rate=8000, channels=1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    y = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return y if channels == 1 else np.stack([y] * channels, axis=1)


def refused_audio(path: Path, match: str):
    with pytest.raises(data.DataError, match=match) as err:
        decode_audio(path, 8000)
    assert str(path) in str(err.value)


def test_truncated_wav(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, tone(), 8000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:2000])
    refused_audio(path, "truncated")


def test_zero_length_wav(tmp_path):
    sf.write(tmp_path / "nothing.wav", np.zeros(0, np.float32), 8000, subtype="PCM_16")
    refused_audio(tmp_path / "nothing.wav", "no audio samples")
    (tmp_path / "zero_bytes.wav").write_bytes(b"")
    refused_audio(tmp_path / "zero_bytes.wav", "empty")


def test_zero_hz_wav(tmp_path):
    path = tmp_path / "zero_hz.wav"
    sf.write(path, tone(), 8000, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    assert raw[12:16] == b"fmt "
    raw[24:28] = struct.pack("<I", 0)  # sample rate field of the fmt chunk
    path.write_bytes(bytes(raw))
    refused_audio(path, "0 Hz")


def test_eight_channel_wav_is_refused_and_stereo_is_averaged(tmp_path):
    sf.write(tmp_path / "array.wav", tone(channels=8), 8000, subtype="PCM_16")
    refused_audio(tmp_path / "array.wav", "8 channels")
    sf.write(tmp_path / "stereo.wav", tone(channels=2), 8000, subtype="PCM_16")
    assert decode_audio(tmp_path / "stereo.wav", 8000).shape == (2400,)


def test_not_audio_behind_a_wav_name(tmp_path):
    (tmp_path / "notes.wav").write_text("these are my notes, not a recording\n" * 20)
    refused_audio(tmp_path / "notes.wav", "is not audio")


def test_three_hour_recording_is_refused_by_the_stated_limit(tmp_path):
    path = tmp_path / "three_hours.wav"
    sf.write(path, np.zeros(3 * 3600 * 100, np.int16), 100, subtype="PCM_16")  # 3 h at 100 Hz, 2 MB
    refused_audio(path, r"180.0 min long; the limit is 600 s per file \(options.max_seconds\)")


def test_resampling_and_bad_file_in_a_folder(tmp_path):
    for label in ("yes", "no"):
        (tmp_path / label).mkdir()
        for k in range(3):
            sf.write(tmp_path / label / f"{k}.wav", tone(0.5, 16000), 16000)
    (tmp_path / "no" / "broken.wav").write_text("not audio")
    cfg = dict(source="audio_folder", path=str(tmp_path), clip_seconds=0.5, sample_rate=8000, split="random")
    with pytest.raises(data.DataError, match="broken.wav: is not audio"):
        data.load(DataConfig(**cfg))
    bundle = data.load(DataConfig(**cfg, options={"on_error": "skip"}))
    assert bundle.info["skipped_count"] == 1 and "broken.wav" in bundle.info["skipped"][0]["file"]
    assert bundle.input_shape == (1, 4000) and bundle.class_names == ["no", "yes"]


def test_mp3_and_flac_decode_by_content_and_long_files_can_be_windowed(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sf.write(tmp_path / "a" / "long.flac", tone(2.0), 8000)  # 2 s -> clips of 0.5 s every 0.25 s
    sf.write(tmp_path / "b" / "short.mp3", tone(1.0), 8000, format="MP3")
    cfg = DataConfig(source="audio_folder", path=str(tmp_path), clip_seconds=0.5, split="random",
                     val_fraction=0.0, test_fraction=0.0, options={"mode": "window", "hop_seconds": 0.25})
    bundle = data.load(cfg)
    assert bundle.info["class_counts"] == {"a": 7, "b": 3}
    assert bundle.input_shape == (1, 4000)
    import json
    json.dumps(bundle.info)  # the report is plain JSON
