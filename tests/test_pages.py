"""Streamlit AppTest over every page: renders without exceptions; widgets round-trip."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def run_page(path: str, timeout: float = 60) -> AppTest:
    """Open a page through the router, as a person does (st.navigation knows every page)."""
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=timeout)
    at.run()
    if path != "pages/home.py":
        at.switch_page(path).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_home_lists_the_zoo():
    at = run_page("pages/home.py")
    zoo = at.dataframe[0].value
    assert "resnet1d" in set(zoo["model"])
    assert set(zoo["input"]) <= {"imu", "waveform", "spectrogram"}


def test_router_runs():
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=60)
    at.run()
    assert not at.exception


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_build_shows_costs_and_updates_when_a_knob_changes():
    at = run_page("pages/build.py")
    at.selectbox(key="build.model").set_value("resnet1d").run()
    before = metric(at, "Parameters")
    spec_width = next(s for s in at.slider if s.key.startswith("build.hp.resnet1d.") and "width" in s.key)
    spec_width.set_value(spec_width.max).run()
    assert not at.exception
    after = metric(at, "Parameters")
    assert before != after, "changing the width must change the parameter count"
    assert metric(at, "Training memory").endswith(("KiB", "MiB", "GiB"))


def test_build_refuses_an_input_the_model_cannot_take():
    at = run_page("pages/build.py")
    at.selectbox(key="build.model").set_value("resnet1d").run()
    at.text_input(key="build.shape").set_value("6,2").run()
    assert not at.exception
    assert any("cannot be built" in e.value for e in at.error)


@pytest.mark.parametrize("model", ["har_transformer", "audio_resnet_attention"])
def test_build_renders_attention_models(model):
    at = run_page("pages/build.py")
    if model not in at.selectbox(key="build.model").options:
        pytest.fail(f"{model} is not registered")
    at.selectbox(key="build.model").set_value(model).run()
    assert not at.exception
    assert metric(at, "FLOPs / batch")
