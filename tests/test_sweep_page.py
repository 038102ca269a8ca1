"""AppTest for the Sweep page: it renders with no study, defines a sweep from a preset with
widgets drawn from the spec (the space check shows the invalid share before anything runs),
refuses an inverted range with the reason, starts a sweep as a worker process, and watches a
finished study: trial table with states and reasons, the figures, a trial's config trained
as a full run."""
from __future__ import annotations

import time

import pytest

from core import sweep
from core.config import RunConfig
from core.store import Store
from tests.test_pages import open_page, texts, widget

TINY = {"data.options.per_class": 16, "model.hparams.base_channels": 8, "model.hparams.num_stages": 1,
        "train.batch_size": 16}


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    from dashboard.engine import shutdown_engines
    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "runs").mkdir()
    yield tmp_path / "runs"
    shutdown_engines()


def test_the_sweep_page_renders_with_no_study_and_offers_a_new_one(runs_dir):
    at = open_page("pages/sweep.py")
    assert at.segmented_control[0].value == "New sweep"
    labels = at.selectbox(key="sweep.base").options
    assert any("seed's HAR Transformer" in o for o in labels) and any("1 ms" in o for o in labels)
    assert any(o.startswith("Run preset:") for o in labels)


def test_a_preset_sweep_shows_its_space_and_the_invalid_share_before_it_starts(runs_dir):
    at = open_page("pages/sweep.py")
    label = next(o for o in at.selectbox(key="sweep.base").options if "seed's HAR Transformer" in o)
    at.selectbox(key="sweep.base").set_value(label).run()
    assert not at.exception, [e.message for e in at.exception]
    prefix = "sweep.hapt_har_transformer_seed:space:"
    assert widget(at, prefix + "model.hparams.heads#on").value is True
    assert widget(at, prefix + "model.hparams.heads#low").value == 3 and widget(at, prefix + "model.hparams.heads#high").value == 10
    assert widget(at, prefix + "optim.lr#on").value is False, "not in the preset's space"
    shown = texts(at) + " ".join(d.value.to_csv() for d in at.dataframe)
    assert "divisible by heads" in shown, "the invalid combinations are named before starting"
    invalid = next(m.value for m in at.metric if m.label == "Invalid")
    assert invalid != "0%"
    # an inverted range is refused with the reason and the start button stays off
    widget(at, prefix + "model.hparams.depth#low").set_value(8).run()
    widget(at, prefix + "model.hparams.depth#high").set_value(3).run()
    assert "model.hparams.depth: the range is inverted" in texts(at)
    assert at.button(key="sweep.start").disabled


def test_starting_a_sweep_runs_a_worker_process_and_the_page_watches_it(runs_dir):
    at = open_page("pages/sweep.py")
    label = next(o for o in at.selectbox(key="sweep.base").options if o.startswith("Run preset:") and "ResNet1D" in o)
    at.selectbox(key="sweep.base").set_value(label).run()
    prefix = "sweep.hapt_resnet1d"
    for key in [w.key for w in at.checkbox if w.key and w.key.startswith(prefix + ":space:") and w.key.endswith("#on")]:
        widget(at, key).set_value(key.endswith("optim.lr#on"))
    at.run()
    for name, value in (("trials", 1), ("epochs", 1), ("workers", 1)):
        widget(at, f"{prefix}:settings:{name}").set_value(value)
    at.run()
    at.text_input(key="sweep.name").set_value("page-sweep").run()
    assert not at.button(key="sweep.start").disabled, texts(at)
    at.button(key="sweep.start").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.query_params["study"] == ["page-sweep"] or at.query_params["study"] == "page-sweep"
    store = Store(runs_dir / "sigscope.db")
    row = store.get_sweep("page-sweep")
    assert row and sweep.worker_alive(row), "a worker process drives the sweep"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and sweep.worker_alive(store.get_sweep("page-sweep")):
        time.sleep(1)
    assert sweep.summary("page-sweep")["trials"]["complete"] == 1
    assert store.get_sweep("page-sweep")["status"] == "finished"


def _finished_study(runs_dir) -> str:
    spec = sweep.SweepSpec(RunConfig().with_overrides(TINY).to_dict(),
                           sweep.parse_space({"optim.lr": {"low": 1e-3, "high": 1e-2, "log": True},
                                              "model.hparams.base_channels": {"low": 8, "high": 16}}),
                           sweep.parse_settings({"trials": 3, "epochs": 2, "costs": ["params"], "max_params": 1500,
                                                 "pruner": "none"}))
    name = sweep.create_study(spec, "watched")
    study, _ = sweep.load(name)
    study.enqueue_trial({"model.hparams.base_channels": 16, "optim.lr": 1e-3})  # over the parameter budget
    for lr in (1e-3, 1e-2):
        study.enqueue_trial({"model.hparams.base_channels": 8, "optim.lr": lr})
    sweep.SweepWorker(name, store=Store(runs_dir / "sigscope.db")).run()
    return name


def test_a_finished_study_shows_its_trials_reasons_figures_and_trains_a_trial(runs_dir):
    name = _finished_study(runs_dir)
    at = open_page("pages/sweep.py", query={"study": name}, timeout=120)
    assert at.segmented_control[0].value == "Watch a sweep"
    table = at.dataframe[0].value
    assert sorted(table["trial"]) == [0, 1, 2]
    refused = table[table["trial"] == 0].iloc[0]
    assert refused["state"] == "pruned" and "budget" in refused["reason"] and "before training" in refused["reason"]
    assert set(table["state"]) <= {"complete", "pruned"} and (table["state"] == "complete").sum() >= 2
    assert table[table["state"] == "complete"]["monitor"].str.startswith("/monitor?run=").all()
    tabs = [t.label for t in at.tabs]
    assert {"History", "Curves", "Pareto front", "Parallel coordinates", "Slice"} <= set(tabs), tabs
    assert len(at.get("plotly_chart")) >= 4
    assert "Best so far: trial" in texts(at)
    at.number_input(key=f"sweep.budget.{name}").set_value(5).run()
    at.button(key="sweep.set_budget").click().run()
    assert sweep.load(name)[1].settings.trials == 5
    assert not at.exception, [e.message for e in at.exception]
    assert "of 5 trials" in at.get("progress")[0].proto.text
    study, spec = sweep.load(name)
    assert sweep.remaining(study, spec.settings) == 2  # a resume runs two more
    at.number_input(key="sweep.train_epochs").set_value(1).run()
    at.button(key="sweep.train").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert "Queued run" in texts(at)
    runs = [r for r in Store(runs_dir / "sigscope.db").list_runs() if r["study"] is None]
    assert runs and runs[0]["config"]["train"]["epochs"] == 1
