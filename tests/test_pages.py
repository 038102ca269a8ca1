"""Streamlit AppTest over every page, through the router as a person navigates:
each renders without exceptions on an empty store and on one holding finished, running,
failed, diverged and cancelled runs; forms refuse bad combinations with the reason;
widgets generated from a spec round-trip to a valid RunConfig; sessions stay apart."""
from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import DataConfig, ModelConfig, ProbeConfig, RunConfig, TrainConfig
from core.jobs import JobManager
from core.models import registry
from core.store import Store
from dashboard.engine import shutdown_engines

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["pages/home.py", "pages/build.py", "pages/train.py", "pages/monitor.py", "pages/runs.py", "pages/sweep.py",
         "pages/deploy.py"]


def tiny_config(name: str, **data_overrides) -> RunConfig:
    """A run that trains in about a second on generated IMU data."""
    data = DataConfig.from_dict({"source": "synthetic_imu", "options": {"n_classes": 3, "per_class": 16},
                                 "window": 64, "stride": 32, **data_overrides})
    return RunConfig(name=name, data=data,
                     model=ModelConfig("resnet1d", {"base_channels": 8, "num_stages": 1, "blocks_per_stage": 1}),
                     train=TrainConfig(epochs=2, batch_size=16,
                                       probes=ProbeConfig(every_n_steps=1, histogram_every_n_steps=2)))


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """An empty runs folder for this test; the engine made over it is shut down after."""
    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    yield tmp_path / "runs"
    shutdown_engines()


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A store with a completed and a failed run (real JobManager jobs on tiny generated
    data), a cancelled one, a running one (owned by this live process, written through the
    store API while 'training') and a diverged one."""
    runs = tmp_path_factory.mktemp("populated") / "runs"
    old = os.environ.get("SIGSCOPE_RUNS_DIR")
    os.environ["SIGSCOPE_RUNS_DIR"] = str(runs)
    store = Store(runs / "sigscope.db")
    jobs = JobManager(store, max_workers=1)
    ids = {"completed": jobs.submit(tiny_config("tiny completed")),
           "failed": jobs.submit(tiny_config("tiny failed", path=str(runs / "missing.csv"), source="imu_csv",
                                             options={}))}
    ids["cancelled"] = jobs.submit(tiny_config("tiny cancelled"))
    jobs.cancel(ids["cancelled"])
    for run_id in ids.values():
        assert jobs.wait(run_id, timeout=120) is not None
    jobs.shutdown()

    running = tiny_config("tiny running")
    ids["running"] = store.create_run(running.to_dict(), status="running")
    store.update_run(ids["running"], started_at=time.time() - 30, total_steps=40, total_epochs=4, step=12, epoch=1,
                     device="cpu")
    with store.writer(ids["running"]) as w:
        for step in range(1, 13):
            w.metric(step, step // 10, "step", "loss", 2.0 / step)
            w.metric(step, step // 10, "step", "lr", 1e-3)
            for layer in ("stem.0", "stages.0.conv1", "head.1"):
                w.probe(step, layer, "grad_norm", 0.1 * step)
            w.probe(step, "stem.2", "dead_fraction", 0.25)
            w.probe(step, "model", "grad_norm_before_clip", 1.5)
            w.probe(step, "model", "grad_norm_after_clip", 1.0)
        w.metrics(10, 0, "val", {"loss": 0.9, "accuracy": 0.6, "macro_f1": 0.55})
        w.event("training resnet1d on cpu")
    ids["diverged"] = store.create_run(tiny_config("tiny diverged").to_dict(), status="diverged")
    store.update_run(ids["diverged"], error="loss became nan at step 7 (epoch 1); lower optim.lr", finished_at=time.time())
    statuses = {k: store.get_run(v)["status"] for k, v in ids.items()}
    assert statuses == {k: k for k in ids}, statuses
    yield {"dir": runs, "ids": ids, "store": store}
    shutdown_engines()
    if old is None:
        os.environ.pop("SIGSCOPE_RUNS_DIR", None)
    else:
        os.environ["SIGSCOPE_RUNS_DIR"] = old


SECTION_KEYS = {"pages/train.py": "train.section", "pages/runs.py": "runs.section"}  # their tabs' keys


def open_page(path: str, timeout: float = 90, query: dict | None = None, section: str | None = None) -> AppTest:
    """Open a page through the router, as a person does (st.navigation knows every page),
    with one of its sections open (a click on that tab) where given."""
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=timeout)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    if section is not None:
        at.session_state[SECTION_KEYS[path]] = section
    if path != "pages/home.py":
        at.switch_page(path).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _drawn_widget(at: AppTest, key: str):
    kinds = ("selectbox", "number_input", "toggle", "text_input", "multiselect", "slider", "checkbox")
    return next((w for kind in kinds for w in getattr(at, kind) if w.key == key), None)


def open_section(at: AppTest, label: str) -> AppTest:
    """Open one section of Train's form, as a click on its tab does (only the open one is drawn)."""
    at.session_state["train.section"] = label
    at.switch_page("pages/train.py").run()  # where Build or Runs handed over, AppTest's next run is Train too
    assert not at.exception, [e.message for e in at.exception]
    return at


