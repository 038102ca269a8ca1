"""The controls that keep pages quick (issue 19): the Train form in sections with Start, the
run's name and its epochs in one bar above them; Build's measured latency on request in the
background (a rerun never waits for it); the preset lists cached until a preset file changes.
No wall-clock timings here: bench/page_latency.py measures those."""
from __future__ import annotations

import threading
import time

from dashboard import build_parts
from core import spec
from core.models import registry
from tests.test_pages import fk, open_page, open_section, runs_dir, set_form, shown_config, widget  # noqa: F401


def _in_tab(at, label: str):
    return next(t for t in at.tabs if t.label == label)


def _keys_under(node) -> set[str]:
    """Widget keys drawn anywhere inside an AppTest element (a tab, a container)."""
    out, stack = set(), [node]
    while stack:
        n = stack.pop()
        key = getattr(n, "key", None)
        if key:
            out.add(key)
        stack.extend(getattr(n, "children", {}).values())
    return out


# ---- Train: sections, and Start always in view ---------------------------------------------
def test_train_form_is_in_sections_with_every_field_in_one_of_them(runs_dir):
    at = open_page("pages/train.py")
    labels = [t.label for t in at.tabs]
    assert labels[:6] == ["Data", "Model", "Training", "Optimizer and schedule", "Probes", "Run config"]
    where = {}
    for label in labels[:5]:
        open_section(at, label)
        drawn = set().union(*(_keys_under(t) for t in at.tabs))
        assert drawn <= _keys_under(_in_tab(at, label)), "only the open section is drawn"
        where.update({key: label for key in drawn})
    assert where[fk("data.source")] == "Data"
    assert where[fk("model.name")] == "Model"
    assert where[fk("train.batch_size")] == "Training"
    assert where[fk("optim.lr")] == "Optimizer and schedule"
    assert where[fk("train.probes.every_n_steps")] == "Probes", "each field once"
    assert shown_config(at) is not None, "the run config (JSON) is in its own section"


def test_a_value_set_in_one_section_survives_drawing_the_others(runs_dir):
    at = open_page("pages/train.py")
    set_form(at, "optim.lr", 0.0123)
    set_form(at, "train.batch_size", 48)
    for label in ("Data", "Model", "Probes", "Optimizer and schedule"):
        open_section(at, label)
    assert widget(at, fk("optim.lr")).value == 0.0123, "drawn again, the widget shows what was set"
    config = shown_config(at)
    assert (config.optim.lr, config.train.batch_size) == (0.0123, 48)


def test_switching_the_data_to_audio_with_model_closed_picks_an_audio_model(runs_dir):
    at = open_page("pages/train.py")
    set_form(at, "data.source", "fsdd")  # its suggested stack4 features are 2-D: no IMU model takes them
    config = shown_config(at)
    assert registry.spec(config.model.name).input_kind == spec.value_at(config.to_dict(), "data.input_kind") != "imu"


def test_start_the_run_name_and_epochs_sit_above_the_sections(runs_dir):
    at = open_page("pages/train.py")
    tabbed = set().union(*(_keys_under(t) for t in at.tabs))
    for key in ("train.submit", fk("name"), fk("train.epochs")):
        assert key not in tabbed, f"{key} must stay in view, not inside a section"
    set_form(at, "train.epochs", 7)
    assert shown_config(at).train.epochs == 7, "the epochs in the bar are the run's"
    bar = " ".join(c.value for c in at.caption)
    assert f"**{shown_config(at).model.name}**" in bar, "the bar says what Start will train"


# ---- Build: measured latency on request, in the background ----------------------------------
def test_background_latency_does_not_block_and_measures_each_choice_once(monkeypatch):
    started, release, calls = threading.Event(), threading.Event(), []

    def slow_measure(args: dict) -> dict:
        calls.append(args)
        started.set()
        release.wait(30)
        return {"estimated": 1.0, "measured": 2.0}

    monkeypatch.setattr(build_parts, "_measure", slow_measure)
    jobs = build_parts.BackgroundLatency()
    args = {"name": "resnet1d", "batch_size": 8}
    jobs.request(args)
    jobs.request(dict(args))  # the same choice again: no second measurement
    assert started.wait(30)
    assert jobs.result(args) is None, "still measuring: the caller gets no answer and does not wait"
    release.set()
    deadline = time.time() + 30
    while jobs.result(args) is None and time.time() < deadline:
        time.sleep(0.05)
    assert jobs.result(args) == {"estimated": 1.0, "measured": 2.0}
    assert len(calls) == 1


def test_background_latency_reports_a_failed_measurement(monkeypatch):
    def broken(args: dict) -> dict:
        raise RuntimeError("no such device")

    monkeypatch.setattr(build_parts, "_measure", broken)
    jobs = build_parts.BackgroundLatency()
    jobs.request({"name": "x"})
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if jobs.result({"name": "x"}) is None:
                time.sleep(0.05)
                continue
        except RuntimeError as e:
            assert "no such device" in str(e)
            return
    raise AssertionError("the failure never surfaced")


def test_build_measures_latency_on_request_and_shows_it_when_done(runs_dir):
    at = open_page("pages/build.py")
    at.selectbox(key="build.model").set_value("resnet1d").run()
    for knob, value in (("num_stages", 1), ("blocks_per_stage", 1)):
        set_form(at, f"model.hparams.{knob}", value, "resnet1d", prefix="build")
    assert not any("Measured / estimated" in c.value for c in at.caption), "nothing is measured unasked"
    at.toggle(key="build.measure").set_value(True).run()
    assert not at.exception, [e.message for e in at.exception]
    deadline = time.time() + 180  # the measurement's own time on a busy machine; we wait for what it shows
    while not any("Measured / estimated" in c.value for c in at.caption):
        assert time.time() < deadline, "the measured latency never showed"
        texts = " ".join(c.value for c in at.caption)
        assert "Measuring latency" in texts or "Measured" in texts, "while it measures, the page says so"
        time.sleep(0.5)
        at.run()
        assert not at.exception, [e.message for e in at.exception]


# ---- presets: cached, yet a saved one shows at once -------------------------------------------
def test_the_cached_preset_list_sees_a_newly_saved_preset(runs_dir):
    from core import presets
    from dashboard import forms

    before = forms.presets_stamp()
    names = [p.name for p in forms.presets_cached(before)[0]]
    presets.save_preset("speed_test_saved", presets.get("hapt_resnet1d").config, title="Speed test")
    after = forms.presets_stamp()
    assert after != before
    assert [p.name for p in forms.presets_cached(after)[0]] == names + ["speed_test_saved"]
    presets.delete_preset("speed_test_saved")


# ---- Build: the layer table on request ------------------------------------------------------
def test_build_draws_the_block_diagram_first_and_the_layer_table_when_its_section_opens(runs_dir):
    at = open_page("pages/build.py")
    assert [t.label for t in at.tabs][-2:] == ["Block structure", "Layers"]
    charts = len(at.get("plotly_chart"))
    assert not any("heaviest layers" in c.value for c in at.caption), "the layer table waits for its section"
    at.session_state["build.detail"] = "Layers"
    at.run()
    assert any("heaviest layers" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == charts + 1, "the per-layer FLOPs chart comes with it"
