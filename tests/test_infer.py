"""Inference: a trained run classifies the user's files exactly as it was tested, and the
explanations point at the right seconds."""
from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from core import data
from core.config import DataConfig, ModelConfig, OptimConfig, ProbeConfig, RunConfig, ScheduleConfig, TrainConfig
from core.explain import attention_summary, grad_cam, input_saliency, stitch, token_spans
from core.infer import aggregate_probs, classify_file, load_run, load_run_dir, sliding_starts, window_attention
from core.models import create
from core.models.attention import AttentionMap
from core.store import Store
from core.train import Trainer
from core.train.checkpoints import atomic_torch_save, write_run_files

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT / "data" / "fsdd" / "recordings"
HAPT = ROOT / "data" / "hapt" / "hapt_subjects01-04.csv.gz"
NO_PROBES = ProbeConfig(enabled=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def train_stored(cfg: RunConfig) -> str:
    """Train `cfg` as a stored run (as the CLI does) and return its id."""
    from core.jobs import run_job

    store = Store()
    run_id = store.create_run(cfg.to_dict(), name=cfg.name)
    assert run_job(store, run_id, cfg, device="cpu") == "completed", store.get_run(run_id)["error"]
    return run_id


def save_untrained_run(folder: Path, model_name: str, data_cfg: DataConfig, input_shape: tuple, classes: list[str],
                       channels: list[str], rate: float, input_kind: str, hparams: dict | None = None,
                       normalization: dict | None = None) -> Path:
    """A run folder for an untrained model (shapes and time mapping do not need training)."""
    cfg = RunConfig(name=model_name, data=data_cfg, model=ModelConfig(name=model_name, hparams=hparams or {}))
    bundle = SimpleNamespace(normalization=normalization or {"kind": "none"}, class_names=classes,
                             channel_names=channels, input_shape=input_shape, input_kind=input_kind, sample_rate=rate)
    write_run_files(folder, cfg, bundle)
    torch.manual_seed(0)
    model = create(model_name, input_shape, len(classes), **(hparams or {}))
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"model": model.state_dict(), "epoch": 0}, folder / "checkpoints" / "best.pt")
    return folder


# ---- runs trained once for this module ---------------------------------------------------
@pytest.fixture(scope="module")
def audio_run() -> str:
    """A small audio_resnet_attention on the bundled FSDD sample, standard split."""
    cfg = RunConfig(
        name="test-audio",
        data=DataConfig(source="fsdd", split="fixed", features="stack4", n_mels=32, hop_length=128, val_fraction=0.1),
        model=ModelConfig(name="audio_resnet_attention",
                          hparams={"base_channels": 8, "d_model": 32, "heads": "4", "ffn_mult": 2,
                                   "pool_hidden": 16, "head_hidden": 32}),
        optim=OptimConfig(lr=3e-3), schedule=ScheduleConfig(name="onecycle"),
        train=TrainConfig(epochs=6, batch_size=16, device="cpu", probes=NO_PROBES))
    return train_stored(cfg)


@pytest.fixture(scope="module")
def imu_run() -> str:
    """A small har_transformer on the bundled HAPT sample with subject 4 held out for test."""
    cfg = RunConfig(
        name="test-imu",
        data=DataConfig(source="hapt", split="subject", test_groups=["4"], val_groups=["3"]),
        model=ModelConfig(name="har_transformer", hparams={"hidden_ch": 8, "dim": 16, "depth": 1, "heads": 2,
                                                           "mlp_dim": 32}),
        optim=OptimConfig(lr=3e-3), schedule=ScheduleConfig(name="onecycle"),
        train=TrainConfig(epochs=2, batch_size=64, device="cpu", probes=NO_PROBES))
    return train_stored(cfg)


