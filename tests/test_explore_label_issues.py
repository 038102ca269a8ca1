"""Label issues (cleanlab over out-of-sample probabilities), near-duplicates and outliers.

The proof: 5 % of bundled HAPT's training windows are given another class through
`data.relabel`, K=3 cross-validation fold runs (over its 4 subjects) train a small ResNet1D
through a JobManager, and the flipped windows must fill most of the top of the ranking.
Measured on this machine (flip seeds 0-3 x K=3/4 x 6-10 epochs): recall of the flipped windows
in the top 2 x flipped was 0.73-0.88 (this test's set-up, flip seed 0: 0.88, 36 of 41), so the
test asks for 0.6.
"""
from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import numpy as np
import pytest

from core.config import DataConfig, ModelConfig, OptimConfig, ProbeConfig, RunConfig, ScheduleConfig, TrainConfig
from core.errors import ConfigError, DataError
from core.explore.label_issues import (METHOD_SELF, cli_label_issues, find_fold_runs, fold_configs, fold_status,
                                       label_issues, rank_label_issues, submit_fold_runs)
from core.explore.neighbours import near_duplicates, outliers

pytestmark = pytest.mark.usefixtures("one_thread")

FLIP_SHARE = 0.05
FOLDS = 3
MIN_RECALL = 0.6  # measured 0.73-0.88; see the module doc


def hapt_data(**fields) -> DataConfig:
    return DataConfig(source="hapt", options={"classes": "basic6"}, split="stratified", **fields)


def small_run(data: DataConfig, name: str = "flipped") -> RunConfig:
    return RunConfig(name=name, data=data,
                     model=ModelConfig(name="resnet1d", hparams={"base_channels": 16, "num_stages": 2,
                                                                 "blocks_per_stage": 1}),
                     optim=OptimConfig(lr=3e-3), schedule=ScheduleConfig(name="onecycle"),
                     train=TrainConfig(epochs=6, batch_size=64, device="cpu", probes=ProbeConfig(enabled=False),
                                       checkpoint_every_epoch=False))


def flipped_labels(share: float, seed: int = 0) -> dict[str, str]:
    """window id -> another class, for `share` of the bundled HAPT training windows."""
    from core.data import load

    bundle = load(hapt_data())
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(bundle.train), size=round(share * len(bundle.train)), replace=False)
    relabel = {}
    for i in chosen:
        others = [c for c in range(len(bundle.class_names)) if c != int(bundle.train.y[i])]
        relabel[str(bundle.train.ids[i])] = bundle.class_names[int(rng.choice(others))]
    return relabel


@pytest.fixture(scope="module")
def flipped_run():
    """A stored run whose config flips 5 % of the training labels, and its 3 completed fold runs.
    The run itself is stored untrained (a shortcut): cross-validation reads only its config and data."""
    from core.jobs import JobManager
    from core.store import Store

    store = Store()
    relabel = flipped_labels(FLIP_SHARE)
    config = small_run(hapt_data(relabel=relabel))  # stored as written (its source options not filled in)
    run_id = store.create_run(config.to_dict(), name="flipped", status="completed")
    manager = JobManager(store, devices=["cpu"], mode="thread", check_memory=False)
    try:
        fold_ids = submit_fold_runs(run_id, FOLDS, manager, store)
        for fold_id in fold_ids:
            assert manager.wait(fold_id) == "completed", store.get_run(fold_id)["error"]
    finally:
        manager.shutdown(cancel=True, timeout=60)
    return SimpleNamespace(store=store, run_id=run_id, fold_ids=fold_ids, flipped=set(relabel))


def test_cross_validation_finds_most_flipped_training_labels(flipped_run):
    found = label_issues(flipped_run.run_id, store=flipped_run.store, fold_runs=flipped_run.fold_ids)
    n = len(flipped_run.flipped)
    assert found.method == "cross-validation (3 folds over subjects)"
    assert found.n_scored == 818 and set(found.splits) == {"train"}, "every training window scored once"
    ranked = [issue.id for issue in found.issues]
    recall = len(flipped_run.flipped & set(ranked[:2 * n])) / n
    print(f"recall of {n} flipped windows in the top {2 * n}: {recall:.3f}; "
          f"top {n}: {len(flipped_run.flipped & set(ranked[:n])) / n:.3f}")
    assert recall >= MIN_RECALL
    # a flipped window's suggestion is mostly its true class: the given label is the flipped one
    first = next(i for i in found.issues if i.id in flipped_run.flipped)
    assert first.given != first.suggested


def test_fold_runs_are_found_again_and_named_after_their_run(flipped_run):
    store = flipped_run.store
    runs = find_fold_runs(store, flipped_run.run_id)
    assert [r.run_id for r in runs] == flipped_run.fold_ids
    assert [r.name for r in runs] == [f"flipped · fold {k}/3" for k in (1, 2, 3)]
    status = fold_status(store, flipped_run.fold_ids)
    assert status.ended and status.completed == 3 and status.progress == 1.0 and not status.failed
    assert status.line() == "fold runs: 3 of 3 completed"
    assert label_issues(flipped_run.run_id, folds=3, store=store).fold_runs == flipped_run.fold_ids


def test_cli_reuses_completed_fold_runs(flipped_run, capsys):
    code = cli_label_issues(argparse.Namespace(run=flipped_run.run_id, folds=3, json=True, top=5))
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["fold_runs"] == flipped_run.fold_ids and len(out["issues"]) == 5
    assert [i["rank"] for i in out["issues"]] == [1, 2, 3, 4, 5]


