"""Synthetic espeak-ng voices added to FSDD: real audio, named like FSDD, training split only."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from core import data
from core.config import DataConfig
from core.data import tts
from core.data.audio_folder import load_fsdd
from core.data.examples import Examples
from core.data.splits import split_indices
from core.errors import DataError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (`make test` installs it as root: "
                                         "apt-get install espeak-ng)")


@needs_espeak
def test_synthesized_digits_are_speech_at_8khz_named_like_fsdd(tmp_path):
    folder = tts.synthesize_digits(3, cache_dir=tmp_path)
    files = tts.digit_files(folder, 3)
    assert [f.name for f in files[:3]] == ["0_ttsaaa_0.wav", "1_ttsaaa_0.wav", "2_ttsaaa_0.wav"]
    durations = []
    for f in files:
        y, sr = sf.read(f, dtype="float32")
        assert sr == 8000 and y.ndim == 1
        durations.append(len(y) / sr)
        assert np.abs(y).max() > 0.05  # sound, not silence
    # a spoken digit, trimmed like FSDD's recordings (about 0.3-0.9 s), not a clip full of silence
    assert 0.15 < np.median(durations) < 1.2
    # the voices differ: one voice's "seven" is not another's
    a, _ = sf.read(folder / "7_ttsaaa_0.wav")
    b, _ = sf.read(folder / "7_ttsaab_0.wav")
    assert len(a) != len(b) or not np.allclose(a, b)


@needs_espeak
def test_voices_are_a_fixed_table_and_a_second_call_reuses_the_files(tmp_path):
    table = tts.voice_table()
    assert table == tts.voice_table()
    assert len({v["voice"] for v in table}) == len(table) > 300  # 7 accents x ~90 variants
    assert not any("robo" in v["voice"].lower() for v in table)
    folder = tts.synthesize_digits(2, cache_dir=tmp_path)
    stamp = (folder / "3_ttsaab_0.wav").stat().st_mtime_ns
    calls = []
    assert tts.synthesize_digits(2, cache_dir=tmp_path, progress=lambda d, n: calls.append(d)) == folder
    assert calls == [] and (folder / "3_ttsaab_0.wav").stat().st_mtime_ns == stamp


@needs_espeak
def test_fsdd_with_tts_voices_trains_on_them_and_never_tests_or_validates_on_them(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGSCOPE_CACHE_DIR", str(tmp_path))
    for split in ("subject", "fixed", "random"):
        cfg = DataConfig(source="fsdd", options={"tts_voices": 4}, split=split, test_groups=["jackson"] if split ==
                         "subject" else [], val_fraction=0.2, test_fraction=0.2)
        bundle = data.load(cfg)
        assert bundle.info["tts"]["voices"] == 4 and bundle.info["tts"]["files"] == 40
        train_groups = set(bundle.train.groups.astype(str))
        assert sum(g.startswith("tts") for g in train_groups) == 4
        for part in (bundle.val, bundle.test):
            assert not any(str(g).startswith("tts") for g in part.groups)
        plain = data.load(DataConfig(source="fsdd", split=split, test_groups=cfg.test_groups, val_fraction=0.2,
                                     test_fraction=0.2))
        # val and test are exactly the split of the real recordings alone; train gains the 40 synthetic clips
        assert list(bundle.test.ids) == list(plain.test.ids) and list(bundle.val.ids) == list(plain.val.ids)
        assert len(bundle.train) == len(plain.train) + 40


def test_train_only_examples_go_to_train_in_every_split():
    n = 40
    train_only = np.zeros(n, bool)
    train_only[30:] = True
    ex = Examples(x=np.zeros((n, 1, 4), np.float32), y=np.arange(n) % 2, groups=np.array([f"g{i % 5}" for i in
                  range(30)] + ["synth"] * 10), ids=np.array([str(i) for i in range(n)]), class_names=["a", "b"],
                  channel_names=["c"], sample_rate=1.0, signal="imu", fixed_test=np.arange(n) < 6,
                  train_only=train_only)
    for split in ("random", "stratified", "subject", "fixed"):
        train, val, test = split_indices(ex, DataConfig(split=split, val_fraction=0.2, test_fraction=0.2))
        assert set(range(30, 40)) <= set(train.tolist())
        assert not set(range(30, 40)) & set(val.tolist() + test.tolist())
        assert len(set(train) | set(val) | set(test)) == n and len(train) + len(val) + len(test) == n
    _, _, test = split_indices(ex, DataConfig(split="fixed", val_fraction=0.2))
    assert test.tolist() == list(range(6))


def test_missing_espeak_is_a_clear_message(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="espeak-ng.*apt-get install espeak-ng"):
        load_fsdd(DataConfig(source="fsdd", options={"tts_voices": 2}))


@needs_espeak
@pytest.mark.parametrize("voices", [0.5, -1, 100000])
def test_impossible_voice_counts_are_refused(voices, tmp_path):
    with pytest.raises(DataError, match="tts_voices"):
        tts.synthesize_digits(voices, cache_dir=tmp_path)


@needs_espeak
def test_cli_inspect_says_how_many_synthetic_clips_train(capsys, tmp_path, monkeypatch):
    from core.__main__ import main

    monkeypatch.setenv("SIGSCOPE_CACHE_DIR", str(tmp_path))
    assert main(["data", "inspect", "fsdd", "--set", "options.tts_voices=2", "--set", "split=subject",
                 "--set", 'test_groups=["jackson"]']) == 0
    out = capsys.readouterr().out
    assert "synthetic: 20 clips from 2 espeak-ng" in out and "training split only" in out


@needs_espeak
def test_the_feature_cache_key_covers_the_synthetic_voices_wavs(tmp_path, monkeypatch):
    """A new espeak-ng makes a new voice folder; the cached clips must not outlive the WAVs they came from."""
    from core.data.audio_folder import fsdd_files
    from core.data.cache import cache_key
    monkeypatch.setenv("SIGSCOPE_CACHE_DIR", str(tmp_path))
    plain = fsdd_files(DataConfig(source="fsdd"))
    voiced = fsdd_files(DataConfig(source="fsdd", options={"tts_voices": 2}))
    assert voiced[:len(plain)] == plain and len(voiced) == len(plain) + 20
    before = cache_key(voiced, {})
    wav = voiced[-1]
    y, sr = sf.read(wav)
    sf.write(wav, np.concatenate([y, np.zeros(80)]), sr)  # the same name, different audio
    assert cache_key(voiced, {}) != before
    assert fsdd_files(DataConfig(source="fsdd", options={"tts_voices": 2})) == voiced  # made once, reused


needs_flite = pytest.mark.skipif(shutil.which("flite") is None,
                                 reason="flite is not installed (`make test` installs it as root: apt-get install flite)")


@needs_flite
def test_flite_voices_are_people_with_their_own_pitch_rate_and_tract(tmp_path):
    import librosa

    folder = tts.synthesize_digits(8, cache_dir=tmp_path, engine_name="flite")
    files = tts.digit_files(folder, 8, "flite")
    assert files[0].name == "0_fltaaa_0.wav" and len(files) == 80
    table = tts.flite_table()
    assert table == tts.flite_table() and [v["voice"] for v in table[:4]] == ["kal", "awb", "rms", "slt"]
    for f in files:
        y, sr = sf.read(f, dtype="float32")
        assert sr == 8000 and 0.15 < len(y) / sr < 1.5 and np.abs(y).max() > 0.05
    # the drawn pitch is what comes out: slt (a woman) at her f0 factor, kal (a man) at his
    def f0(name):
        y, sr = sf.read(folder / name, dtype="float32")
        track, _, _ = librosa.pyin(y, fmin=60, fmax=400, sr=sr, frame_length=512)
        return float(np.nanmedian(track))
    woman, man = table[3], table[0]
    assert abs(f0("3_fltaad_0.wav") - woman["f0"]) < 0.25 * woman["f0"]
    assert abs(f0("3_fltaaa_0.wav") - man["f0"]) < 0.25 * man["f0"]
    # a second call makes nothing new; espeak-ng's voices live in another folder
    assert tts.synthesize_digits(8, cache_dir=tmp_path, engine_name="flite") == folder


@needs_flite
@needs_espeak
def test_fsdd_with_both_engines_trains_on_them_and_keeps_val_and_test_real(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGSCOPE_CACHE_DIR", str(tmp_path))
    cfg = DataConfig(source="fsdd", options={"tts_voices": 3, "flite_voices": 4}, split="subject",
                     test_groups=["jackson"], val_fraction=0.2)
    bundle = data.load(cfg)
    tts_info = bundle.info["tts"]
    assert tts_info["files"] == 70 and tts_info["voices"] == 7 and "flite" in tts_info["engine"]
    groups = set(bundle.train.groups.astype(str))
    assert sum(g.startswith("flt") for g in groups) == 4 and sum(g.startswith("tts") for g in groups) == 3
    plain = data.load(DataConfig(source="fsdd", split="subject", test_groups=["jackson"], val_fraction=0.2))
    assert list(bundle.test.ids) == list(plain.test.ids) and list(bundle.val.ids) == list(plain.val.ids)
    assert len(bundle.train) == len(plain.train) + 70


def test_missing_flite_is_a_clear_message(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="flite.*apt-get install flite"):
        load_fsdd(DataConfig(source="fsdd", options={"flite_voices": 2}))