# ---- checkpoints -------------------------------------------------------------------------
def test_checkpoint_round_trips_to_identical_logits(tmp_path):
    cfg = RunConfig(data=DataConfig(source="synthetic_imu", options={"per_class": 30}),
                    model=ModelConfig(name="resnet1d", hparams={"base_channels": 8, "num_stages": 2,
                                                                "kernel_size": 5}),
                    train=TrainConfig(epochs=2, batch_size=32, device="cpu", probes=NO_PROBES))
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    trainer.fit()
    x = torch.stack([trainer.bundle.test[i][0] for i in range(len(trainer.bundle.test))])
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(x)
    predictor = load_run_dir(tmp_path / "run", which="last")
    assert predictor.config.model.hparams["kernel_size"] == 5  # rebuilt from config.json, not defaults
    with torch.no_grad():
        got = predictor.model(x)
    assert torch.equal(got, expected)
    # the predictor's own pipeline (raw windows -> stored normalization) gives the same inputs
    raw = trainer.bundle.test.x
    assert np.array_equal(predictor.logits(np.stack([predictor.inputs(w.T, np.array([0]))[0] for w in raw])),
                          expected.numpy())


def test_load_run_by_id_and_refusals(audio_run):
    predictor = load_run(audio_run)
    assert predictor.run_id == audio_run and predictor.signal == "audio"
    assert predictor.window == 8000 and predictor.input_shape == (4, 32, 63)
    with pytest.raises(Exception, match="no run 'nope'"):
        load_run("nope")
    store = Store()
    queued = store.create_run(RunConfig().to_dict(), name="not started")
    with pytest.raises(Exception, match="no checkpoint yet"):
        load_run(queued)


# ---- predictions match the run's test accuracy -------------------------------------------
def test_fsdd_test_recordings_reproduce_the_runs_test_accuracy(audio_run):
    predictor = load_run(audio_run)
    test_accuracy = Store().final_metrics(audio_run)["test_accuracy"]
    files = sorted(p for p in FSDD.glob("*.wav") if int(p.stem.split("_")[2]) <= 4)  # the standard test takes
    bundle = data.load(predictor.config.data)
    test_index = {name: i for i, name in enumerate(bundle.test.ids)}
    assert len(files) == len(test_index) == 100
    correct, long_files = 0, 0
    for path in files:
        pred = classify_file(predictor, path, explain="none")
        correct += pred.label == path.stem.split("_")[0]
        if pred.duration > predictor.window_seconds:
            long_files += 1  # training cropped these to 1 s; inference slides over them
            continue
        # a clip within the training length takes exactly the training pipeline
        x, _ = bundle.test[test_index[path.name]]
        with torch.no_grad():
            ref = torch.softmax(predictor.model(x[None]), dim=1)[0].numpy()
        np.testing.assert_allclose(pred.window_probs[0], ref, atol=1e-5)
    assert abs(correct / len(files) - test_accuracy) <= long_files / len(files) + 1e-9


def test_hapt_held_out_subject_windows_reproduce_the_runs_test_accuracy(imu_run, tmp_path):
    predictor = load_run(imu_run)
    test_accuracy = Store().final_metrics(imu_run)["test_accuracy"]
    frame = pd.read_csv(HAPT)
    csv = tmp_path / "subject4.csv"
    frame[frame["subject"] == 4].to_csv(csv, index=False)
    pred = classify_file(predictor, csv, explain="none")
    bundle = data.load(predictor.config.data)
    labelled = pred.window_true >= 0
    assert labelled.sum() == len(bundle.test)  # the same windows the run was tested on
    assert pred.window_accuracy == pytest.approx(test_accuracy, abs=1e-6)
    assert len(pred.streams) == frame[frame["subject"] == 4]["session"].nunique()
    # long recordings get a label per window, with its time span
    windows = pred.to_json()["windows"]
    assert len(windows) == len(pred.starts) and windows[1]["start"] == pytest.approx(64 / 50)
    assert {"start", "end", "label", "p"} <= set(windows[0])


def test_long_audio_is_windowed_and_aggregated(audio_run, tmp_path):
    import soundfile as sf

    predictor = load_run(audio_run)
    a, _ = sf.read(FSDD / "3_george_0.wav")
    b, _ = sf.read(FSDD / "8_george_0.wav")
    gap = np.zeros(4000)
    sf.write(tmp_path / "two.wav", np.concatenate([a, gap, b, gap]), 8000)
    pred = classify_file(predictor, tmp_path / "two.wav", hop=0.25, top_k=4)
    duration = (len(a) + len(b) + 8000) / 8000
    assert pred.duration == pytest.approx(duration)
    assert np.all(np.diff(pred.starts) == 2000) and pred.starts[-1] + 8000 >= len(pred.signal)
    assert len(pred.top_k) == 4 and pred.top_k[0][1] >= pred.top_k[1][1]
    assert sum(pred.probabilities.values()) == pytest.approx(1.0)
    assert pred.margin == pytest.approx(pred.top_k[0][1] - pred.top_k[1][1])
    out = json.loads(json.dumps(pred.to_json()))  # JSON-able as the CLI prints it
    layer = out["attention"][0]
    assert layer["kind"] == "self" and layer["shape"] == [16, 16] and layer["heads"] == 4
    times = layer["rollout"]["times"]
    assert 0 < times[0] < times[-1] <= duration