def widget(at: AppTest, key: str):
    """The widget of any kind with this key; on Train, in whichever section holds it (opened)."""
    found = _drawn_widget(at, key)
    if found is None and key.startswith("train:") and any(t.label == "Run config" for t in at.tabs):
        for label in [t.label for t in at.tabs]:
            found = _drawn_widget(open_section(at, label), key)
            if found is not None:
                break
    if found is None:
        raise AssertionError(f"no widget with key {key!r}")
    return found


def fk(key: str, scope: str = "", prefix: str = "train") -> str:
    """A form widget's key (dashboard.forms.widget_key)."""
    from dashboard.forms import widget_key
    return widget_key(prefix, key, scope)


def set_form(at: AppTest, key: str, value, scope: str = "", prefix: str = "train") -> AppTest:
    widget(at, fk(key, scope, prefix)).set_value(value)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def texts(at: AppTest) -> str:
    parts = [e.value for kind in (at.markdown, at.caption, at.info, at.warning, at.error, at.success) for e in kind]
    return "\n".join(str(p) for p in parts)


# ---- every page, empty store ---------------------------------------------------------------
@pytest.mark.parametrize("path", ["pages/home.py", "pages/train.py", "pages/monitor.py", "pages/runs.py",
                                  "pages/sweep.py"])
def test_every_page_renders_on_an_empty_store(runs_dir, path):
    at = open_page(path)
    if path in ("pages/monitor.py", "pages/runs.py"):
        assert "No runs yet" in texts(at)


def test_home_shows_engine_status_and_the_zoo(runs_dir):
    at = open_page("pages/home.py")
    assert metric(at, "Device") in ("cpu", "cuda:0") or metric(at, "Device").startswith("cuda")
    assert metric(at, "Running") == "0" and metric(at, "Queued") == "0"
    zoo = at.dataframe[0].value
    assert "resnet1d" in set(zoo["model"])


def test_home_quick_start_queues_the_default_model_on_bundled_hapt(runs_dir):
    from dashboard.engine import engine

    at = open_page("pages/home.py")
    at.button(key="home.quick_start").click().run()
    assert not at.exception
    runs = Store(runs_dir / "sigscope.db").list_runs()
    assert len(runs) == 1
    cfg = RunConfig.from_dict(runs[0]["config"])
    assert (cfg.data.source, cfg.model.name) == ("hapt", "resnet1d")
    assert cfg.train.epochs <= 5
    engine().cancel(runs[0]["id"])  # the test checks the submit, not a training
    assert engine().jobs.wait(runs[0]["id"], timeout=60) in ("cancelled", "completed")


# ---- every page, store with runs in every state ---------------------------------------------
@pytest.mark.parametrize("path", PAGES[:1] + PAGES[2:])
def test_every_page_renders_with_finished_running_and_failed_runs(populated, path):
    at = open_page(path)
    if path == "pages/home.py":
        assert metric(at, "Running") == "1"


@pytest.mark.parametrize("which, expected", [
    ("completed", "Completed"), ("running", "Running"), ("failed", "Failed"),
    ("diverged", "Diverged: loss became nan at step 7"), ("cancelled", "Cancelled")])
def test_monitor_shows_each_status_plainly(populated, which, expected):
    run_id = populated["ids"][which]
    at = open_page("pages/monitor.py", query={"run": run_id})
    assert at.selectbox(key="monitor.run").value == run_id
    shown = texts(at)
    assert expected in shown, shown
    if which == "failed":
        assert "missing.csv" in shown  # the failure's own message, not just the word
    if which == "running":
        assert metric(at, "Step") == "12 / 40"
        assert metric(at, "Loss points") == "12"
        assert "ETA" in at.get("progress")[0].proto.text
    if which == "completed":
        assert int(metric(at, "Loss points")) > 0
        charts = {}
        for tab in ("Curves", "Gradients", "Dead units", "Activations", "Histograms"):
            at.session_state["tab"] = tab  # as a click on the tab does; only the open tab is drawn
            at.run()
            assert not at.exception, [e.message for e in at.exception]
            charts[tab] = len(at.get("plotly_chart"))
        assert charts["Curves"] >= 2 and all(n >= 1 for n in charts.values()), charts
        assert sum(charts.values()) >= 8, charts  # curves, grad norms, heat maps, activations, histogram


