"""Explore's marks and cross-validation folds: what a new run trains on, and what its config records."""
from __future__ import annotations

import numpy as np
import pytest

from core.config import DataConfig, RunConfig
from core.data import load
from core.errors import ConfigError, DataError
from core.explore.marks import add_mark, dataset_id, list_marks, marks_words, remove_mark, with_marks
from core.jobs import JobManager
from core.store import Store

HAPT = DataConfig(source="hapt", options={"classes": "basic6"}, split="stratified")


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "sigscope.db")


def test_folds_divide_the_training_subjects_and_each_window_is_tested_once():
    base = load(HAPT)
    training = set(base.train.ids.tolist())
    tested = []
    for fold in range(4):
        bundle = load(DataConfig.from_dict({**HAPT.to_dict(), "folds": 4, "fold": fold}))
        groups = set(bundle.test.groups.tolist())
        assert len(groups) == 1, "4 folds over 4 training subjects: one subject per fold"
        assert not groups & set(bundle.train.groups.tolist()), "a subject is never in train and test at once"
        assert np.array_equal(bundle.val.ids, base.val.ids), "validation is the run's own, unchanged"
        tested.extend(bundle.test.ids.tolist())
    assert sorted(tested) == sorted(training), "every training window is tested by exactly one fold"


def test_more_folds_than_training_subjects_is_refused_with_the_count():
    with pytest.raises(DataError, match=r"folds=3 need 3 subjects/speakers .* it has 2"):
        load(DataConfig(source="hapt", options={"classes": "basic6"}, split="subject", folds=3))
    with pytest.raises(DataError, match="fold=4 is not one of the 4 folds"):
        load(DataConfig.from_dict({**HAPT.to_dict(), "folds": 4, "fold": 4}))


def test_marks_are_kept_per_dataset_and_replace_each_other(store):
    add_mark(store, HAPT, "2:0:320", "exclude")
    add_mark(store, HAPT, "2:0:384", "relabel", "SITTING")
    add_mark(store, HAPT, "2:0:320", "relabel", "LAYING")  # one mark per window: the new one wins
    marks = list_marks(store, HAPT)
    assert [(m.window_id, m.action, m.label) for m in marks] == [("2:0:384", "relabel", "SITTING"),
                                                                 ("2:0:320", "relabel", "LAYING")]
    other = DataConfig.from_dict({**HAPT.to_dict(), "stride": 32})  # the same recordings cut another way
    assert dataset_id(other) != dataset_id(HAPT) and list_marks(store, other) == []
    assert dataset_id(DataConfig.from_dict({**HAPT.to_dict(), "split": "subject"})) == dataset_id(HAPT)
    assert remove_mark(store, HAPT, "2:0:384") and not remove_mark(store, HAPT, "2:0:384")
    assert marks_words(list_marks(store, HAPT)) == "1 relabelled"
    with pytest.raises(ConfigError, match="needs the class"):
        add_mark(store, HAPT, "2:0:448", "relabel")
    with pytest.raises(ConfigError, match="use one of exclude, relabel"):
        add_mark(store, HAPT, "2:0:448", "delete")


def test_a_new_run_leaves_excluded_windows_out_of_training_and_records_the_marks(store):
    base = load(HAPT)
    excluded = base.train.ids[:5].tolist() + base.val.ids[:2].tolist()
    relabelled = base.train.ids[10]
    for window in excluded:
        add_mark(store, HAPT, window, "exclude")
    add_mark(store, HAPT, relabelled, "relabel", "LAYING")
    add_mark(store, HAPT, base.test.ids[0], "exclude")  # the test split is left as it is
    config = with_marks(RunConfig().with_overrides({
        "data.source": "hapt", "data.options": {"classes": "basic6"}, "data.split": "stratified",
        "model.name": "resnet1d", "model.hparams.base_channels": 8, "model.hparams.num_stages": 1,
        "model.hparams.blocks_per_stage": 1, "train.epochs": 1, "train.batch_size": 64,
        "train.probes.histogram_every_n_steps": 0}, explicit=False), list_marks(store, HAPT))

    jobs = JobManager(store, devices=["cpu"], mode="thread", check_memory=False)
    try:
        run_id = jobs.submit(config, name="with marks")
        assert jobs.wait(run_id, timeout=600) == "completed", store.get_run(run_id)["error"]
    finally:
        jobs.shutdown(cancel=True, timeout=30)

    recorded = store.get_run(run_id)["config"]["data"]
    assert sorted(recorded["exclude"]) == sorted(excluded + [base.test.ids[0]])
    assert recorded["relabel"] == {relabelled: "LAYING"}
    again = load(recorded)  # the run's own config, read back, gives the data it trained on
    assert not set(excluded) & (set(again.train.ids.tolist()) | set(again.val.ids.tolist()))
    assert len(again.train) == len(base.train) - 5 and len(again.val) == len(base.val) - 2
    assert np.array_equal(again.test.ids, base.test.ids), "test windows are never excluded"
    where = again.train.ids.tolist().index(relabelled)
    assert again.class_names[again.train.y[where]] == "LAYING"
    assert again.info["marks"] == {"excluded": 7, "relabelled": 1, "not_in_train_or_val": 1}


def test_a_relabel_to_a_class_the_data_does_not_have_is_refused():
    with pytest.raises(DataError, match="does not have"):
        load(DataConfig.from_dict({**HAPT.to_dict(), "relabel": {"2:0:320": "JUMPING"}}))


def test_the_cli_adds_lists_and_removes_marks_on_a_runs_data(tmp_path, monkeypatch, capsys):
    import json

    from core.__main__ import main
    from core.demo import install_bundled

    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path / "cli"))
    store = Store()
    run_id = install_bundled(store, "demo-imu")
    assert main(["explore", "marks", "--run", "demo-imu", "--exclude", "2:0:320", "--relabel", "2:0:384=SITTING"]) == 0
    assert "1 excluded, 1 relabelled" in capsys.readouterr().out
    assert main(["explore", "marks", "--run", "demo-imu", "--relabel", "2:0:448=JUMPING"]) == 2
    assert "'JUMPING' is not one of the run's classes" in capsys.readouterr().err
    assert main(["explore", "marks", "--run", run_id, "--remove", "2:0:320", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(m["window_id"], m["action"], m["label"]) for m in shown["marks"]] == [("2:0:384", "relabel", "SITTING")]
    assert main(["explore", "marks", "--run", run_id, "--remove", "2:0:320"]) == 2
