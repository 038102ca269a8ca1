"""Property-based hostile input (Hypothesis): random bytes, random WAVs and random numeric tables
with inf/nan/huge/tiny values under random headers and delimiters, and random `--set` values.

Whatever Hypothesis draws, the outcome is one of two: refused with a one-line message, or
answered with finite probabilities (finite values, for the training reader). Each example runs
in the long-lived worker under its address-space limit (tests/hostile/harness.py). Runs are
derandomized so CI sees the same examples every time.
"""
from __future__ import annotations

import io
import itertools

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import RunConfig
from core.spec import sweep_params
from tests.hostile.cases import CHANNELS

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_counter = itertools.count()

SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 1e38, 1e30, -1e30, 1e-45, 1e-320, 0.0, -0.0])
NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), SPECIAL,
                   st.floats(-50, 50, allow_nan=False))


def assert_clean(result: dict) -> None:
    outcome = result["outcome"]
    assert outcome in ("refused", "answered"), f"{outcome}: {result.get('error')}\n{result.get('traceback', '')}"
    if outcome == "refused":
        assert result["message"].strip() and "Traceback" not in result["message"], result
    else:
        assert result["finite"], f"non-finite answer: {result}"


def _file(context, data: bytes) -> str:
    path = context.path(f"prop-{next(_counter)}.bin")
    path.write_bytes(data)
    return str(path)


@SETTINGS
@given(data=st.binary(min_size=0, max_size=4096), name=st.sampled_from(["x.wav", "x.csv", "x.csv.gz", "x", "x.mp3"]),
       run=st.sampled_from(["imu", "audio"]))
def test_random_bytes_are_refused_or_answered(context, worker, data, name, run):
    assert_clean(worker.run({"op": "classify_bytes", "run": getattr(context, f"{run}_run"),
                             "file": _file(context, data), "name": name}))


@SETTINGS
@given(samples=st.lists(NUMBER, min_size=0, max_size=3000), rate=st.sampled_from([4000, 8000, 16000, 44100]),
       subtype=st.sampled_from(["FLOAT", "DOUBLE", "PCM_16"]), channels=st.sampled_from([1, 2]))
def test_random_wavs_are_refused_or_answered_finite(context, worker, samples, rate, subtype, channels):
    y = np.asarray(samples, dtype=np.float64)
    if subtype == "PCM_16":  # integer WAVs cannot hold non-finite values: clip what soundfile would
        y = np.clip(np.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0), -1, 1)
    if channels == 2:
        y = np.stack([y, -y[::-1]], axis=1)
    buf = io.BytesIO()
    sf.write(buf, y, rate, format="WAV", subtype=subtype)
    assert_clean(worker.run({"op": "classify_bytes", "run": context.audio_run,
                             "file": _file(context, buf.getvalue()), "name": "clip.wav"}))


@st.composite
def csv_tables(draw) -> bytes:
    rows = draw(st.integers(0, 400))
    header = list(CHANNELS) if draw(st.booleans()) else draw(st.lists(
        st.one_of(st.sampled_from(CHANNELS + ["time", "activity", "subject"]), st.text(max_size=12)),
        min_size=1, max_size=9))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    base = np.sin(np.arange(rows)[:, None] / 7.0 + np.arange(len(header)))
    specials = draw(st.lists(st.tuples(st.integers(0, max(rows - 1, 0)), st.integers(0, len(header) - 1), NUMBER),
                             max_size=8))
    for r, c, v in specials:
        if rows:
            base[r, c] = v
    scale = draw(st.sampled_from([1.0, 1e-30, 1e6, 1e30]))
    with np.errstate(over="ignore", invalid="ignore"):
        lines = [delimiter.join(header)] + [delimiter.join(f"{v * scale:.6g}" for v in row) for row in base]
    text = newline.join(lines) + newline
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


@SETTINGS
@given(table=csv_tables())
def test_random_csv_tables_are_refused_or_read_finite(context, worker, table):
    path = _file(context, table)
    assert_clean(worker.run({"op": "read_csv", "file": path}))
    assert_clean(worker.run({"op": "classify_bytes", "run": context.imu_run, "file": path, "name": "walk.csv"}))


_KEYS = [e.key for e in sweep_params(RunConfig())] + ["optim.lr", "train.epochs", "nope", "", "model.hparams.x"]


@SETTINGS
@given(overrides=st.dictionaries(st.sampled_from(_KEYS),
                                 st.one_of(st.text(max_size=30), NUMBER.map(repr), st.integers().map(str)),
                                 min_size=1, max_size=4))
def test_random_set_values_are_refused_or_valid(worker, overrides):
    assert_clean(worker.run({"op": "overrides", "set": overrides}))
