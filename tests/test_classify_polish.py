"""Classify, as a person uses it: an IMU recording shows one small panel per channel with the
explanation in a panel of its own (a channel picker past nine channels), and a new upload
replaces the batch unless "Add to the batch" is on, never listing the same file twice."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.config import DataConfig
from dashboard import classify_figures as cf
from dashboard.classify_parts import Upload, merge_batch
from tests.hostile.cases import CHANNELS, IMU_RATE, csv_text, imu_table
from tests.test_infer_bad_input import stored_untrained_run

ROOT = Path(__file__).resolve().parents[1]
MANY = [f"{part}_{axis}" for part in ("wrist", "ankle", "chest", "head") for axis in "xyz"]  # 12 channels


@pytest.fixture
def imu_runs(tmp_path, monkeypatch):
    from dashboard.engine import shutdown_engines

    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    hparams = {"base_channels": 8, "num_stages": 2}
    made = {"six": stored_untrained_run("six-channels", "resnet1d", DataConfig(source="hapt"), (6, 128),
                                        ["WALKING", "SITTING"], CHANNELS, IMU_RATE, "imu", hparams),
            "twelve": stored_untrained_run("twelve-channels", "resnet1d", DataConfig(source="hapt"), (12, 128),
                                           ["WALKING", "SITTING"], MANY, IMU_RATE, "imu", hparams)}
    yield made
    shutdown_engines()


def recording(rows: int = 400, seed: int = 0, channels: list[str] = CHANNELS) -> bytes:
    values = np.concatenate([imu_table(rows, seed)] * (len(channels) // 6), axis=1)
    return csv_text(values, header=channels).encode()


def open_classify(run_id: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=90)
    at.run()
    at.switch_page("pages/classify.py").run()
    at.selectbox(key="classify.run").set_value(run_id).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.file_uploader[0].set_value([(name, data, "text/csv") for name, data in files]).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def signal_figure(at: AppTest) -> dict:
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return next(c for c in charts if any(a.get("text") == "predicted" for a in c["layout"].get("annotations", [])))


def panel_names(fig: dict) -> list[str]:
    return [a["text"] for a in fig["layout"]["annotations"]]


def y_axes(fig: dict) -> list[str]:
    return [k for k in fig["layout"] if k.startswith("yaxis")]


def test_an_imu_recording_has_one_panel_per_channel_and_the_explanation_beside_them(imu_runs):
    at = upload(open_classify(imu_runs["six"]), ("walk.csv", recording()))
    fig = signal_figure(at)
    names = panel_names(fig)
    assert names[:6] == CHANNELS and names[-1] == "predicted", names
    assert "Grad-CAM" in names[6], names  # the explanation is a panel of its own, not a second axis
    assert len(y_axes(fig)) == 6 + 1 + 1  # a row per channel, the explanation's, the class band's
    assert not any(t.get("showlegend", True) for t in fig["data"] if t.get("name") in CHANNELS)  # names, not legend
    assert not at.get("multiselect")  # six channels: no picker needed


def test_past_nine_channels_a_picker_chooses_the_panels(imu_runs):
    at = upload(open_classify(imu_runs["twelve"]), ("many.csv", recording(channels=MANY)))
    picker = at.multiselect(key="classify.detail.0.channels")
    assert picker.value == list(range(6))
    assert panel_names(signal_figure(at))[:7] == MANY[:6] + ["Grad-CAM"]
    picker.set_value([11, 0, 5]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert panel_names(signal_figure(at))[:3] == [MANY[11], MANY[0], MANY[5]]


def batch_files(at: AppTest) -> list[str]:
    """The files being classified: the batch table's, or the one file's heading."""
    if at.dataframe:
        return at.dataframe[0].value["file"].tolist()
    return [s.value for s in at.subheader][:1]


def test_a_new_upload_replaces_the_batch_unless_add_is_chosen(imu_runs):
    a, b, c = recording(seed=1), recording(seed=2), recording(seed=3)
    at = upload(open_classify(imu_runs["six"]), ("a.csv", a), ("b.csv", b))
    assert batch_files(at) == ["a.csv", "b.csv"]
    assert not at.file_uploader[0].value, "the uploader is emptied: what it held is in the batch"
    upload(at, ("c.csv", c))
    assert batch_files(at) == ["c.csv"]  # replaced, not added
    at.toggle(key="classify.add").set_value(True).run()
    upload(at, ("a.csv", a), ("c.csv", c), ("a.csv", a))  # c.csv again, a.csv twice in one drop
    assert batch_files(at) == ["c.csv", "a.csv"]
    upload(at, ("a.csv", b))  # another file under a name the batch has: both kept, told apart
    assert batch_files(at) == ["c.csv", "a.csv", "a (2).csv"]
    upload(at, ("a.csv", b))  # and that one again: still once
    assert batch_files(at) == ["c.csv", "a.csv", "a (2).csv"]
    at.button(key="classify.clear").click().run()
    assert not at.exception and not at.dataframe and not at.subheader
    assert any("Upload an IMU CSV" in i.value for i in at.info)


def test_merging_keeps_one_copy_of_a_file_and_numbers_a_reused_name():
    def up(name: str, digest: str) -> Upload:
        return Upload(name, 3, b"abc", digest, name)

    def listed(batch: list[Upload]) -> list[tuple[str, str]]:
        return [(u.name, u.digest) for u in batch]

    batch = [up("x.wav", "1"), up("y.wav", "2")]
    assert listed(merge_batch(batch, [up("z.wav", "3")], add=False)) == [("z.wav", "3")]
    batch = merge_batch(batch, [up("x.wav", "1"), up("x.wav", "9"), up("x.wav", "8")], add=True)
    assert listed(batch) == [("x.wav", "1"), ("y.wav", "2"), ("x (2).wav", "9"), ("x (3).wav", "8")]
    assert listed(merge_batch(batch, [up("x.wav", "9")], add=True)) == listed(batch)  # a numbered one again
    assert listed(merge_batch([], [up("notes", "1"), up("notes", "2")], add=False)) == \
        [("notes", "1"), ("notes (2)", "2")]


def test_audio_keeps_its_waveform_view():
    from core.infer.predict import ClassTrack

    track = ClassTrack(np.array([0.0, 0.5]), np.array([1, 1]), np.array([0.9, 0.9]))
    fig = cf.signal_with_classes(np.zeros(8000), 8000.0, ["waveform"], track, [str(d) for d in range(10)])
    assert [t.name for t in fig.data][0] == "waveform" and len([k for k in fig.layout if k.startswith("yaxis")]) == 3


def test_the_spectrogram_uses_no_colour_streamlit_repaints():
    """Streamlit's plotly theme swaps #000001-#000009 for its palette: Magma's #000004 drew silence pink."""
    from core.infer.predict import ClassTrack

    track = ClassTrack(np.array([0.0, 0.5]), np.array([1, 1]), np.array([0.9, 0.9]))
    fig = cf.spectrogram_with_classes(np.full((32, 60), -13.8), 0.016, track, [str(d) for d in range(10)])
    placeholders = {f"#00000{i}" for i in range(1, 10)}
    assert not placeholders & {c.lower() for _, c in fig.data[0].colorscale}
