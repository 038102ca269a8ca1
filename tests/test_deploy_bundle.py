"""The deploy bundle: a zip whose predict.py, run where neither Sigscope nor torch can be imported,
answers real FSDD recordings and HAPT IMU CSVs as `python -m core predict` does."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from core.__main__ import main as core_main
from core.config import DataConfig
from core.data.features import FEATURES, _mel_filters, featurize_audio
from core.data.normalize import apply_normalization, audio_energy_rule, fit_normalization
from core.demo import install_bundled
from core.deploy.bundle import PREDICT_SOURCE, feature_pipeline, write_bundle
from core.errors import ConfigError
from core.infer import classify_file, load_run
from core.store import Store

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT / "data" / "fsdd" / "recordings"
HAPT = ROOT / "data" / "hapt" / "hapt_subjects01-04.csv.gz"
BUNDLE_FILES = {"model.onnx", "classes.json", "pipeline.json", "metrics.json", "predict.py", "README.txt"}
BLOCKED = ("torch", "core", "scipy", "pandas", "librosa", "soxr", "sklearn")
# what predict.py may load besides the standard library: numpy, onnxruntime, soundfile and their own parts
ALLOWED = {"numpy", "onnxruntime", "soundfile", "_soundfile", "_soundfile_data", "cffi", "_cffi_backend",
           "typing_extensions"}  # soundfile 0.13 imports typing_extensions


def _standalone():
    spec = importlib.util.spec_from_file_location("sigscope_standalone_predict", PREDICT_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


standalone = _standalone()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def export_onnx(model: torch.nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    """The test's own export (the bundle must not depend on core.deploy.export): dynamo, dynamic batch."""
    x = torch.randn(2, *input_shape)
    torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["x"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},), verbose=False)
    return path


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """{"demo-audio" / "demo-imu": (run id, predictor, unzipped bundle folder, zip path, onnx path)}."""
    store = Store()
    out = {}
    for name in ("demo-audio", "demo-imu"):
        run_id = install_bundled(store, name)
        predictor = load_run(run_id, store)
        work = tmp_path_factory.mktemp(name)
        onnx_path = export_onnx(predictor.model, predictor.input_shape, work / "model.onnx")
        zip_path = write_bundle(predictor, onnx_path, work / "dist" / f"{name}.zip")
        folder = tmp_path_factory.mktemp(f"{name}-unzipped")
        with zipfile.ZipFile(zip_path) as z:
            z.extractall(folder)
        out[name] = (run_id, predictor, folder, zip_path, onnx_path)
    return out


@pytest.fixture(scope="module")
def blocker(tmp_path_factory) -> Path:
    """A folder put first on sys.path whose torch, core, scipy, pandas... raise ImportError."""
    folder = tmp_path_factory.mktemp("blocker")
    for name in BLOCKED:
        (folder / name).mkdir()
        message = f"{name} is blocked: the bundle must not need it"
        (folder / name / "__init__.py").write_text(f"raise ImportError({message!r})\n")
    return folder


