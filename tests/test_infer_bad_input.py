"""Bad uploads: each gives one clear line (in the engine, the CLI and so on the page), the
rest of a batch goes on, and nothing uploaded reaches a user-chosen path or gets executed."""
from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from core.__main__ import main as cli
from core.config import DataConfig, ModelConfig, RunConfig
from core.errors import DataError
from core.infer import MAX_UPLOAD_BYTES, classify_bytes, classify_files, display_name, load_run
from core.models import create
from core.store import Store
from core.train.checkpoints import atomic_torch_save, write_run_files

ROOT = Path(__file__).resolve().parents[1]
GOOD_WAV = ROOT / "data" / "fsdd" / "recordings" / "3_george_0.wav"
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]


def stored_untrained_run(name: str, model: str, data_cfg: DataConfig, shape: tuple, classes: list, channels: list,
                         rate: float, kind: str, hparams: dict, seed: int = 0) -> str:
    """A stored run with an untrained model: bad input is refused before the weights matter."""
    store = Store()
    cfg = RunConfig(name=name, data=data_cfg, model=ModelConfig(name=model, hparams=hparams))
    run_id = store.create_run(cfg.to_dict(), name=name, status="completed")
    folder = Path(store.get_run(run_id)["run_dir"])
    write_run_files(folder, cfg, SimpleNamespace(normalization={"kind": "none"}, class_names=classes,
                                                 channel_names=channels, input_shape=shape, input_kind=kind,
                                                 sample_rate=rate))
    (folder / "checkpoints").mkdir(exist_ok=True)
    torch.manual_seed(seed)  # the same untrained weights for the same seed
    atomic_torch_save({"model": create(model, shape, len(classes), **hparams).state_dict()},
                      folder / "checkpoints" / "best.pt")
    return run_id


@pytest.fixture(scope="module")
def audio_run() -> str:
    return stored_untrained_run("bad-input-audio", "audio_resnet_attention",
                                DataConfig(source="fsdd", features="stack4", n_mels=32, hop_length=128), (4, 32, 63),
                                [str(d) for d in range(10)], ["logmel", "mfcc", "delta", "delta2"], 8000.0,
                                "spectrogram", {"base_channels": 8, "d_model": 32, "heads": "4"})


@pytest.fixture(scope="module")
def imu_run() -> str:
    return stored_untrained_run("bad-input-imu", "resnet1d", DataConfig(source="hapt"), (6, 128),
                                ["WALKING", "SITTING"], CHANNELS, 50.0, "imu", {"base_channels": 8, "num_stages": 2})


@pytest.fixture(scope="module")
def audio(audio_run):
    return load_run(audio_run)


@pytest.fixture(scope="module")
def imu(imu_run):
    return load_run(imu_run)