def test_monitor_keeps_the_chosen_tab_and_reads_it_from_the_link(populated):
    at = open_page("pages/monitor.py", query={"run": populated["ids"]["completed"], "tab": "Gradients"})
    assert at.session_state["tab"] == "Gradients"
    shown = texts(at)
    at.slider(key="monitor.smoothing").set_value(0.8).run()  # any rerun keeps the tab
    assert at.session_state["tab"] == "Gradients" and not at.exception
    assert "Global gradient norm" in str([c.proto.spec for c in at.get("plotly_chart")]), shown


def test_monitor_switches_runs_with_the_picker_and_keeps_the_choice_in_the_link(populated):
    at = open_page("pages/monitor.py", query={"run": populated["ids"]["completed"]})
    at.selectbox(key="monitor.run").set_value(populated["ids"]["diverged"]).run()
    assert not at.exception
    assert "Diverged" in texts(at)
    assert at.query_params["run"] == populated["ids"]["diverged"]  # a reload or a shared link shows it
    at.slider(key="monitor.smoothing").set_value(0.9).run()
    assert not at.exception


def test_monitor_says_when_the_linked_run_does_not_exist(populated):
    at = open_page("pages/monitor.py", query={"run": "does-not-exist"})
    warnings = [w.value for w in at.warning]
    assert any("No run 'does-not-exist'" in w and "The latest:" in w for w in warnings), warnings


def test_runs_lists_compares_and_details_every_run(populated):
    ids = populated["ids"]
    at = open_page("pages/runs.py")
    table = at.dataframe[0].value
    assert set(table["id"]) == set(ids.values())
    assert set(table["status"]) == set(ids)
    at.multiselect(key="runs.status").set_value(["failed", "diverged"]).run()
    assert set(at.dataframe[0].value["status"]) == {"failed", "diverged"}
    at.multiselect(key="runs.compare").set_value([ids["completed"], ids["running"], ids["failed"]]).run()
    assert not at.exception
    assert any("Config differences" in m.value for m in at.markdown)
    at.session_state["runs.section"] = "One run"
    at.run()
    assert at.selectbox(key="runs.focus").value == ids["completed"], "the first compared run is shown first"
    at.session_state["runs.section"] = "Compare"
    at.run()
    assert at.multiselect(key="runs.compare").value == [ids["completed"], ids["running"], ids["failed"]], \
        "the comparison is kept while One run was open"
    at.session_state["runs.section"] = "One run"
    at.run()
    at.selectbox(key="runs.focus").set_value(ids["completed"]).run()
    assert not at.exception
    assert any("Per-class report" in m.value for m in at.markdown)
    labels = [b.label for b in at.get("download_button")]
    assert "Config JSON" in labels and any(lbl.startswith("Best checkpoint") for lbl in labels), labels


def test_runs_delete_removes_a_finished_run(populated):
    store: Store = populated["store"]
    victim = store.create_run(tiny_config("to delete").to_dict(), status="completed")
    at = open_page("pages/runs.py", section="One run")
    at.selectbox(key="runs.focus").set_value(victim).run()
    at.button(key="runs.delete").click().run()
    assert not at.exception
    assert store.get_run(victim) is None
    assert victim not in set(at.dataframe[0].value["id"])


# ---- Train: the form, refusals, round trip, submit --------------------------------------------
def shown_config(at: AppTest) -> RunConfig:
    """The run config the page shows (on Train, its Run config section, opened)."""
    if not any(c.language == "json" for c in at.code) and any(t.label == "Run config" for t in at.tabs):
        open_section(at, "Run config")
    code = next(c.value for c in at.code if c.language == "json")
    return RunConfig.from_json(code)