def isolated(code: str, blocker: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`code` in `python -I` (no PYTHONPATH, no user site, no script folder on sys.path) from a
    folder outside the repository, with the blocker first on sys.path."""
    prelude = f"import sys\nsys.path.insert(0, {str(blocker)!r})\n"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, "-I", "-c", prelude + code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def run_bundle(folder: Path, args: list[str], blocker: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    """predict.py of an unzipped bundle, blocked; also the top-level modules it loaded."""
    script, modules = folder / "predict.py", folder / "modules.json"
    code = ("import atexit, json, runpy\n"
            "before = set(sys.modules)\n"  # what site's .pth files loaded at start-up is not predict.py's
            f"atexit.register(lambda: open({str(modules)!r}, 'w').write(\n"
            "    json.dumps(sorted(set(sys.modules) - before))))\n"
            f"sys.argv = [{str(script)!r}] + {args!r}\n"
            f"runpy.run_path({str(script)!r}, run_name='__main__')\n")
    done = isolated(code, blocker, folder)
    loaded = {m.split(".")[0] for m in json.loads(modules.read_text())} if modules.is_file() else set()
    return done, loaded


def third_party(modules: set[str]) -> set[str]:
    return {m for m in modules if m not in sys.stdlib_module_names and m not in sys.builtin_module_names
            and m != "__main__"}


def core_cli(run_id: str, files: list[Path], *options: str) -> list[dict]:
    """`python -m core predict --run ID --json` (its main, in this process)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        core_main(["predict", "--run", run_id, "--json", "--explain", "none", *options, *map(str, files)])
    return json.loads(out.getvalue())


def compare(name: str, bundle_json: list[dict], cli_json: list[dict], predictor, files: list[Path],
            **options) -> float:
    """Same labels and windows as the CLI; probabilities within 1e-4 of core's unrounded ones."""
    largest = 0.0
    assert [r["file"] for r in bundle_json] == [str(f) for f in files]
    for ours, cli, path in zip(bundle_json, cli_json, files):
        assert "error" not in ours and "error" not in cli, (ours, cli)
        assert ours["label"] == cli["label"], path
        assert [w["label"] for w in ours["windows"]] == [w["label"] for w in cli["windows"]], path
        assert [w["start"] for w in ours["windows"]] == [w["start"] for w in cli["windows"]], path
        for k, p in cli["probabilities"].items():  # the CLI rounds to 4 decimals
            assert abs(ours["probabilities"][k] - p) <= 1e-4 + 5e-5 + 1e-6, (path, k)
        exact = classify_file(predictor, path, explain="none", **options)  # what the CLI printed, unrounded
        diff = max(abs(ours["probabilities"][k] - v) for k, v in exact.probabilities.items())
        assert diff < 1e-4, (path, diff)
        largest = max(largest, diff)
    print(f"\n{name}: largest |p_bundle - p_core| over {len(files)} file(s): {largest:.2e}")
    return largest


# ---- the zip -----------------------------------------------------------------------------------
def test_zip_holds_the_model_the_pipeline_and_the_runs_metrics(bundles):
    import onnxruntime as ort

    for name, (run_id, predictor, folder, zip_path, onnx_path) in bundles.items():
        names = set(zipfile.ZipFile(zip_path).namelist())
        assert names == BUNDLE_FILES | ({"mel_filters.npy"} if name == "demo-audio" else set())
        assert [p.name for p in zip_path.parent.iterdir()] == [zip_path.name]  # no temp file left
        assert json.loads((folder / "classes.json").read_text()) == predictor.class_names
        pipe = json.loads((folder / "pipeline.json").read_text())
        session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        assert pipe["input"]["name"] == session.get_inputs()[0].name  # read from the model, weights folded in
        assert pipe["input"]["shape"] == list(predictor.input_shape)
        assert (pipe["signal"], pipe["sample_rate"], pipe["window"], pipe["hop"]) == \
            (predictor.signal, predictor.sample_rate, predictor.window, predictor.stride)
        assert pipe["normalization"] == json.loads(json.dumps(predictor.normalization))
        assert pipe["onnx_check"]["max_probability_difference_vs_torch"] < 1e-4
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["run_id"] == run_id
        assert metrics["metrics"]["test_accuracy"] == pytest.approx(Store().final_metrics(run_id)["test_accuracy"])
        assert "confusion_matrix" in metrics["reports"]
        assert "python predict.py" in (folder / "README.txt").read_text()
        if name == "demo-imu":
            assert pipe["channels"] == predictor.channel_names == ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y",
                                                                   "gyro_z"]
            assert pipe["features"]["type"] == "raw"
        else:
            f, cfg = pipe["features"], predictor.config.data
            assert (f["type"], f["n_fft"], f["hop_length"], f["n_mels"], f["n_mfcc"], f["mfcc_c0"]) == \
                ("stack4", cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.n_mfcc, cfg.mfcc_c0)
            np.testing.assert_array_equal(np.load(folder / "mel_filters.npy"),
                                          _mel_filters(predictor.sample_rate, cfg.n_fft, cfg.n_mels))
            assert metrics["metrics"]["test_accuracy"] == pytest.approx(0.83, abs=0.01)


def test_the_blocker_keeps_torch_and_core_out(bundles, blocker):
    folder = bundles["demo-imu"][2]
    for name in ("torch", "core", "scipy"):
        done = isolated(f"import {name}\n", blocker, folder)
        assert done.returncode != 0 and f"{name} is blocked" in done.stderr
    done = isolated("import numpy, onnxruntime, soundfile\nprint('ok')\n", blocker, folder)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