def test_nan_probabilities_from_a_fold_run_are_refused_by_name(flipped_run, monkeypatch):
    import core.infer
    real = core.infer.split_probabilities
    broken = flipped_run.fold_ids[1]

    def nan_for_one_fold(predictor, split="test", *args, **kwargs):
        answer = real(predictor, split, *args, **kwargs)
        if predictor.run_id == broken:
            answer.probabilities[3] = np.nan
        return answer

    monkeypatch.setattr(core.infer, "split_probabilities", nan_for_one_fold)
    with pytest.raises(ConfigError, match=f"fold run {broken} gives NaN"):
        label_issues(flipped_run.run_id, store=flipped_run.store, fold_runs=flipped_run.fold_ids)


def test_nan_probabilities_are_never_ranked():
    probs = np.full((4, 2), 0.5)
    probs[2, 0] = np.nan
    with pytest.raises(ConfigError, match="1 of 4 windows have NaN"):
        rank_label_issues(np.array(["a", "b", "c", "d"]), np.array([0, 1, 0, 1]), probs,
                          np.array(["val"] * 4), ["x", "y"], METHOD_SELF)


def test_more_folds_than_training_subjects_is_refused_before_anything_is_queued():
    from core.store import Store

    store = Store()
    run_id = store.create_run(small_run(hapt_data()).validated().to_dict(), name="four subjects")

    class Recorder:  # a JobManager stand-in: nothing may be submitted
        submitted = []

        def submit(self, *args, **kwargs):
            self.submitted.append(args)

    with pytest.raises(DataError, match=r"K=5 folds need 5 subjects in the training split; run .* trains on 4 "
                                        r"\(1, 2, 3, 4\)"):
        submit_fold_runs(run_id, 5, Recorder(), store)
    assert Recorder.submitted == []
    with pytest.raises(ConfigError, match="at least 2 folds"):
        fold_configs(small_run(hapt_data()), 1, groups=["1", "2"])
    configs = fold_configs(small_run(hapt_data()), 4, groups=["1", "2", "3", "4"])
    assert [(c.data.folds, c.data.fold, c.name) for c in configs][-1] == (4, 3, "flipped · fold 4/4")


def test_the_cheap_option_ranks_the_demo_runs_val_and_test_windows(capsys):
    from core.data import load
    from core.demo import install_bundled
    from core.store import Store

    store = Store()
    run_id = install_bundled(store, "demo-imu")
    found = label_issues(run_id, store=store)
    bundle = load(RunConfig.from_dict(store.get_run(run_id)["config"]).data)
    held_out = set(bundle.val.ids.astype(str)) | set(bundle.test.ids.astype(str))
    assert found.method == METHOD_SELF and found.n_scored == len(held_out) and found.issues
    assert {i.id for i in found.issues} <= held_out and {i.split for i in found.issues} <= {"val", "test"}
    qualities = [i.quality for i in found.issues]
    assert qualities == sorted(qualities), "worst first"
    assert [i.rank for i in found.issues] == list(range(1, len(found.issues) + 1))
    assert all(found.ids[i.index] == i.id for i in found.issues)

    assert cli_label_issues(argparse.Namespace(run=run_id, folds=None, json=False, top=3)) == 0
    text = capsys.readouterr().out
    assert "the run itself (val + test)" in text and found.issues[0].id in text


def embedding(vectors: np.ndarray, labels, source) -> SimpleNamespace:
    n = len(vectors)
    return SimpleNamespace(vectors=vectors.astype(np.float32),
                           table=SimpleNamespace(labels=np.asarray(labels), source=np.asarray(source),
                                                 start_s=np.full(n, np.nan)))


def test_near_duplicates_find_a_planted_copy_and_skip_a_recordings_own_windows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 16))
    labels = rng.integers(0, 3, 80)
    source = np.array([f"rec{i}" for i in range(80)])
    x[60] = x[5]                 # the same window under another recording and label
    labels[60] = (labels[5] + 1) % 3
    x[70] = x[20] + 1e-4         # a near copy inside one recording: natural, skipped by default
    source[70] = source[20]
    pairs = near_duplicates(embedding(x, labels, source), top=5)
    assert (pairs[0].i, pairs[0].j) == (5, 60) and pairs[0].distance == pytest.approx(0.0, abs=1e-5)
    assert pairs[0].labels_differ
    assert all({p.i, p.j} != {20, 70} for p in pairs)
    with_own = near_duplicates(embedding(x, labels, source), top=5, skip_same_recording=False)
    assert {(p.i, p.j) for p in with_own[:2]} == {(5, 60), (20, 70)}
    assert len({(p.i, p.j) for p in with_own}) == len(with_own), "each pair once"
    disagreeing = near_duplicates(embedding(x, labels, source), top=10, different_labels_only=True)
    assert disagreeing[0][:2] == (5, 60) and all(p.labels_differ for p in disagreeing)


def test_outliers_put_a_planted_far_point_first():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 8))
    x[42] += 25.0
    odd = outliers(embedding(x, np.zeros(100, int), np.arange(100).astype(str)), top=3)
    assert odd[0].i == 42 and odd[0].score > 3 * odd[1].score
    with pytest.raises(ConfigError, match="NaN"):
        x[3, 0] = np.nan
        outliers(embedding(x, np.zeros(100, int), np.arange(100).astype(str)))
