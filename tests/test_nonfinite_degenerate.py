"""Non-finite values and degenerate signals (issue 18): a file is either refused with a line
that names the problem (file, sample or window, the limit) or answered with finite
probabilities — never "p=nan". Constant signals are answered with a warning the page and the
CLI show; short clips are padded with a note or refused below a stated minimum; stereo whose
channels cancel when averaged is mixed down to the louder channel, and the note says so."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from core.__main__ import main as cli
from core.config import DataConfig
from core.data.audio import decode_audio
from core.data.features import NonFiniteFeatures, featurize_audio
from core.errors import DataError
from core.infer import Ensemble, classify_bytes, classify_file, load_run
from core.infer.predict import run_windows
from tests.test_infer_bad_input import stored_untrained_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny models, one thread

ROOT = Path(__file__).resolve().parents[1]
GOOD_WAV = ROOT / "data" / "fsdd" / "recordings" / "3_george_0.wav"
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
RATE = 8000
AUDIO_CFG = DataConfig(source="fsdd", features="stack4", n_mels=32, hop_length=128)


@pytest.fixture(scope="module")
def audio_run() -> str:
    return stored_untrained_run("nonfinite-audio", "audio_resnet_attention", AUDIO_CFG, (4, 32, 63),
                                [str(d) for d in range(10)], ["logmel", "mfcc", "delta", "delta2"], RATE,
                                "spectrogram", {"base_channels": 8, "d_model": 32, "heads": "4"})


def imu_run(seed: int = 0) -> str:
    return stored_untrained_run(f"nonfinite-imu-{seed}", "resnet1d", DataConfig(source="hapt"), (6, 128),
                                ["WALKING", "SITTING"], CHANNELS, 50.0, "imu", {"base_channels": 8, "num_stages": 2},
                                seed)


@pytest.fixture(scope="module")
def audio(audio_run):
    return load_run(audio_run)


@pytest.fixture(scope="module")
def imu():
    return load_run(imu_run())


def wav_bytes(y: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def tone(seconds: float, rate: int = RATE, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return amplitude * np.sin(2 * np.pi * 440 * t)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def moving_imu(rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({c: rng.normal(size=rows) for c in CHANNELS})


def assert_trustworthy(pred) -> None:
    """An answer a person can rely on: every number shown is finite and the probabilities sum to 1."""
    probs = np.array(list(pred.probabilities.values()))
    assert np.isfinite(probs).all() and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(pred.window_probs).all()
    assert all(math.isfinite(v) for v in (pred.confidence, pred.margin, pred.entropy))
    json.dumps(pred.to_json(), allow_nan=False)  # raises on any NaN/inf the CLI would print


# ---- samples that are not numbers, or far outside [-1, 1] ------------------------------------
def test_float_wav_at_1e30_is_refused_saying_what_range_is_expected(audio):
    with pytest.raises(DataError, match=r"loud\.wav: float samples reach [-+]?1e\+30 .*expected in \[-1, 1\] and "
                                        r"the limit is ±100 .*SIGSCOPE_MAX_AUDIO_PEAK"):
        classify_bytes(audio, wav_bytes(np.sign(tone(1.0)) * 1e30, subtype="FLOAT"), "loud.wav")


def test_integer_scaled_float_audio_is_refused_and_the_limit_can_be_raised(audio, monkeypatch):
    scaled = wav_bytes(tone(1.0) * 32768, subtype="FLOAT")
    with pytest.raises(DataError, match="divided by 32768"):
        classify_bytes(audio, scaled, "scaled.wav")
    monkeypatch.setenv("SIGSCOPE_MAX_AUDIO_PEAK", "1e6")  # a person who means it: then it is classified
    assert_trustworthy(classify_bytes(audio, scaled, "scaled.wav"))


@pytest.mark.parametrize("value, shown", [(np.nan, "NaN"), (np.inf, r"\+inf"), (-np.inf, "-inf")])
def test_non_finite_samples_are_refused_naming_the_sample_and_its_second(audio, value, shown):
    y = tone(1.0)
    y[4000] = value
    with pytest.raises(DataError, match=rf"broken\.wav: sample 4000 \(0\.500 s\) is {shown}.*export it again"):
        classify_bytes(audio, wav_bytes(y, subtype="FLOAT"), "broken.wav")


def test_a_non_finite_sample_in_one_stereo_channel_names_that_channel(tmp_path):
    y = np.stack([tone(1.0), tone(1.0)], axis=1)
    y[2000, 1] = np.inf
    path = tmp_path / "stereo.wav"
    path.write_bytes(wav_bytes(y, subtype="FLOAT"))
    with pytest.raises(DataError, match=r"sample 2000 of channel 2 \(0\.250 s\) is \+inf"):
        decode_audio(path, RATE)


# ---- features, normalization and logits are checked after each step ---------------------------
def test_features_name_the_transform_and_the_clip_that_overflowed():
    clips = np.stack([tone(1.0), np.sign(tone(1.0)) * 1e30]).astype(np.float32)  # the decode check bypassed
    with pytest.raises(NonFiniteFeatures, match=r"the log-mel features are not finite \((NaN|inf) at clip 1 of the batch") as caught:
        featurize_audio(clips, RATE, AUDIO_CFG)
    assert caught.value.transform == "log-mel" and caught.value.clip == 1
    with pytest.raises(NonFiniteFeatures, match="the waveform features are not finite \\(NaN at 0.000 s into the clip"):
        featurize_audio(np.full(RATE, np.nan, np.float32), RATE, DataConfig(source="fsdd", features="raw"))
    assert np.isfinite(featurize_audio(tone(1.0), RATE, AUDIO_CFG)).all()


def test_a_window_whose_features_overflow_is_refused_naming_its_seconds(audio):
    signal = tone(3.0).astype(np.float32)
    signal[RATE:2 * RATE] = 1e30  # the second second: beyond what a float32 power spectrum holds
    starts = np.array([0, RATE // 2, RATE, 2 * RATE])
    with pytest.raises(DataError, match=r"x\.wav: window 1 \(0\.50-1\.50 s\): the log-mel features are not finite"):
        run_windows(audio, signal, starts, len(signal), "none", "x.wav")


def test_a_normalization_that_gives_inf_is_refused_naming_it(tmp_path):
    predictor = load_run(imu_run())
    predictor.normalization = {"kind": "zscore", "methods": ["zscore"] * 6, "channels": CHANNELS,
                               "center": [[0.0]] * 6, "scale": [[1e-40]] * 6}  # a damaged normalization.json
    with pytest.raises(DataError, match=r"walk\.csv: window 0 \(0\.00-2\.56 s\): the model input is not finite "
                                        r"after the run's normalization \(zscore\)"):
        classify_bytes(predictor, csv_bytes(moving_imu()), "walk.csv")


def test_nan_weights_are_refused_naming_the_weights_never_a_nan_probability():
    predictor = load_run(imu_run())
    name, weight = next(iter(predictor.model.named_parameters()))
    with torch.no_grad():
        weight.view(-1)[0] = float("nan")  # the checkpoint loaded, then a weight went bad
    with pytest.raises(DataError, match=rf"walk\.csv: window 0 \(0\.00-2\.56 s\): the model gave non-finite "
                                        rf"logits; its weights hold NaN/inf \({name}"):
        classify_bytes(predictor, csv_bytes(moving_imu()), "walk.csv")


def test_a_layer_that_outputs_nan_from_finite_weights_is_named(audio):
    predictor = load_run(audio.run_id)
    layer_name, layer = next((n, m) for n, m in predictor.model.named_modules() if isinstance(m, torch.nn.Conv2d))
    layer.register_forward_hook(lambda _m, _i, out: out * float("nan"))
    with pytest.raises(DataError, match=rf"digit\.wav: window 0 \(0\.00-1\.00 s\): the model gave non-finite logits "
                                        rf"from finite inputs .*first in layer {layer_name}"):
        classify_bytes(predictor, GOOD_WAV.read_bytes(), "digit.wav")


def test_an_ensemble_with_one_nan_member_is_refused(tmp_path):
    good, bad = load_run(imu_run(1)), load_run(imu_run(2))
    with torch.no_grad():
        next(bad.model.parameters()).fill_(float("inf"))
    path = tmp_path / "walk.csv"
    path.write_bytes(csv_bytes(moving_imu()))
    assert_trustworthy(classify_file(Ensemble([good, load_run(imu_run(3))]), path))
    with pytest.raises(DataError, match="non-finite logits; its weights hold NaN/inf"):
        classify_file(Ensemble([good, bad]), path)


# ---- degenerate signals -------------------------------------------------------------------------
def test_a_one_sample_wav_is_refused_with_the_minimum(audio):
    with pytest.raises(DataError, match=r"click\.wav: is 0\.1 ms long \(1 sample at 8000 Hz\); the shortest "
                                        r"recording classified is 12\.5% of the run's 1 s clip \(0\.125 s\)"):
        classify_bytes(audio, wav_bytes(np.array([0.5])), "click.wav")


def test_the_minimum_length_is_an_eighth_of_the_clip(audio):
    with pytest.raises(DataError, match="shortest recording classified"):
        classify_bytes(audio, wav_bytes(tone(999 / RATE)), "short.wav")
    pred = classify_bytes(audio, wav_bytes(tone(1000 / RATE)), "short.wav")
    assert_trustworthy(pred)


def test_a_short_wav_is_zero_padded_with_a_visible_note(audio, audio_run, tmp_path, capsys):
    data = wav_bytes(tone(0.5))
    pred = classify_bytes(audio, data, "half.wav")
    assert_trustworthy(pred)
    assert any("0.50 s is shorter than the run's 1 s clip: zero-padded" in n for n in pred.notes)
    (tmp_path / "half.wav").write_bytes(data)
    assert cli(["predict", "--run", audio_run, str(tmp_path / "half.wav")]) == 0
    assert "half.wav: note: 0.50 s is shorter than the run's 1 s clip" in capsys.readouterr().out


def test_dc_audio_is_answered_with_a_warning_that_it_holds_no_information(audio, audio_run, tmp_path, capsys):
    data = wav_bytes(np.full(RATE, 0.5))
    pred = classify_bytes(audio, data, "dc.wav")
    assert_trustworthy(pred)
    assert len(pred.warnings) == 1 and "constant (DC) level" in pred.warnings[0]
    assert "holds no information" in pred.to_json()["warnings"][0]
    assert classify_bytes(audio, GOOD_WAV.read_bytes(), "digit.wav").warnings == []  # a real recording: none
    (tmp_path / "dc.wav").write_bytes(data)
    assert cli(["predict", "--run", audio_run, str(tmp_path / "dc.wav")]) == 0
    assert "dc.wav: warning: the audio is a constant (DC) level" in capsys.readouterr().out


def test_a_constant_imu_csv_is_answered_with_a_warning(imu):
    still = pd.DataFrame({c: np.full(400, v) for c, v in zip(CHANNELS, [0.0, 0.0, 9.81, 0.0, 0.0, 0.0])})
    pred = classify_bytes(imu, csv_bytes(still), "still.csv")
    assert_trustworthy(pred)
    assert pred.warnings and "every channel holds one value over the whole file" in pred.warnings[0]
    lying = pd.DataFrame({c: np.full(400, 1e6 if c == "acc_z" else 0.0) for c in CHANNELS})  # odd units, still
    pred = classify_bytes(imu, csv_bytes(lying), "lying.csv")
    assert_trustworthy(pred)
    assert "holds no information" in pred.warnings[0]


def test_a_dead_imu_channel_is_named_in_a_warning(imu):
    frame = moving_imu()
    frame["gyro_y"] = 0.0
    pred = classify_bytes(imu, csv_bytes(frame), "dead_axis.csv")
    assert_trustworthy(pred)
    assert len(pred.warnings) == 1 and "channel(s) gyro_y hold one value" in pred.warnings[0]
    assert classify_bytes(imu, csv_bytes(moving_imu()), "walk.csv").warnings == []


def test_inverted_stereo_is_classified_from_one_channel_and_says_so(audio, tmp_path):
    y = tone(1.0)
    data = wav_bytes(np.stack([y, -y], axis=1), subtype="FLOAT")
    pred = classify_bytes(audio, data, "inverted.wav")  # was refused as "silent": (L+R)/2 cancelled
    assert_trustworthy(pred)
    note = next(n for n in pred.notes if n.startswith("stereo"))
    assert "channels cancel when averaged (correlation -1.00" in note and note.endswith("used the left channel")
    (tmp_path / "inverted.wav").write_bytes(data)
    mono = decode_audio(tmp_path / "inverted.wav", RATE)
    np.testing.assert_allclose(mono, y, atol=1e-6)  # the left channel itself, not a cancelled average


def test_stereo_that_does_not_cancel_is_still_averaged(tmp_path):
    y = tone(1.0)
    other = 0.3 * np.sin(2 * np.pi * 660 * np.arange(RATE) / RATE)  # uncorrelated with y
    for name, right, expected in [("same.wav", y, y), ("one_side.wav", np.zeros_like(y), y / 2),
                                  ("other_tone.wav", other, (y + other) / 2)]:
        path = tmp_path / name
        path.write_bytes(wav_bytes(np.stack([y, right], axis=1), subtype="FLOAT"))
        notes: list[str] = []
        np.testing.assert_allclose(decode_audio(path, RATE, notes=notes), expected, atol=1e-6)
        assert notes == ["stereo averaged to mono"], name


def test_the_cli_never_prints_a_nan_probability(audio_run, tmp_path, capsys):
    (tmp_path / "loud.wav").write_bytes(wav_bytes(np.sign(tone(1.0)) * 1e30, subtype="FLOAT"))
    (tmp_path / "nan.wav").write_bytes(wav_bytes(np.where(np.arange(RATE) == 10, np.nan, tone(1.0)), subtype="FLOAT"))
    code = cli(["predict", "--run", audio_run, str(tmp_path / "loud.wav"), str(tmp_path / "nan.wav"),
                str(GOOD_WAV), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert "expected in [-1, 1]" in out[0]["error"] and "sample 10 (0.001 s) is NaN" in out[1]["error"]
    assert "error" not in out[2] and np.isfinite(list(out[2]["probabilities"].values())).all()
    json.dumps(out, allow_nan=False)  # no NaN/inf anywhere in what was printed


def _classify_page_detail(run_id: str, data: bytes, name: str) -> None:
    """The Classify page's detail view of one upload (an AppTest script)."""
    from core.infer import classify_bytes, load_run
    from dashboard import classify_parts as parts

    predictor = load_run(run_id)
    item = parts.Item(name, data, prediction=classify_bytes(predictor, data, name))
    parts.show_prediction(predictor, item, key="detail")
    import streamlit as st
    st.dataframe(parts.batch_table([item, parts.Item("bad.wav", b"", error="bad.wav: refused")]), key="batch")


def test_the_classify_page_shows_the_warning_above_the_answer(audio_run):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_classify_page_detail, args=(audio_run, wav_bytes(np.full(RATE, 0.5)), "dc.wav"),
                               default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert [w.value for w in at.warning] and "holds no information" in at.warning[0].value
    table = at.dataframe[0].value
    assert "holds no information" in table.loc[0, "warning"] and table.loc[1, "error"] == "bad.wav: refused"
