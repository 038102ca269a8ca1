"""The small-data regime: below SMALL_TRAIN training series no validation slice is held out,
every training series trains, and the run says the lowest training loss picked its epoch."""
from __future__ import annotations

import numpy as np
import pytest

from core.config import DataConfig, RunConfig
from core.data.examples import Examples
from core.data.splits import SMALL_TRAIN, split_indices
from core.errors import DataError
from core.jobs import run_job
from core.store import Store


def examples(n: int) -> Examples:
    rng = np.random.default_rng(0)
    return Examples(x=rng.normal(size=(n, 2, 16)).astype(np.float32), y=np.arange(n) % 3,
                    groups=np.array([str(i % 5) for i in range(n)]), ids=np.array([str(i) for i in range(n)]),
                    class_names=["a", "b", "c"], channel_names=["u", "v"], sample_rate=10.0, signal="imu")


@pytest.mark.parametrize("n, validation, holds_val", [
    (60, "holdout", True), (60, "auto", False), (60, "none", False),
    (SMALL_TRAIN * 2, "auto", True), (SMALL_TRAIN * 2, "none", False)])
def test_validation_rule_decides_whether_a_slice_is_held_out(n, validation, holds_val):
    cfg = DataConfig(split="stratified", val_fraction=0.2, test_fraction=0.25, validation=validation)
    train, val, test = split_indices(examples(n), cfg)
    assert (len(val) > 0) == holds_val
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(n))  # nothing is lost
    held = split_indices(examples(n), DataConfig(split="stratified", val_fraction=0.2, test_fraction=0.25))
    assert test.tolist() == held[2].tolist(), "the test split never changes with the rule"
    if not holds_val:
        assert sorted(train.tolist()) == sorted(np.concatenate(held[:2]).tolist()), "validation went to training"


def test_an_unknown_rule_is_a_clear_error():
    with pytest.raises(DataError, match="validation='sometimes' is not known; use one of holdout, auto, none"):
        split_indices(examples(30), DataConfig(validation="sometimes"))


def test_a_small_real_run_trains_on_every_series_and_records_its_rule(tmp_path):
    """BasicMotions (aeon, offline): 40 training series; with data.validation=auto all 40 train."""
    pytest.importorskip("aeon")
    cfg = RunConfig().with_overrides({
        "data.source": "uea", "data.options.name": "BasicMotions", "data.split": "fixed", "data.val_fraction": 0.2,
        "data.validation": "auto", "model.name": "resnet1d", "model.hparams.base_channels": 8,
        "model.hparams.num_stages": 1, "model.hparams.blocks_per_stage": 1, "train.epochs": 3,
        "train.batch_size": 16, "train.probes.enabled": False}, explicit=False)
    store = Store(tmp_path / "sigscope.db")
    run_id = store.create_run(cfg.to_dict(), name="small")
    assert run_job(store, run_id, cfg, device="cpu") == "completed"
    run = store.get_run(run_id)
    summary = run["summary"]
    assert "lowest training loss" in summary["epochs_rule"] and "40 training series" in summary["epochs_rule"]
    assert summary["best_metric"] == pytest.approx(min(p["value"] for p in store.metric_series(
        run_id, keys=["loss"], split="train")))
    assert not store.metric_series(run_id, keys=["loss"], split="val"), "nothing was validated"
    events = " ".join(e["message"] for e in store.events(run_id))
    assert "40 train / 0 val / 40 test" in events and "lowest training loss" in events
    assert summary["test_metrics"]["test_accuracy"] > 0


def test_with_no_validation_the_validation_share_is_not_cut_at_all():
    """validation=none ignores data.val_fraction (the form hides it), so it cannot eat the training data."""
    cfg = DataConfig(split="stratified", val_fraction=0.5, test_fraction=0.6, validation="none")
    train, val, test = split_indices(examples(60), cfg)
    assert len(val) == 0 and len(train) + len(test) == 60 and len(train) > 0