def test_train_refuses_an_invalid_combination_with_the_reason_and_submits_a_valid_one(runs_dir):
    from dashboard.engine import engine

    at = open_page("pages/train.py")
    set_form(at, "data.source", "synthetic_imu")
    set_form(at, "model.name", "har_transformer")
    set_form(at, "model.hparams.dim", 100, "har_transformer")
    set_form(at, "model.hparams.heads", 3, "har_transformer")
    assert any("Fix first" in e.value and "divisible by heads=3" in e.value for e in at.error), \
        [e.value for e in at.error]
    assert at.button(key="train.submit").disabled

    set_form(at, "model.hparams.heads", 4, "har_transformer")
    set_form(at, "train.epochs", 2)
    set_form(at, "schedule.name", "warmup_exp_cosine")
    assert not at.button(key="train.submit").disabled
    cfg = shown_config(at)
    assert (cfg.model.name, cfg.model.hparams["dim"], cfg.model.hparams["heads"]) == ("har_transformer", 100, 4)
    assert cfg.schedule.name == "warmup_exp_cosine" and cfg.train.epochs == 2
    assert RunConfig.from_json(cfg.to_json()) == cfg
    assert len(open_section(at, "Optimizer and schedule").get("plotly_chart")) == 1  # the LR curve it will follow

    at.button(key="train.submit").click().run()
    assert not at.exception
    runs = Store(runs_dir / "sigscope.db").list_runs()
    assert len(runs) == 1 and RunConfig.from_dict(runs[0]["config"]) == cfg
    engine().cancel(runs[0]["id"])
    engine().jobs.wait(runs[0]["id"], timeout=60)


def test_train_offers_explores_marks_and_the_run_records_them(runs_dir):
    from core.explore.marks import add_mark
    from dashboard.engine import engine

    at = open_page("pages/train.py")
    set_form(at, "data.source", "synthetic_imu")
    assert not any(c.key == "train.marks" for c in at.checkbox), "no marks on this data: nothing offered"
    data = shown_config(at).data
    add_mark(engine().store, data, "synthetic:0", "exclude")
    add_mark(engine().store, data, "synthetic:1", "relabel", "class_2")
    at.run()
    box = next(c for c in at.checkbox if c.key == "train.marks")
    assert "1 excluded, 1 relabelled" in box.label and box.value
    at.button(key="train.submit").click().run()
    assert not at.exception, [e.message for e in at.exception]
    run = next(r for r in Store(runs_dir / "sigscope.db").list_runs() if r["config"]["data"].get("exclude"))
    assert run["config"]["data"]["exclude"] == ["synthetic:0"]
    assert run["config"]["data"]["relabel"] == {"synthetic:1": "class_2"}
    engine().cancel(run["id"])
    engine().jobs.wait(run["id"], timeout=60)


def test_train_refuses_a_bad_value_in_a_field_with_the_key(runs_dir):
    at = open_page("pages/train.py")
    set_form(at, "data.window", "abc")
    assert any("data.window='abc' is not a number" in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="train.submit").disabled


def test_train_refuses_an_unloadable_data_path(runs_dir):
    at = open_page("pages/train.py")
    set_form(at, "data.path", "no/such/file.csv.gz")
    assert any("cannot be loaded" in e.value for e in at.error)
    assert at.button(key="train.submit").disabled


def test_train_form_works_for_every_data_source(runs_dir):
    """Each source either loads (and the model list fits its input kind) or says why not."""
    from core.data.sources import get_source, source_names

    at = open_page("pages/train.py")
    for name in source_names():
        set_form(at, "data.source", name)
        if get_source(name).needs_path:
            assert any("has no bundled data" in e.value for e in at.error), name
            assert at.button(key="train.submit").disabled
            continue
        refused = [e.value for e in at.error]
        assert not refused, (name, refused)
        summary = next(c.value for c in at.caption if "train /" in c.value)  # under Data's fields
        kinds = {registry.spec(m).input_kind for m in widget(at, fk("model.name")).options}
        assert len(kinds) == 1 and f"input {kinds.pop()}" in summary, (name, summary)
    set_form(at, "data.source", "fsdd")
    assert widget(at, fk("data.features")).value == "stack4", "FSDD's suggested features come with it"
    set_form(at, "data.features", "mfcc")
    assert "audio_resnet_attention" not in widget(at, fk("model.name")).options  # MFCC rows are IMU-like
    set_form(at, "data.features", "raw")  # waveforms: the zoo may have no model for them
    kinds = {registry.spec(m).input_kind for m in registry.list_models()}
    if "waveform" not in kinds:
        assert any("No model in the zoo takes waveform input" in w.value for w in at.warning)
        assert at.button(key="train.submit").disabled


def _hparam_script(model: str) -> None:
    """AppTest script: the widgets of one model and the RunConfig they make."""
    import streamlit as st

    from core.config import ModelConfig, RunConfig
    from core.models import registry
    from dashboard.widgets import hparam_form

    spec = registry.spec(model)
    hparams = hparam_form(spec, "t")
    st.code(RunConfig(model=ModelConfig(name=model, hparams=hparams)).to_json(), language="json")


