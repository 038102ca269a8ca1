"""core.data pipeline on generated data: shapes, splits, normalization, augmentation, cache, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core import data
from core.config import DataConfig, RunConfig
from core.data.augment import AUGMENTATIONS
from core.data.windowing import window_labels

ROOT = Path(__file__).resolve().parents[1]


def test_default_run_config_loads_synthetic_imu_windows():
    bundle = data.load(RunConfig().data)
    x, y = bundle.train[0]
    assert bundle.input_kind == "imu" and bundle.input_shape == (6, 128)
    assert x.dtype == torch.float32 and tuple(x.shape) == (6, 128) and isinstance(y, int)
    sizes = bundle.info["split_sizes"]
    assert sizes["train"] + sizes["val"] + sizes["test"] == bundle.info["n_examples"] == 600
    assert len(bundle.train.groups) == len(bundle.train)
    assert any(s["name"] == "hapt" and s["signal"] == "imu" for s in data.list_sources())


def test_training_split_is_normalized_to_zero_mean_unit_std_per_channel():
    bundle = data.load(DataConfig())
    train = torch.stack([bundle.train[i][0] for i in range(len(bundle.train))]).numpy()
    assert np.allclose(train.mean(axis=(0, 2)), 0, atol=1e-4)
    assert np.allclose(train.std(axis=(0, 2)), 1, atol=1e-3)


def test_normalization_statistics_come_from_the_training_split_only():
    bundle = data.load(DataConfig(split="subject"))
    norm = bundle.normalization
    center = np.asarray(norm["center"])[:, 0]
    train_mean = bundle.train.x.mean(axis=(0, 2))
    everything = np.concatenate([bundle.train.x, bundle.val.x, bundle.test.x]).mean(axis=(0, 2))
    assert np.allclose(center, train_mean, atol=1e-5)
    assert not np.allclose(center, everything, atol=1e-3)  # subjects differ in offset, so the test can fail
    # inference reproduces the training pipeline exactly from the stored JSON
    stored = json.loads(json.dumps(norm))
    assert np.array_equal(data.apply_normalization(bundle.test.x[0], stored), bundle.test[0][0].numpy())


def test_robust_normalization_uses_median_and_mad():
    bundle = data.load(DataConfig(normalization="robust", max_examples=200))
    x = bundle.train.x
    median = np.median(x, axis=(0, 2))
    assert np.allclose(np.asarray(bundle.normalization["center"])[:, 0], median, atol=1e-5)
    assert bundle.normalization["methods"] == ["robust"] * 6


def _spoken(seconds_of_padding: float, sr: int = 8000) -> np.ndarray:
    """A 0.3 s 'utterance' (two formant-like tones, gliding) followed by zero padding."""
    t = np.arange(int(0.3 * sr)) / sr
    y = np.sin(2 * np.pi * (300 + 400 * t) * t) + 0.5 * np.sin(2 * np.pi * 1800 * t)
    return np.concatenate([0.3 * y, np.zeros(int(seconds_of_padding * sr))]).astype(np.float32)


@pytest.mark.parametrize("features, c0", [("mfcc", True), ("logmel", True), ("stack4", True)])
def test_per_utterance_statistics_ignore_the_padding(features, c0):
    from core.data.normalize import audio_energy_rule, fit_normalization, voiced_frames

    cfg = DataConfig(source="synthetic_audio", features=features, n_mels=32, n_mfcc=13, mfcc_c0=c0)
    short, long = (data.featurize_audio(_spoken(pad), 8000, cfg) for pad in (0.2, 0.7))
    norm = fit_normalization(short[None], "per_utterance",
                             energy=audio_energy_rule(features, c0, cfg.n_mels))
    voiced = voiced_frames(short, norm["energy"])
    assert 36 <= voiced.sum() <= 42 and not voiced[-15:].any()  # 0.3 s = 37.5 hops of 8 ms; padding is silence
    n = int(voiced.sum())
    a, b = data.apply_normalization(short, norm), data.apply_normalization(long, norm)
    assert np.allclose(a[..., :n], b[..., :n], atol=1e-4)  # more padding does not move the utterance's features
    pa, pb = (data.apply_normalization(f, {"kind": "per_example"}) for f in (short, long))
    assert not np.allclose(pa[..., :n], pb[..., :n], atol=1e-2)  # per_example does: padding sets its statistics
    batch = data.apply_normalization(np.stack([short, short * 0.5]), norm)
    assert np.allclose(batch[0], a, atol=1e-5)


def test_per_utterance_is_refused_where_there_is_no_energy_to_read():
    with pytest.raises(data.DataError, match="per_utterance.*audio features"):
        data.load(DataConfig(normalization="per_utterance"))  # IMU windows
    with pytest.raises(data.DataError, match="per_utterance"):
        data.load(DataConfig(source="synthetic_audio", features="mfcc", mfcc_c0=False, normalization="per_utterance"))


def test_per_utterance_round_trips_through_the_stored_json():
    bundle = data.load(DataConfig(source="synthetic_audio", features="mfcc", normalization="per_utterance",
                                  clip_seconds=0.5))
    stored = json.loads(json.dumps(bundle.normalization))
    assert stored["kind"] == "per_utterance" and stored["energy"]["rows"] == "first"
    assert np.array_equal(data.apply_normalization(bundle.test.x[0], stored), bundle.test[0][0].numpy())


@pytest.mark.parametrize("split", ["random", "stratified", "subject"])
def test_splits_are_disjoint_seeded_and_cover_everything(split):
    cfg = DataConfig(split=split, split_seed=3)
    a, b = data.load(cfg), data.load(cfg)
    ids = [set(ds.ids.tolist()) for ds in (a.train, a.val, a.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert sum(map(len, ids)) == a.info["n_examples"]
    assert a.test.ids.tolist() == b.test.ids.tolist()
    if split == "subject":
        groups = [set(ds.groups.tolist()) for ds in (a.train, a.val, a.test)]
        assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    if split == "stratified":  # every class in the test split in proportion
        counts = np.bincount(a.test.y, minlength=4)
        assert counts.min() == counts.max() == 30


def test_subject_split_honours_named_test_groups():
    bundle = data.load(DataConfig(split="subject", test_groups=["s01", "s02"], val_groups=["s03"]))
    assert set(bundle.test.groups) == {"s01", "s02"} and set(bundle.val.groups) == {"s03"}
    with pytest.raises(data.DataError, match="not in the data"):
        data.load(DataConfig(split="subject", test_groups=["nobody"]))


def test_leave_one_group_out_can_validate_on_the_training_groups():
    bundle = data.load(DataConfig(split="subject", test_groups=["s01"], val_from="examples", val_fraction=0.2))
    assert set(bundle.test.groups) == {"s01"}
    assert set(bundle.train.groups) == set(bundle.val.groups) == set(bundle.train.groups) - {"s01"}
    assert not set(bundle.train.ids.tolist()) & set(bundle.val.ids.tolist())
    assert abs(len(bundle.val) / (len(bundle.train) + len(bundle.val)) - 0.2) < 0.05
    with pytest.raises(data.DataError, match="val_from"):
        data.load(DataConfig(split="subject", val_from="speakers"))


def test_window_labels_majority_drop_mixed_and_unlabeled():
    labels = np.array([0] * 6 + [1] * 2 + [-1] * 4)
    starts, label, keep = window_labels(labels, window=4, stride=2, mode="majority")
    assert starts.tolist() == [0, 2, 4, 6, 8]
    assert label[:3].tolist() == [0, 0, 0] and keep.tolist() == [True, True, True, False, False]
    _, _, keep = window_labels(labels, window=4, stride=2, mode="drop_mixed")
    assert keep.tolist() == [True, True, False, False, False]


def test_window_stream_cuts_t_by_c_into_windows():
    stream = np.arange(20, dtype=np.float32).reshape(10, 2)  # (T=10, C=2)
    windows = data.window_stream(stream, window=4, stride=3)
    assert windows.shape == (3, 2, 4)
    assert windows[1, 0].tolist() == [6, 8, 10, 12] and windows[1, 1].tolist() == [7, 9, 11, 13]


@pytest.mark.parametrize("features,shape,kind", [
    ("raw", (1, 4000), "waveform"), ("logmel", (32, 63), "imu"), ("mfcc", (13, 63), "imu"),
    ("mfcc_deltas", (39, 63), "imu"), ("stack4", (4, 32, 63), "spectrogram")])
def test_audio_features_have_the_documented_shapes(features, shape, kind):
    cfg = DataConfig(source="synthetic_audio", sample_rate=8000, clip_seconds=0.5, features=features,
                     n_mels=32, n_fft=256, hop_length=64, n_mfcc=13, options={"per_class": 10})
    bundle = data.load(cfg)
    assert bundle.input_kind == kind and bundle.input_shape == shape  # frames = 1 + 4000 // 64
    assert tuple(bundle.train[0][0].shape) == shape
    assert data.featurize_audio(np.zeros(4000, np.float32), 8000, cfg).shape == shape


def test_stack4_without_c0_keeps_n_mels_rows_and_uses_mad_for_deltas():
    cfg = DataConfig(source="synthetic_audio", features="stack4", n_mels=24, mfcc_c0=False, clip_seconds=0.25,
                     options={"per_class": 8})
    bundle = data.load(cfg)
    assert bundle.input_shape == (4, 24, 32)
    assert bundle.normalization["methods"] == ["zscore", "zscore", "robust", "robust"]
    mfcc_no_c0 = data.featurize_audio(np.random.default_rng(0).normal(size=2000).astype(np.float32), 8000,
                                      DataConfig(features="mfcc", n_mfcc=12, n_mels=24, mfcc_c0=False))
    with_c0 = data.featurize_audio(np.random.default_rng(0).normal(size=2000).astype(np.float32), 8000,
                                   DataConfig(features="mfcc", n_mfcc=13, n_mels=24, mfcc_c0=True))
    assert np.allclose(mfcc_no_c0, with_c0[1:], atol=1e-4)  # the same cepstra minus c0


def test_mfcc_deltas_are_the_mfccs_then_how_they_move():
    from core.data.features import _delta, feature_channel_names

    y = _spoken(0.2)
    cfg = DataConfig(features="mfcc_deltas", n_mfcc=13, n_mels=32)
    stacked = data.featurize_audio(y, 8000, cfg)
    mfcc = data.featurize_audio(y, 8000, DataConfig(features="mfcc", n_mfcc=13, n_mels=32))
    assert stacked.shape == (39, mfcc.shape[1])
    assert np.allclose(stacked[:13], mfcc) and np.allclose(stacked[13:26], _delta(mfcc, 1), atol=1e-5)
    assert np.allclose(stacked[26:], _delta(mfcc, 2), atol=1e-5)
    ramp = np.linspace(0, 1, 50, dtype=np.float32)[None].repeat(3, 0)  # a steady rise: constant delta
    assert np.allclose(_delta(ramp, 1)[:, 2:-2], 1 / 49, atol=1e-6)
    names = feature_channel_names(cfg, 39)
    assert names[:2] == ["mfcc0", "mfcc1"] and names[13] == "d_mfcc0" and names[-1] == "dd_mfcc12"
    batch = data.featurize_audio(np.stack([y, y]), 8000, cfg)
    assert np.allclose(batch[1], stacked, atol=1e-5)


IMU_AUGS = [n for n, s in AUGMENTATIONS.items() if "imu" in s.signals]
AUDIO_AUGS = [n for n, s in AUGMENTATIONS.items() if "audio" in s.signals]


@pytest.mark.parametrize("name", IMU_AUGS)
def test_imu_augmentations_keep_shape_and_label_and_change_the_signal(name):
    plain = data.load(DataConfig(max_examples=40))
    augmented = data.load(DataConfig(max_examples=40, augment=[{"name": name, "p": 1.0}]))
    torch.manual_seed(0)
    changed = False
    for i in range(8):
        (xa, ya), (xp, yp) = augmented.train[i], plain.train[i]
        assert xa.shape == xp.shape == torch.Size(augmented.input_shape) and ya == yp
        changed |= not torch.allclose(xa, xp)
    assert changed
    assert torch.equal(augmented.val[0][0], plain.val[0][0])  # val/test never augmented


@pytest.mark.parametrize("name", AUDIO_AUGS)
def test_audio_augmentations_keep_shape_and_label_and_change_the_features(name):
    cfg = dict(source="synthetic_audio", features="logmel", n_mels=32, clip_seconds=0.5,
               options={"per_class": 6})
    plain = data.load(DataConfig(**cfg))
    augmented = data.load(DataConfig(**cfg, augment=[{"name": name, "p": 1.0}]))
    changed = False
    for i in range(4):
        (xa, ya), (xp, yp) = augmented.train[i], plain.train[i]
        assert xa.shape == xp.shape == (32, 63) and ya == yp
        changed |= not torch.allclose(xa, xp, atol=1e-4)
    assert changed


def test_augmentation_misuse_is_refused_with_the_reason():
    with pytest.raises(data.DataError, match="for audio data, not imu"):
        data.load(DataConfig(augment=[{"name": "pitch_shift", "p": 1.0}]))
    with pytest.raises(data.DataError, match="channel triples"):
        data.load(DataConfig(options={"channels": 4}, augment=[{"name": "rotation", "p": 1.0}]))
    with pytest.raises(data.DataError, match="unknown param"):
        data.load(DataConfig(augment=[{"name": "jitter", "p": 1.0, "params": {"sigmaa": 1}}]))


def test_feature_cache_hit_skips_extraction_and_file_change_invalidates(tmp_path):
    folder = tmp_path / "clips"
    import soundfile as sf
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for k in range(3):
            sf.write(folder / label / f"{k}.wav", rng.normal(0, 0.1, 4000).astype(np.float32), 8000)
    cfg = DataConfig(source="audio_folder", path=str(folder), features="logmel", split="random",
                     clip_seconds=0.5, n_mels=32)
    first = data.load(cfg, cache_dir=tmp_path / "cache")
    second = data.load(cfg, cache_dir=tmp_path / "cache")
    assert first.info["cache"] == "miss" and second.info["cache"] == "hit"
    assert np.array_equal(first.train.x, second.train.x)
    sf.write(folder / "a" / "0.wav", rng.normal(0, 0.1, 4000).astype(np.float32), 8000)
    assert data.load(cfg, cache_dir=tmp_path / "cache").info["cache"] == "miss"


def test_cli_data_list_and_inspect_json(capsys):
    from core.__main__ import main

    def cli(*args):
        code = main(["data", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = cli("list", "--json")
    assert code == 0
    names = {s["name"] for s in json.loads(out)["sources"]}
    assert {"hapt", "wisdm", "imu_csv", "uea", "audio_folder", "fsdd", "synthetic_imu", "synthetic_audio"} <= names
    code, out, _ = cli("inspect", "synthetic_imu", "--set", "split=subject", "--set", "options.n_classes=3", "--json")
    assert code == 0
    report = json.loads(out)
    assert [c["count"] for c in report["classes"]] == [150, 150, 150]
    assert report["channels"][:3] == ["acc_x", "acc_y", "acc_z"] and report["sample_rate"] == 50
    assert sum(report["split_sizes"].values()) == report["window_count"] == 450
    code, _, err = cli("inspect", "nosuch", "--json")
    assert code == 2 and "data.source='nosuch' is not a known choice" in err


def test_logmel_matches_librosa_and_batches_match_single_clips():
    import librosa
    rng = np.random.default_rng(1)
    clips = (0.1 * rng.normal(size=(3, 4000))).astype(np.float32)
    cfg = DataConfig(features="logmel", n_mels=32, n_fft=256, hop_length=64)
    reference = np.log(librosa.feature.melspectrogram(y=clips[0], sr=8000, n_fft=256, hop_length=64, n_mels=32) + 1e-6)
    assert np.allclose(data.featurize_audio(clips[0], 8000, cfg), reference, atol=1e-3)
    stack = DataConfig(features="stack4", n_mels=32)
    assert np.allclose(data.featurize_audio(clips, 8000, stack)[2], data.featurize_audio(clips[2], 8000, stack), atol=1e-5)


def test_window_and_stride_in_seconds_use_the_source_rate():
    bundle = data.load(DataConfig(source="hapt", window="2.56s", stride="1.28s", max_examples=50))
    assert bundle.input_shape == (6, 128) and bundle.info["stride"] == 64
    with pytest.raises(data.DataError, match="in seconds need the sampling rate"):
        data.load(DataConfig(source="imu_csv", path=str(ROOT / "data"), window="2s"))


def test_the_phase_vocoder_stretch_keeps_pitch_and_scales_duration():
    """core.data.augment.stretch is librosa.effects.time_stretch's algorithm in numpy (no numba
    compile in each run process): rate 1 gives the input back, the length scales by 1 / rate,
    and a tone keeps its frequency."""
    from core.data.augment import stretch

    sr, f0 = 8000, 440.0
    t = np.arange(sr) / sr
    tone = np.sin(2 * np.pi * f0 * t).astype(np.float32)
    same = stretch(tone, 1.0)
    assert same.shape == tone.shape
    assert np.max(np.abs(same[256:-256] - tone[256:-256])) < 1e-3  # away from the zero-padded edges
    for rate in (0.8, 1.25):
        out = stretch(tone, rate)
        assert out.shape == (round(sr / rate),)
        spectrum = np.abs(np.fft.rfft(out[512:-512] * np.hanning(len(out) - 1024)))
        peak_hz = np.argmax(spectrum) * sr / (len(out) - 1024)
        assert abs(peak_hz - f0) < 10, (rate, peak_hz)
    two = stretch(np.stack([tone, -tone]), 1.25)  # (..., T): each row alike
    assert two.shape == (2, round(sr / 1.25)) and np.allclose(two[0], -two[1], atol=1e-5)