# ---- answers as core's --------------------------------------------------------------------------
def test_audio_bundle_answers_real_fsdd_recordings_as_core_predict(bundles, blocker, tmp_path):
    run_id, predictor, folder, _, _ = bundles["demo-audio"]
    files = [FSDD / f for f in ("0_george_0.wav", "1_jackson_1.wav", "2_lucas_0.wav", "3_nicolas_1.wav",
                                "4_yweweler_0.wav", "5_george_1.wav", "6_jackson_0.wav", "7_lucas_1.wav",
                                "8_nicolas_0.wav", "9_yweweler_1.wav")]
    # a longer recording (several windows, a zero-padded tail) and a stereo one, made of real digits
    a, rate = sf.read(FSDD / "3_george_0.wav", dtype="float32")
    b, _ = sf.read(FSDD / "8_jackson_0.wav", dtype="float32")
    long = tmp_path / "three_then_eight.wav"
    sf.write(long, np.concatenate([a, np.zeros(3000, np.float32), b, a]), rate, subtype="PCM_16")
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([b, 0.5 * b], axis=1), rate, subtype="FLOAT")
    files += [long, stereo]
    done, loaded = run_bundle(folder, ["--json", "--top-k", "3", *map(str, files)], blocker)
    assert done.returncode == 0, done.stderr
    assert third_party(loaded) <= ALLOWED, third_party(loaded) - ALLOWED
    ours = json.loads(done.stdout)
    assert len(ours[-2]["windows"]) >= 3
    compare("audio", ours, core_cli(run_id, files), predictor, files)
    options = ["--hop", "0.25", "--aggregate", "vote"]
    done, _ = run_bundle(folder, ["--json", *options, str(long)], blocker)
    assert done.returncode == 0, done.stderr
    compare("audio, hop 0.25 s, vote", json.loads(done.stdout), core_cli(run_id, [long], *options), predictor,
            [long], hop=0.25, aggregate="vote")
    text, _ = run_bundle(folder, [str(files[0])], blocker)  # the one-line form
    assert text.returncode == 0 and text.stdout.startswith(f"{files[0]}: {ours[0]['label']} (p=")


def test_imu_bundle_answers_real_hapt_recordings_as_core_predict(bundles, blocker, tmp_path):
    run_id, predictor, folder, _, _ = bundles["demo-imu"]
    frame = pd.read_csv(HAPT)
    subject4 = tmp_path / "subject4.csv"  # as tests/test_infer.py makes it: the CSV core predict reads
    frame[frame["subject"] == 4].to_csv(subject4, index=False)
    # the same kind of recording written another way: ; and decimal commas, a time column in ms,
    # gzipped, with one missing value (interpolated by both)
    part = frame[(frame["subject"] == 2) & frame["session"].isin(sorted(frame[frame["subject"] == 2]["session"]
                                                                       .unique())[:2])].copy()
    part.insert(0, "time_ms", part.groupby("session").cumcount() * 20.0)
    part.iloc[300, part.columns.get_loc("gyro_y")] = np.nan
    variant = tmp_path / "subject2.csv.gz"
    part.to_csv(variant, sep=";", decimal=",", index=False, compression="gzip")
    files = [subject4, variant]
    done, loaded = run_bundle(folder, ["--json", *map(str, files)], blocker)
    assert done.returncode == 0, done.stderr
    assert third_party(loaded) <= ALLOWED, third_party(loaded) - ALLOWED
    assert "soundfile" not in loaded  # an IMU bundle does not need it
    ours = json.loads(done.stdout)
    assert len(ours[0]["windows"]) > 400
    compare("imu", ours, core_cli(run_id, files), predictor, files)


# ---- the numpy pipeline against core's ---------------------------------------------------------
@pytest.mark.parametrize("features, c0", [(f, True) for f in FEATURES] +
                         [(f, False) for f in FEATURES if f not in ("raw", "logmel")])  # c0 applies to MFCCs