def wav_bytes(y: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    y = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.repeat(y[:, None], channels, axis=1) if channels > 1 else y


# ---- audio -------------------------------------------------------------------------------
def test_a_real_recording_works(audio):
    pred = classify_bytes(audio, GOOD_WAV.read_bytes(), "3_george_0.wav")
    assert pred.file == "3_george_0.wav" and pred.label in audio.class_names


@pytest.mark.parametrize("data, match", [
    (b"label,acc_x\nWALKING,1.0\n", "is not audio despite its .wav name"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "neither audio"),
    (b"", "empty"),
])
def test_not_audio_behind_a_wav_name_and_zero_length(audio, data, match):
    with pytest.raises(DataError, match=match) as e:
        classify_bytes(audio, data, "clip.wav")
    assert str(e.value).startswith("clip.wav:") and "\n" not in str(e.value)
    assert "sigscope-upload" not in str(e.value)  # the user sees their name, not our temp path


def test_truncated_wav(audio):
    data = GOOD_WAV.read_bytes()
    with pytest.raises(DataError, match="truncated"):
        classify_bytes(audio, data[:len(data) // 3], "cut.wav")


def test_silence_is_refused_with_the_level(audio):
    with pytest.raises(DataError, match="silent"):
        classify_bytes(audio, wav_bytes(np.zeros(8000), 8000), "quiet.wav")
    with pytest.raises(DataError, match=r"silent \(peak -\d+ dBFS\)"):
        classify_bytes(audio, wav_bytes(np.full(8000, 3e-5), 8000, "FLOAT"), "hiss.wav")


def test_eight_channels_are_refused(audio):
    with pytest.raises(DataError, match="8 channels"):
        classify_bytes(audio, wav_bytes(tone(1.0, 8000, 8), 8000), "array.wav")


def test_96_khz_is_resampled_to_the_runs_rate(audio):
    pred = classify_bytes(audio, wav_bytes(tone(2.0, 96000, 2), 96000), "hifi.wav")
    assert pred.sample_rate == 8000 and pred.duration == pytest.approx(2.0, abs=1e-3)
    assert any("resampled from 96000 Hz" in n for n in pred.notes) and any("stereo" in n for n in pred.notes)


def test_one_hour_file_is_refused_by_its_length_before_decoding(audio):
    hour = wav_bytes(np.zeros(3600 * 1000, dtype=np.float32) + 0.1, 1000, "PCM_U8")  # 3.6 MB: under the byte limit
    with pytest.raises(DataError, match=r"60\.0 min long; the limit is 600 s"):
        classify_bytes(audio, hour, "hour.wav")


def test_uploads_over_the_size_limit_are_refused_before_anything_is_written(audio):
    before = set(Path(tempfile.gettempdir()).glob("sigscope-upload-*"))
    with pytest.raises(DataError, match="over the 50 MiB upload limit"):
        classify_bytes(audio, b"RIFF" + bytes(MAX_UPLOAD_BYTES), "huge.wav")
    assert set(Path(tempfile.gettempdir()).glob("sigscope-upload-*")) == before


def test_hostile_names_never_become_paths(audio, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    before = set(Path(tempfile.gettempdir()).glob("sigscope-upload-*"))
    for name in ("../../x.wav", "/etc/passwd.wav", "..\\..\\x.wav", "con.wav", "x\n\x00\x1b[31m.wav"):
        pred = classify_bytes(audio, GOOD_WAV.read_bytes(), name)
        assert "\n" not in pred.file and "\x00" not in pred.file and "\x1b" not in pred.file
    assert pred.file == "x[31m.wav"  # control characters dropped for display
    assert not (tmp_path / "x.wav").exists() and not list(tmp_path.rglob("x.wav"))
    assert set(Path(tempfile.gettempdir()).glob("sigscope-upload-*")) == before  # temp folders removed
    assert display_name("") == "upload" and len(display_name("a" * 500)) == 120


def test_a_pickle_behind_an_audio_name_is_never_unpickled(audio, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for name in ("model.wav", "weights.csv"):
        with pytest.raises(DataError):
            classify_bytes(audio, pickle.dumps(Exploit()), name)
    torch_file = io.BytesIO()
    torch.save({"x": Exploit()}, torch_file)
    with pytest.raises(DataError):
        classify_bytes(audio, torch_file.getvalue(), "checkpoint.pt")
    assert not marker.exists()


# ---- IMU CSV -------------------------------------------------------------------------------
def imu_frame(rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({c: rng.normal(size=rows) for c in CHANNELS})


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def test_csv_with_wrong_columns_names_what_is_missing(imu):
    frame = imu_frame().rename(columns={"gyro_z": "gz", "acc_x": "ax"})
    with pytest.raises(DataError, match=r"has no column\(s\) \['acc_x', 'gyro_z'\]; run .* trained on channels"):
        classify_bytes(imu, csv_bytes(frame), "walk.csv")


def test_a_one_column_csv_is_one_signal_for_a_one_channel_run_and_refused_where_it_is_not():
    """A univariate run (a UCR set's MiniRocket) classifies a CSV of one named column, saying
    which column it read as its channel; a column of bare numbers, or one line of text, is still
    refused with what to do, and a six-channel run still names the columns it lacks."""
    from core.data.imu_csv import looks_like_csv

    run = load_run(stored_untrained_run("one-channel", "resnet1d", DataConfig(source="uea", options={"name": "GunPoint"}),
                                        (1, 150), ["1", "2"], ["dim0"], 1.0, "imu",
                                        {"base_channels": 8, "num_stages": 2}))
    signal = np.sin(np.linspace(0, 6, 150))
    one = ("value\n" + "\n".join(f"{v:.5f}" for v in signal)).encode()
    assert looks_like_csv(one)
    result = classify_bytes(run, one, "one.csv")
    assert result.label in ("1", "2") and np.isfinite(result.window_probs).all()
    assert any("column 'value' read as the run's one channel 'dim0'" in n for n in result.notes), result.notes
    with pytest.raises(DataError, match="nor a text CSV .*first line is no header"):
        classify_bytes(run, "\n".join(f"{v:.5f}" for v in signal).encode(), "bare.csv")
    assert not looks_like_csv(b"Not Found\n<html><body>gone</body></html>")


def test_csv_nan_runs_short_interpolated_long_refused_with_lines(imu):
    frame = imu_frame()
    frame.loc[10:12, "acc_y"] = np.nan  # 3 missing: interpolated
    assert classify_bytes(imu, csv_bytes(frame), "gaps.csv").label in imu.class_names
    frame.loc[100:140, "gyro_x"] = np.nan
    with pytest.raises(DataError, match=r"41 consecutive missing values in column 'gyro_x' at lines 102-142"):
        classify_bytes(imu, csv_bytes(frame), "holes.csv")


def test_csv_too_short_wrong_rate_and_non_numeric(imu):
    with pytest.raises(DataError, match="no stream has a full window of 128 samples"):
        classify_bytes(imu, csv_bytes(imu_frame(50)), "short.csv")
    frame = imu_frame()
    frame.insert(0, "time", np.arange(len(frame)) / 100.0)
    with pytest.raises(DataError, match="says 100.0 Hz; .* trained at 50 Hz"):
        classify_bytes(imu, csv_bytes(frame), "fast.csv")
    frame = imu_frame().astype(object)
    frame.loc[7, "acc_z"] = "oops"
    with pytest.raises(DataError, match="non-numeric value 'oops' in column 'acc_z' at line 9"):
        classify_bytes(imu, csv_bytes(frame), "text.csv")


def test_the_wrong_kind_of_file_for_the_run(audio, imu):
    with pytest.raises(DataError, match="is a CSV, but run .* is an audio model"):
        classify_bytes(audio, csv_bytes(imu_frame()), "walk.csv")
    with pytest.raises(DataError, match="is audio, but run .* is an IMU model"):
        classify_bytes(imu, GOOD_WAV.read_bytes(), "digit.wav")


# ---- a batch and the CLI -------------------------------------------------------------------
def test_one_bad_file_does_not_stop_the_others(audio, tmp_path):
    (tmp_path / "fake.wav").write_text("not audio")
    (tmp_path / "empty.wav").write_bytes(b"")
    results = classify_files(audio, [tmp_path / "fake.wav", GOOD_WAV, tmp_path / "empty.wav", tmp_path / "gone.wav"])
    assert [("error" in r) for r in results] == [True, False, True, True]
    assert results[1]["label"] in audio.class_names
    assert all("\n" not in r.get("error", "") for r in results)


def test_cli_predict_prints_one_object_per_file_and_exit_code_1_on_errors(audio_run, tmp_path, capsys):
    (tmp_path / "fake.wav").write_text("not audio at all")
    code = cli(["predict", "--run", audio_run, str(GOOD_WAV), str(tmp_path / "fake.wav"), "--top-k", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and len(out) == 2
    good, bad = out
    assert set(good) >= {"file", "label", "probabilities", "windows", "attention"} and len(good["top_k"]) == 2
    assert good["attention"][0]["heads"] == 4 and "rollout" in good["attention"][0]
    assert bad["file"].endswith("fake.wav") and "not audio" in bad["error"]
    assert cli(["predict", "--run", "bad-input-audio", str(GOOD_WAV)]) == 0  # a run name works too
    assert "3_george_0.wav:" in capsys.readouterr().out
    assert cli(["predict", "--run", "no-such-run", str(GOOD_WAV)]) == 2
    assert "no run with that id or name" in capsys.readouterr().err


def test_explanations_are_bounded_by_the_window_limit_and_the_file_still_classified(imu, monkeypatch):
    """Grad-CAM + saliency cost about 8x classifying a window: a file over the limit is
    classified without them, and says so."""
    t = np.arange(1300) / 50.0
    table = pd.DataFrame(np.sin(t[:, None] + np.arange(6)), columns=CHANNELS).to_csv(index=False).encode()
    explained = classify_bytes(imu, table, "walk.csv")
    assert explained.saliency and len(explained.starts) > 10
    monkeypatch.setenv("SIGSCOPE_MAX_EXPLAINED_WINDOWS", "10")
    bounded = classify_bytes(imu, table, "walk.csv")
    assert not bounded.saliency and np.isfinite(bounded.window_probs).all()
    assert bounded.label == explained.label
    assert any("over the 10 explained per file" in n and "SIGSCOPE_MAX_EXPLAINED_WINDOWS" in n for n in bounded.notes)


def test_a_refusal_asks_for_what_the_run_classifies(audio, imu):
    noise = np.random.default_rng(5).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    with pytest.raises(DataError) as on_audio:
        classify_bytes(audio, noise, "clip.bin")
    assert "WAV/FLAC/OGG/MP3 recording" in str(on_audio.value) and "IMU CSV" not in str(on_audio.value)
    with pytest.raises(DataError) as on_imu:
        classify_bytes(imu, noise, "walk.bin")
    assert "give an IMU CSV" in str(on_imu.value)