@pytest.mark.parametrize("model", registry.list_models())
def test_spec_widgets_round_trip_to_a_valid_run_config(model):
    spec = registry.spec(model)
    at = AppTest.from_function(_hparam_script, args=(model,), default_timeout=30)
    at.run()
    assert not at.exception
    cfg = RunConfig.from_json(at.code[0].value)
    assert cfg.model.hparams == spec.defaults(), "widgets start at the spec's defaults"
    keys = {w.key for kind in ("number_input", "selectbox", "toggle") for w in getattr(at, kind)}
    assert keys == {fk(f"model.hparams.{h.name}", model, "t") for h in spec.hparams}, "one widget per hyperparameter"

    rng = random.Random(7)
    for _ in range(50):  # a random point the spec accepts
        chosen = {h.name: h.sample(rng) for h in spec.hparams}
        try:
            expected = spec.resolve(chosen)
            break
        except Exception:
            continue
    for name, value in chosen.items():
        widget(at, fk(f"model.hparams.{name}", model, "t")).set_value(value)
    at.run()
    assert not at.exception
    cfg = RunConfig.from_json(at.code[0].value)
    assert RunConfig.from_json(cfg.to_json()) == cfg
    assert spec.resolve(cfg.model.hparams) == pytest.approx(expected)
    registry.create(model, num_classes=3, **cfg.model.hparams)  # the config builds


def test_two_sessions_do_not_see_each_others_unsaved_choices(runs_dir):
    first, second = open_page("pages/train.py"), open_page("pages/train.py")
    default_epochs = widget(second, fk("train.epochs")).value
    set_form(first, "train.epochs", 17)
    set_form(first, "optim.name", "sgd")
    second.run()
    assert widget(second, fk("train.epochs")).value == default_epochs != 17
    assert widget(second, fk("optim.name")).value == "adamw"
    assert shown_config(first).train.epochs == 17 and shown_config(second).train.epochs == default_epochs


# ---- Build ---------------------------------------------------------------------------------
def test_build_hands_its_model_to_train(runs_dir):
    at = open_page("pages/build.py")
    at.selectbox(key="build.model").set_value("resnet1d").run()
    set_form(at, "model.hparams.num_stages", 2, "resnet1d", prefix="build")
    at.button(key="build.to_train").click().run()
    assert not at.exception
    cfg = shown_config(at)
    assert cfg.model.name == "resnet1d" and cfg.model.hparams["num_stages"] == 2
    # the handoff fills the sectioned form's own widget, and Start is ready
    assert widget(at, fk("model.hparams.num_stages", "resnet1d")).value == 2
    assert not at.button(key="train.submit").disabled


def test_build_shows_costs_and_updates_when_a_knob_changes(runs_dir):
    at = open_page("pages/build.py")
    at.selectbox(key="build.model").set_value("resnet1d").run()
    before = metric(at, "Parameters")
    set_form(at, "model.hparams.base_channels", 64, "resnet1d", prefix="build")
    assert metric(at, "Parameters") != before, "changing the width must change the parameter count"
    assert metric(at, "Training memory").endswith(("KiB", "MiB", "GiB"))
    assert any("sig-flow" in h.proto.body and "logits" in h.proto.body for h in at.get("html")), \
        "the block diagram is drawn"


def test_build_refuses_an_invalid_combination_with_the_reason(runs_dir):
    at = open_page("pages/build.py")
    at.selectbox(key="build.model").set_value("har_transformer").run()
    set_form(at, "model.hparams.dim", 100, "har_transformer", prefix="build")
    set_form(at, "model.hparams.heads", 3, "har_transformer", prefix="build")
    assert any("cannot be built" in e.value and "divisible by heads=3" in e.value for e in at.error)
    at.selectbox(key="build.setup.har_transformer").set_value("Custom input shape").run()
    at.text_input(key="build.shape.har_transformer").set_value("6").run()
    assert any("cannot be built" in e.value and "(channels, time)" in e.value for e in at.error)


def test_build_renders_an_attention_model(runs_dir):
    at = open_page("pages/build.py")
    at.selectbox(key="build.model").set_value("har_transformer").run()
    assert not at.exception
    assert metric(at, "FLOPs / batch")


def test_one_engine_per_server_survives_clear_caches(runs_dir):
    import streamlit as st

    from dashboard.engine import engine

    first = engine()
    assert engine() is first, "every session of one server shares one engine"
    st.cache_resource.clear()  # the menu's "Clear caches"
    assert engine() is first, "clearing caches must not orphan running jobs"
    assert first.jobs.status()["workers"] == 1
