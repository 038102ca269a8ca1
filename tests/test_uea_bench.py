"""bench/uea.py: its ranks, its summary over datasets and seeds, the configs it trains, and
one real dataset end to end against aeon (seconds)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.uea import Result, config_for, ranks, summarize

ROOT = Path(__file__).resolve().parents[1]


def test_ranks_share_ties_and_put_the_best_first():
    assert ranks({"a": 0.9, "b": 0.95, "c": 0.9, "d": 0.5}) == {"b": 1.0, "a": 2.5, "c": 2.5, "d": 4.0}


def test_summary_means_over_seeds_and_ranks_only_datasets_every_method_ran():
    results = [Result("X", "m1", 0, 0.8, 1, 1), Result("X", "m1", 1, 1.0, 1, 3), Result("X", "m2", 0, 0.7, 1, 1),
               Result("Y", "m1", 0, 0.5, 1, 1), Result("Y", "m2", 0, 0.6, 1, 1),
               Result("Z", "m1", 0, 0.9, 1, 1), Result("Z", "m2", 0, float("nan"), 1, 1, "failed: x")]
    s = summarize(results, ["m1", "m2"], ["X", "Y", "Z"])
    assert s["table"]["X"]["m1"] == {"mean": pytest.approx(0.9), "min": 0.8, "max": 1.0, "cpu_s": 2, "n": 2}
    assert "m2" not in s["table"]["Z"], "a failed run is not a score"
    assert s["datasets_ranked"] == ["X", "Y"]
    assert s["overall"]["m1"] == {"mean_accuracy": pytest.approx(0.7), "mean_rank": 1.5}
    assert s["overall"]["m2"]["mean_rank"] == 1.5


def test_the_methods_train_what_they_name():
    small = config_for("uea_small", "GunPoint", 2, 50)
    assert (small.model.name, small.train.fit, small.data.validation, small.data.options["name"], small.train.seed) \
        == ("minirocket", "ridge", "auto", "GunPoint", 2), "the preset as a user picks it, untouched but the data"
    deep = config_for("inception_time", "ArrowHead", 0, 50)
    assert (deep.model.name, deep.train.epochs, deep.data.validation, deep.data.split) == ("inception_time", 50, "auto",
                                                                                          "fixed")


def test_one_dataset_end_to_end_against_aeon(tmp_path):
    pytest.importorskip("aeon")
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "bench/uea.py", "--datasets", "ItalyPowerDemand", "--methods",
                           "uea_small,aeon_minirocket", "--seeds", "1", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = {r["method"]: r["accuracy"] for r in json.loads(out.read_text())["results"]}
    assert abs(results["uea_small"] - results["aeon_minirocket"]) <= 0.02, results
    assert "| ItalyPowerDemand |" in done.stdout and "mean rank" in done.stdout