def test_numpy_features_match_featurize_audio(features, c0):
    rng = np.random.default_rng(1)
    for sr, n_fft, hop, n_mels in ((8000, 256, 128, 32), (16000, 512, 160, 40)):
        cfg = DataConfig(features=features, sample_rate=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels, n_mfcc=13,
                         mfcc_c0=c0)
        t = np.arange(sr) / sr
        clips = np.stack([rng.uniform(-0.5, 0.5, sr), 1e-3 * rng.standard_normal(sr),
                          0.3 * np.sin(2 * np.pi * 440 * t) * (t < 0.4)]).astype(np.float32)
        clips[2, -100:] = 0.0
        spec, arrays = feature_pipeline(cfg, sr)
        ours = standalone.featurize(clips, spec, arrays.get("mel_filters.npy"))
        ref = featurize_audio(clips, sr, cfg)
        assert ours.shape == ref.shape and ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)
        print(f"\n{features} c0={c0} sr={sr}: max |diff| {np.abs(ours - ref).max():.2e}")


def test_numpy_normalization_matches_every_mode():
    rng = np.random.default_rng(2)
    cfg = DataConfig(features="stack4", sample_rate=8000, n_fft=256, hop_length=128, n_mels=32)
    clips = (rng.uniform(-0.3, 0.3, (6, 8000)) * (np.arange(8000) < 5000)).astype(np.float32)
    images = featurize_audio(clips, 8000, cfg)  # (6, 4, 32, 63)
    imu = rng.standard_normal((6, 3, 50)).astype(np.float32) * [[1.0], [5.0], [0.1]] + 2.0
    cases = [(imu, fit_normalization(imu, "zscore")), (imu, fit_normalization(imu, "robust")),
             (images, fit_normalization(images, "zscore", ["zscore", "zscore", "robust", "robust"])),
             (imu, fit_normalization(imu, "per_example")), (imu, fit_normalization(imu, "none"))]
    for features, c0 in (("stack4", True), ("logmel", True), ("mfcc", True), ("mfcc_deltas", True)):
        c = DataConfig(features=features, sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, mfcc_c0=c0)
        x = featurize_audio(clips, 8000, c)
        cases.append((x, fit_normalization(x, "per_utterance", energy=audio_energy_rule(features, c0, 32))))
    for x, norm in cases:
        norm = json.loads(json.dumps(norm))  # as pipeline.json carries it
        ref = apply_normalization(x, norm)
        np.testing.assert_allclose(standalone.normalize(x, norm), ref, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(standalone.normalize(x[0], norm), apply_normalization(x[0], norm), rtol=1e-6,
                                   atol=1e-6)


# ---- refusals ------------------------------------------------------------------------------------
def test_bad_files_get_one_error_line_and_no_nan(bundles, blocker, tmp_path):
    run_id, predictor, folder, _, _ = bundles["demo-audio"]
    good = FSDD / "4_lucas_0.wav"
    y, rate = sf.read(good, dtype="float32")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    nan_wav = tmp_path / "nan.wav"
    bad = y.copy()
    bad[100] = np.nan
    sf.write(nan_wav, bad, rate, subtype="FLOAT")
    text = tmp_path / "notes.wav"
    text.write_text("a,b\n1,2\n")
    refused_by_both = [garbage, truncated, nan_wav, text]
    files = [good, *refused_by_both]
    done, _ = run_bundle(folder, ["--json", *map(str, files)], blocker)
    assert done.returncode == 1
    results = json.loads(done.stdout, parse_constant=lambda c: pytest.fail(f"predict.py printed {c}"))
    assert "error" not in results[0] and results[0]["label"] == classify_file(predictor, good, explain="none").label
    assert all("error" in r for r in results[1:])
    assert len(done.stderr.strip().splitlines()) == len(refused_by_both)  # one line per bad file
    core = core_cli(run_id, files)
    assert ["error" in r for r in core] == ["error" in r for r in results]
    # another sample rate: core resamples (soxr), the bundle refuses and says how to convert
    other_rate = tmp_path / "at16k.wav"
    sf.write(other_rate, np.repeat(y, 2), 16000)
    done, _ = run_bundle(folder, [str(other_rate)], blocker)
    assert done.returncode == 1 and "16000 Hz" in done.stderr and "8000" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_bad_imu_csvs_are_refused_like_core(bundles, blocker, tmp_path):
    run_id, _, folder, _, _ = bundles["demo-imu"]
    frame = pd.read_csv(HAPT, nrows=2000)
    gap = frame.copy()
    gap.loc[500:520, "acc_y"] = np.nan  # 21 missing in a row: more than the 5 interpolated
    with_gap = tmp_path / "gap.csv"
    gap.to_csv(with_gap, index=False)
    text = with_gap.read_text().splitlines()
    infinite = tmp_path / "inf.csv"
    cells = text[10].split(",")
    cells[4] = "inf"
    infinite.write_text("\n".join(text[:10] + [",".join(cells)] + text[11:]) + "\n")
    missing_column = tmp_path / "no_gyro.csv"
    frame.drop(columns=["gyro_z"]).to_csv(missing_column, index=False)
    wav = FSDD / "4_lucas_0.wav"
    files = [with_gap, infinite, missing_column, wav]
    done, _ = run_bundle(folder, ["--json", *map(str, files)], blocker)
    assert done.returncode == 1
    results = json.loads(done.stdout)
    assert all("error" in r for r in results)
    assert "consecutive missing values" in results[0]["error"] and "acc_y" in results[0]["error"]
    assert "gyro_z" in results[2]["error"] and "audio" in results[3]["error"]
    assert len(done.stderr.strip().splitlines()) == len(files)
    assert all("error" in r for r in core_cli(run_id, files))


def test_input_name_and_a_fixed_batch_are_read_from_the_model(bundles, blocker, tmp_path):
    """An ONNX file whose input is not called "x" and whose batch is fixed at 1 (the TorchScript exporter
    without dynamic axes) answers the same."""
    run_id, predictor, _, _, _ = bundles["demo-imu"]
    onnx_path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():  # torch deprecates the TorchScript exporter
        warnings.simplefilter("ignore")
        torch.onnx.export(predictor.model, (torch.randn(1, *predictor.input_shape),), str(onnx_path), dynamo=False,
                          input_names=["window"], output_names=["scores"])
    folder = tmp_path / "bundle"
    with zipfile.ZipFile(write_bundle(predictor, onnx_path, tmp_path / "fixed.zip")) as z:
        z.extractall(folder)
    pipe = json.loads((folder / "pipeline.json").read_text())
    assert (pipe["input"]["name"], pipe["input"]["fixed_batch"], pipe["output"]["name"]) == ("window", 1, "scores")
    recording = tmp_path / "rec.csv"
    pd.read_csv(HAPT, nrows=3000).to_csv(recording, index=False)
    done, _ = run_bundle(folder, ["--json", str(recording)], blocker)
    assert done.returncode == 0, done.stderr
    compare("imu, fixed batch 1", json.loads(done.stdout), core_cli(run_id, [recording]), predictor, [recording])


def test_a_missing_bundle_file_is_one_line_and_exit_2(bundles, blocker, tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "predict.py").write_bytes((bundles["demo-imu"][2] / "predict.py").read_bytes())
    done, _ = run_bundle(folder, ["x.csv"], blocker)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "pipeline.json" in done.stderr


# ---- writing the zip -----------------------------------------------------------------------------
def test_a_failed_write_leaves_nothing_and_a_good_one_replaces_the_zip(bundles, tmp_path, monkeypatch):
    _, audio, _, _, audio_onnx = bundles["demo-audio"]
    _, imu, _, _, imu_onnx = bundles["demo-imu"]
    out = tmp_path / "dist"
    with pytest.raises(ConfigError, match="no such ONNX file"):
        write_bundle(imu, tmp_path / "absent.onnx", out / "imu.zip")
    with pytest.raises(ConfigError, match="shape"):  # the audio model is not this IMU run's
        write_bundle(imu, audio_onnx, out / "imu.zip")
    assert not out.exists() or list(out.iterdir()) == []
    calls = []

    def failing_writestr(self, name, data, *args, **kwargs):
        calls.append(name)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(self, name, data, *args, **kwargs)

    original = zipfile.ZipFile.writestr
    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    with pytest.raises(OSError, match="disk full"):
        write_bundle(imu, imu_onnx, out / "imu.zip")
    assert list(out.iterdir()) == []
    monkeypatch.setattr(zipfile.ZipFile, "writestr", original)
    (out / "imu.zip").write_bytes(b"an older bundle")
    path = write_bundle(imu, imu_onnx, out / "imu.zip", metrics={"test_accuracy": 0.5, "onnx_int8": float("nan")})
    assert path == out / "imu.zip" and list(out.iterdir()) == [path]
    metrics = json.loads(zipfile.ZipFile(path).read("metrics.json"))
    assert metrics["from"] == "caller" and metrics["metrics"] == {"test_accuracy": 0.5, "onnx_int8": None}