def test_aggregation_mean_log_prob_and_vote():
    probs = np.array([[0.9, 0.1], [0.45, 0.55], [0.4, 0.6]])
    mean = aggregate_probs(probs, "mean")
    expected = np.exp(np.log(probs).mean(axis=0))
    np.testing.assert_allclose(mean, expected / expected.sum())
    assert mean.argmax() == 0  # one confident window outweighs two unsure ones
    assert aggregate_probs(probs, "vote").argmax() == 1  # but not two votes
    assert sliding_starts(100, 200, 50).tolist() == [0]
    assert sliding_starts(1000, 400, 300).tolist() == [0, 300, 600]  # tail covered by a padded window


# ---- attention shapes and time mapping ---------------------------------------------------
IMU_CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]


def _imu_csv(path: Path, seconds: float, rate: float = 50.0) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    cols = {c: np.sin(2 * np.pi * (1 + i) * t) + 0.1 * rng.normal(size=len(t)) for i, c in enumerate(IMU_CHANNELS)}
    pd.DataFrame({"time": t, **cols}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("model_name, hparams, tokens, token_seconds, has_cls", [
    ("har_transformer", {"hidden_ch": 8, "dim": 16, "depth": 2, "heads": 2, "mlp_dim": 32}, 128, 1 / 50, True),
    ("imu_conformer", {"dim": 16, "heads": 2, "num_blocks": 2, "subsample": 4, "pool": "attention"}, 32, 4 / 50,
     False),
])
def test_imu_attention_shapes_and_seconds(tmp_path, model_name, hparams, tokens, token_seconds, has_cls):
    folder = save_untrained_run(tmp_path / "run", model_name, DataConfig(source="hapt"), (6, 128),
                                ["a", "b", "c"], IMU_CHANNELS, 50.0, "imu", hparams)
    predictor = load_run_dir(folder)
    pred = classify_file(predictor, _imu_csv(tmp_path / "rec.csv", 10.0))
    assert pred.starts.tolist() == [0, 64, 128, 192, 256, 320]  # window 128, stride 64 over 500 rows
    selfs = [a for a in pred.attention if a["kind"] == "self"]
    assert len(selfs) == 2
    for a in selfs:
        assert a["shape"] == [tokens + has_cls] * 2 and a["has_cls"] == has_cls and a["heads"] == 2
        assert a["tokens"] == tokens and a["token_seconds"] == pytest.approx(token_seconds)
        times = np.array(a["rollout"]["times"])
        assert times[0] == pytest.approx(token_seconds / 2) and times[-1] < 10.0
    layer = pred.layers[0]
    assert layer.rollout.shape == (6, tokens) and layer.received.shape == (6, 2, tokens)
    if model_name == "imu_conformer":
        assert pred.attention[-1]["kind"] == "pooling" and pred.attention[-1]["shape"] == [32]
    full = window_attention(predictor, pred, 3)
    assert full[0].weights_full.shape == (1, 2, tokens + has_cls, tokens + has_cls)


def test_audio_attention_downsamples_time_4x(tmp_path):
    cfg = DataConfig(source="fsdd", features="stack4", n_mels=40, hop_length=64, clip_seconds=1.0)
    folder = save_untrained_run(tmp_path / "run", "audio_resnet_attention", cfg, (4, 40, 126), list("0123"),
                                ["logmel", "mfcc", "delta", "delta2"], 8000.0, "spectrogram",
                                {"base_channels": 8, "d_model": 32, "heads": "4,4,2"})
    predictor = load_run_dir(folder)
    spans = predictor.spans(32)  # ceil(ceil(126 / 2) / 2) tokens
    step = 126 / 32 * 64 / 8000
    assert spans[1, 0] == pytest.approx(step - 32 / 8000)  # frames are centred: half a hop earlier
    assert spans[-1, 1] == pytest.approx(1.0)
    pred = classify_file(predictor, FSDD / "3_george_0.wav")
    kinds = [(a["kind"], a["shape"], a["heads"]) for a in pred.attention]
    assert kinds == [("self", [32, 32], 4), ("self", [32, 32], 4), ("self", [32, 32], 2), ("pooling", [32], 1)]


def test_rollout_points_at_the_attended_seconds():
    """A CLS model whose every layer attends from CLS to input token 40 puts the peak at
    40 samples (CLS excluded); a pooling model with weight on token 5 of 32 puts it at 5/32."""
    t, batch = 128, 2
    w = torch.full((batch, 2, t + 1, t + 1), 0.1 / t)
    w[:, :, :, 1 + 40] += 0.9
    layers = attention_summary([AttentionMap("l0", "self", w, has_cls=True)])
    assert layers[0].rollout.shape == (batch, t) and layers[0].rollout[0].argmax() == 40
    spans = token_spans(t, t, 1 / 50)
    times, values = stitch(layers[0].rollout, spans, np.array([0.0, 1.28]), 3.84)
    assert times[np.nanargmax(values)] == pytest.approx(40.5 / 50)
    pool = torch.full((1, 32), 0.5 / 31)
    pool[0, 5] = 0.5
    eye = torch.eye(32).expand(1, 1, 32, 32)
    layers = attention_summary([AttentionMap("l0", "self", eye), AttentionMap("pool", "pooling", pool)])
    assert layers[0].rollout[0].argmax() == 5 and layers[1].weights[0].argmax() == 5


# ---- Grad-CAM on a synthetic signal ------------------------------------------------------
def test_grad_cam_peaks_where_the_class_evidence_is():
    """Class 1 has a 6 Hz burst in samples 80-104 of 128; class 0 only noise. Grad-CAM on
    the last conv block and input-gradient saliency must peak inside that interval."""
    rng = np.random.default_rng(0)
    n, length, lo, hi = 256, 128, 80, 104
    x = rng.normal(0, 0.3, size=(n, 1, length)).astype(np.float32)
    y = np.arange(n) % 2
    burst = np.sin(2 * np.pi * 6 * np.arange(hi - lo) / 50).astype(np.float32)
    x[y == 1, 0, lo:hi] += 1.5 * burst
    torch.manual_seed(0)
    model = create("resnet1d", (1, length), 2, base_channels=8, num_stages=2, blocks_per_stage=1, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for step in range(60):
        idx = torch.randint(0, n, (64,))
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert (model(xt).argmax(1) == yt).float().mean() > 0.95
    ones = xt[yt == 1][:32]
    targets = torch.ones(len(ones), dtype=torch.long)
    cam, layer = grad_cam(model, ones, targets)
    assert layer == "stages.1" and cam.shape == (32, 64)  # last block, time halved once
    spans = token_spans(cam.shape[1], length, 1.0)  # in samples
    inside = (spans[:, 0] >= lo) & (spans[:, 1] <= hi)
    mean_cam = cam.mean(axis=0)
    assert lo <= spans[mean_cam.argmax(), 0] < hi
    assert mean_cam[inside].mean() > 3 * mean_cam[~inside].mean()
    sal = input_saliency(model, ones, targets).mean(axis=0)
    assert sal[lo:hi].mean() > 2 * np.concatenate([sal[:lo - 8], sal[hi + 8:]]).mean()


def test_non_attention_runs_explain_with_grad_cam_and_saliency_in_seconds(tmp_path):
    folder = save_untrained_run(tmp_path / "run", "resnet1d", DataConfig(source="hapt"), (6, 128), ["a", "b"],
                                IMU_CHANNELS, 50.0, "imu", {"base_channels": 8, "num_stages": 2})
    pred = classify_file(load_run_dir(folder), _imu_csv(tmp_path / "rec.csv", 6.0))
    out = pred.to_json()
    assert "attention" not in out
    methods = {s["method"]: s for s in out["saliency"]}
    assert methods["grad_cam"]["layer"] == "stages.1" and methods["grad_cam"]["tokens"] == 64
    assert methods["input_gradient"]["tokens"] == 128
    assert max(methods["input_gradient"]["times"]) < 6.0
    assert re.match(r"^[0-9.]+$", str(methods["grad_cam"]["times"][0]))
