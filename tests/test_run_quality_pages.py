"""Pages that say how good a run is: Classify's picker shows every run's data, held-out accuracy
and macro-F1, and a model at chance level is flagged in words; Runs compares runs of the same
data by default and says why others are compared on metrics only."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.compare import RunQuality
from core.config import DataConfig
from core.store import Store
from tests.test_infer_bad_input import CHANNELS, stored_untrained_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runs(tmp_path, monkeypatch):
    from dashboard.engine import shutdown_engines

    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    store = Store()
    made = {}
    for name, accuracy, f1 in (("guessing", 0.34, 0.20), ("good", 0.95, 0.94)):
        run_id = stored_untrained_run(name, "resnet1d", DataConfig(source="hapt"), (6, 128),
                                      ["WALKING", "SITTING", "LAYING"], CHANNELS, 50.0, "imu",
                                      {"base_channels": 8, "num_stages": 2})
        with store.writer(run_id) as w:
            w.metrics(30, 3, "test", {"accuracy": accuracy, "macro_f1": f1})
        made[name] = run_id
    yield made
    shutdown_engines()


def open_classify() -> AppTest:
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=90)
    at.run()
    at.switch_page("pages/classify.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_the_picker_shows_accuracy_and_a_chance_level_model_is_flagged(runs):
    at = open_classify()
    picker = at.selectbox(key="classify.run")
    shown = " | ".join(picker.options)  # AppTest lists the options as the picker shows them
    assert "hapt · test acc 0.950 · F1 0.940" in shown and "hapt · test acc 0.340 · F1 0.200" in shown, shown
    picker.set_value(runs["guessing"]).run()
    warnings = [w.value for w in at.warning]
    assert any("about chance (0.33 for 3 classes)" in w for w in warnings), warnings
    at.selectbox(key="classify.run").set_value(runs["good"]).run()
    assert not any("about chance" in w.value for w in at.warning)


def test_near_chance_is_judged_against_the_class_count():
    assert RunQuality("fsdd", 10, 0.12, None, "test", 0.1).near_chance  # 10 classes: 0.12 is a guess
    assert not RunQuality("fsdd", 10, 0.60, None, "test", 0.1).near_chance
    assert RunQuality("hapt", 2, 0.53, None, "test", 0.5).near_chance
    assert not RunQuality("hapt", 6, None, None, "", 1 / 6).near_chance  # not scored: no verdict


def _completed(store, source: str, name: str, metrics: dict) -> str:
    run_id = store.create_run({"model": {"name": "resnet1d", "hparams": {}}, "data": {"source": source}}, name=name,
                              status="completed")
    with store.writer(run_id) as w:
        w.metrics(10, 2, "test", metrics)
    return run_id


def test_runs_compares_runs_of_the_same_data_by_default_and_notes_the_others(tmp_path, monkeypatch):
    """FSDD (10 classes) was overlaid on HAPT (6) by default; now the default pair shares its data,
    another dataset added by hand is compared on metrics only, with a note, and mean confidence
    (no better direction) is never highlighted."""
    from dashboard.compare import default_selection
    from dashboard.engine import shutdown_engines

    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    store = Store()
    older_hapt = _completed(store, "hapt", "hapt-a", {"accuracy": 0.90, "mean_confidence": 0.7})
    fsdd = _completed(store, "fsdd", "fsdd-b", {"accuracy": 0.80, "mean_confidence": 0.9})
    newest_hapt = _completed(store, "hapt", "hapt-c", {"accuracy": 0.93, "mean_confidence": 0.8})
    assert default_selection(store.list_runs()) == [newest_hapt, older_hapt]
    try:
        at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=90)
        at.run()
        at.switch_page("pages/runs.py").run()
        assert at.multiselect(key="runs.compare").value == [newest_hapt, older_hapt]
        at.multiselect(key="runs.compare").set_value([newest_hapt, older_hapt, fsdd]).run()
        assert not at.exception, [e.message for e in at.exception]
        notes = [i.value for i in at.info]
        assert any("fsdd-b" in n and "compared on final metrics only" in n for n in notes), notes
    finally:
        shutdown_engines()


def test_two_uea_datasets_are_different_data_and_the_runs_table_names_them():
    """ArrowHead and GunPoint are both source 'uea': the dataset's name keeps them apart, in the
    default comparison and in the Runs table's data column (which said 'uea' for both)."""
    from core.compare import dataset_key
    from dashboard.compare import default_selection

    def run(run_id: str, name: str | None, created: float) -> dict:
        options = {"name": name} if name else {}
        return {"id": run_id, "status": "completed", "created_at": created,
                "config": {"data": {"source": "uea", "options": options}}}

    arrow, gun, arrow2 = run("a", "ArrowHead", 1), run("g", "GunPoint", 2), run("a2", "ArrowHead", 3)
    assert dataset_key(arrow) == "uea ArrowHead" and dataset_key(gun) == "uea GunPoint"
    assert dataset_key({"config": {"data": {"source": "hapt", "options": {"classes": "basic6"}}}}) == "hapt (basic6)"
    assert dataset_key(run("x", None, 0)) == "uea"
    assert default_selection([arrow2, gun, arrow]) == ["a2", "a"]
