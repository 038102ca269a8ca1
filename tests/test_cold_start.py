"""Cold start: `python -m core profile M` and `python -m core predict` import only what they use.

A fresh process is started the way a person starts it and `-X importtime` lists every module it
imported: a heavy library that creeps back onto these paths fails here (the times themselves
are not asserted: the machine may be busy). Plus the numpy replacements that keep librosa and
scipy off the audio path, checked against the libraries themselves.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import ROOT

HAPT = ROOT / "data" / "hapt" / "hapt_subjects01-04.csv.gz"
CLIP = ROOT / "data" / "fsdd" / "recordings" / "0_george_0.wav"
# never on these paths: the fvcore cross-check, scikit-learn, plotting, the dashboard, and
# torch.compile's machinery (torch imports it on first use of FlopCounterMode or the meta device)
NEVER = ("fvcore", "sklearn", "plotly", "matplotlib", "streamlit", "optuna", "aeon", "onnxruntime", "torch._dynamo")
AUDIO_STACK = ("librosa", "numba", "scipy")  # features are numpy (core.data.features)


def imported_modules(*argv: str) -> tuple[set[str], str]:
    """The modules a fresh `python -X importtime -m core ARGV...` imported, and its stdout."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "core", *argv], cwd=ROOT, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = {m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", proc.stderr, re.M)}
    assert "torch" in modules  # the listing was parsed
    return modules, proc.stdout


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


def test_profile_card_imports_no_cross_check_training_or_data_stack():
    modules, out = imported_modules("profile", "resnet1d", "--batch", "4", "--json")
    assert loaded(modules, NEVER + AUDIO_STACK + ("pandas",)) == []
    card = json.loads(out)
    assert card["latency_ms"]["measured"] is None and card["cross_check"] == {}  # on request only
    assert card["params"]["total"] > 0 and card["flops"] > 0 and card["memory"]["total"] > 0
    assert card["latency_ms"]["estimated"] > 0


def test_profile_measures_and_cross_checks_on_request(capsys):
    from core.__main__ import main

    assert main(["profile", "resnet1d", "--batch", "2", "--measure", "--cross-check", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["latency_ms"]["measured"] > 0
    assert card["cross_check"]["fvcore_flops"] is not None or card["cross_check"].get("error")
    assert main(["profile", "resnet1d", "--batch", "2"]) == 0  # the text card says how to get the rest
    assert "not measured (add --measure)" in capsys.readouterr().out


@pytest.fixture(scope="module")
def imu_csv(tmp_path_factory):
    frame = pd.read_csv(HAPT)
    path = tmp_path_factory.mktemp("cold") / "walk.csv"
    frame[frame["subject"] == 4].iloc[:1500].to_csv(path, index=False)  # 30 s at 50 Hz
    return path


def test_predict_of_an_imu_csv_imports_no_audio_or_training_extras(imu_csv):
    modules, out = imported_modules("predict", "--run", "demo-imu", str(imu_csv), "--json")
    assert loaded(modules, NEVER + AUDIO_STACK + ("soundfile",)) == []
    (result,) = json.loads(out)
    assert result["label"] and "error" not in result


def test_predict_of_an_audio_clip_imports_no_librosa_scipy_or_pandas():
    modules, out = imported_modules("predict", "--run", "demo-audio", str(CLIP), "--json")
    assert loaded(modules, NEVER + AUDIO_STACK + ("pandas",)) == []
    (result,) = json.loads(out)
    assert result["label"] and "error" not in result


def test_numpy_features_match_librosa_and_scipy():
    import warnings

    import librosa
    import scipy.fft
    import scipy.signal

    from core.data import features

    for sr, n_fft, n_mels in [(8000.0, 256, 32), (16000.0, 512, 40), (22050.0, 2048, 128), (44100.0, 1024, 64)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
        np.testing.assert_allclose(features._mel_filters(sr, n_fft, n_mels), reference, rtol=1e-6, atol=1e-9)
    for n in (64, 256, 2048):
        assert np.array_equal(features.hann(n), scipy.signal.get_window("hann", n, fftbins=True).astype(np.float32))
    logmel = np.random.default_rng(0).normal(scale=5.0, size=(2, 32, 40)).astype(np.float32)
    np.testing.assert_allclose(features._mfcc(logmel, 20, True),
                               scipy.fft.dct(logmel, axis=-2, type=2, norm="ortho")[..., :20, :], atol=2e-5)
    np.testing.assert_allclose(features._mfcc(logmel, 20, False),
                               scipy.fft.dct(logmel, axis=-2, type=2, norm="ortho")[..., 1:21, :], atol=2e-5)


DEFERRED = """
import sys, torch
from torch.utils.flop_counter import FlopCounterMode
from core.coldstart import dynamo_deferred
model = torch.nn.Sequential(torch.nn.Conv1d(3, 8, 5), torch.nn.ReLU(), torch.nn.Linear(12, 4))
x = torch.randn(2, 3, 16)
with dynamo_deferred():
    with FlopCounterMode(display=False) as inside:
        model(x).sum().backward()
    with torch.device("meta"):
        torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert "torch._dynamo" not in sys.modules
with FlopCounterMode(display=False) as outside:  # torch as it was made: imports torch._dynamo
    model(x).sum().backward()
assert "torch._dynamo" in sys.modules
with dynamo_deferred():  # a no-op once torch._dynamo is loaded
    pass
print(inside.get_total_flops(), outside.get_total_flops())
"""


def test_dynamo_deferred_counts_the_same_and_leaves_torch_as_it_was():
    proc = subprocess.run([sys.executable, "-c", DEFERRED], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    inside, outside = proc.stdout.split()
    assert int(inside) == int(outside) > 0
