"""The demo models ship as small committed weights (data/demo-models/), installed into a
store in milliseconds the first time one is needed. Each bundled model's stated test
accuracy is re-derived here from its weights and the bundled data; a demo config changed
without re-writing the bundle is caught too. And the training-time estimate a button shows."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.demo import (BUNDLE_DIR, DEMO_NAMES, bundle_manifest, demo_configs, demo_run, ensure_bundled,
                       install_bundled, write_bundle)
from core.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    yield Store()


@pytest.mark.parametrize("name", DEMO_NAMES)
def test_bundled_demo_matches_its_config_and_restates_its_accuracy(store, name):
    """The committed weights were made from today's demo config, and scoring them again on
    the bundled data's test split gives exactly the accuracy and macro-F1 demo.json states."""
    from core.infer import evaluate_split, load_run

    manifest = bundle_manifest(name)
    assert manifest is not None, (f"data/demo-models/{name} is missing or was made from another config than "
                                  f"core.demo.demo_configs(): run `{manifest and manifest['made_by']}`")
    assert (BUNDLE_DIR / name / "model.pt").stat().st_size < 1_000_000  # small: weights only
    run_id = install_bundled(store, name)
    scores = evaluate_split(load_run(run_id, store), "test")
    assert scores["accuracy"] == pytest.approx(manifest["test_accuracy"], abs=1e-6)
    assert scores["macro_f1"] == pytest.approx(manifest["test_macro_f1"], abs=1e-6)
    assert manifest["test_accuracy"] > {"demo-audio": 0.7, "demo-imu": 0.8}[name]  # well above chance (0.1, 1/6)


def test_installed_demo_is_an_ordinary_completed_run_with_its_history(store):
    installed = ensure_bundled(store)
    assert set(installed) == set(DEMO_NAMES)
    assert ensure_bundled(store) == {}  # idempotent: a demo already there is left alone
    for name, run_id in installed.items():
        run = store.get_run(run_id)
        assert run["status"] == "completed" and run["name"] == name
        assert demo_run(store, name)["id"] == run_id
        assert len(store.metric_series(run_id, keys=["loss"], split="step")) > 50  # Monitor's curves
        assert store.final_metrics(run_id)["test_accuracy"] == bundle_manifest(name)["test_accuracy"]
        assert {a["kind"] for a in store.artifacts(run_id)} >= {"config", "classes", "checkpoint_best"}
        assert any("bundled demo weights" in e["message"] for e in store.events(run_id))


def test_dump_and_restore_round_trip(store):
    """What a run dump carries comes back row for row under a new id."""
    run_id = install_bundled(store, "demo-imu")
    store.update_run(run_id, ensemble="seeds-abc")  # a member of a seed ensemble stays one
    dump = store.dump_run(run_id)
    again = store.restore_run(json.loads(json.dumps(dump)))
    assert again != run_id and store.get_run(again)["ensemble"] == "seeds-abc"
    second = store.dump_run(again)
    assert second["tables"] == dump["tables"] and second["run"] == dump["run"]
    with pytest.raises(ValueError, match="not a Sigscope run dump"):
        store.restore_run({"format": 99})


def test_a_stale_bundle_is_not_installed(store, tmp_path):
    """A bundle written from another config (the demo changed since) is ignored: the demo is
    trained instead of serving weights that do not match what the page says it is."""
    copy = tmp_path / "bundle"
    shutil.copytree(BUNDLE_DIR, copy)
    config = json.loads((copy / "demo-imu" / "config.json").read_text())
    config["train"]["epochs"] += 1
    (copy / "demo-imu" / "config.json").write_text(json.dumps(config))
    assert bundle_manifest("demo-imu", copy) is None
    assert install_bundled(store, "demo-imu", copy) is None
    (copy / "demo-audio" / "model.pt").unlink()
    assert bundle_manifest("demo-audio", copy) is None


def test_write_bundle_round_trip(store, tmp_path):
    """write_bundle (what `demo-models --train --write-bundle` calls) writes a bundle that installs."""
    run_id = install_bundled(store, "demo-imu")
    folder = write_bundle(store, "demo-imu", run_id, tmp_path / "out")
    assert json.loads((folder / "demo.json").read_text())["test_accuracy"] == store.final_metrics(run_id)[
        "test_accuracy"]
    assert install_bundled(store, "demo-imu", tmp_path / "out") is not None


def test_cli_installs_and_predict_finds_a_demo_on_a_fresh_store(tmp_path):
    env = {"SIGSCOPE_RUNS_DIR": str(tmp_path / "runs"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "core", "demo-models", "--only", "demo-imu", "--json"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out[0]["how"] == "bundled" and out[0]["status"] == "completed"
    env["SIGSCOPE_RUNS_DIR"] = str(tmp_path / "other")
    wav = ROOT / "data" / "fsdd" / "recordings" / "7_jackson_0.wav"
    done = subprocess.run([sys.executable, "-m", "core", "predict", "--run", "demo-audio", str(wav), "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)[0]
    assert answer["label"] in [str(d) for d in range(10)] and 0 < answer["confidence"] <= 1


def test_training_time_estimate():
    """The estimate scales with epochs and data; words are rounded as people say them."""
    from core.data import load
    from core.profiling.duration import describe_seconds, estimate_training_time

    cfg = demo_configs()["demo-imu"]
    data = load(cfg.data)
    args = (data.input_shape, len(data.class_names), len(data.train), len(data.val), len(data.test))
    one = estimate_training_time(cfg, *args, flops_per_s=1e11)
    cfg.train.epochs *= 2
    two = estimate_training_time(cfg, *args, flops_per_s=1e11)
    assert one.flops_per_window > 1e6 and one.seconds > 1
    assert two.seconds - 1 == pytest.approx(2 * (one.seconds - 1), rel=0.05)
    assert "one CPU core" in one.text()
    assert [describe_seconds(s) for s in (3.2, 22, 300, 7200)] == ["3 s", "20 s", "5 min", "2.0 h"]


def test_classify_on_a_fresh_store_is_ready_at_once(store):
    """A new user opens Classify on an empty store: the demo models are there, no training."""
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=90)
    at.run()
    at.switch_page("pages/classify.py").run()
    assert not at.exception
    picker = at.selectbox(key="classify.run")
    assert "demo-audio" in picker.options[picker.index]
    assert not [b for b in at.button if b.label.startswith("Train demo")]
    assert {r["name"] for r in store.list_runs("completed")} == set(DEMO_NAMES)


def test_classify_beside_own_runs_offers_the_demos_in_one_click(store):
    from core.config import DataConfig
    from tests.test_infer_bad_input import CHANNELS, stored_untrained_run

    stored_untrained_run("mine", "resnet1d", DataConfig(source="hapt"), (6, 128), ["WALKING", "SITTING"],
                         CHANNELS, 50.0, "imu", {"base_channels": 8, "num_stages": 2})
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=90)
    at.run()
    at.switch_page("pages/classify.py").run()
    assert not at.exception
    assert {r["name"] for r in store.list_runs("completed")} == {"mine"}  # nothing added unasked
    at.button(key="classify.demo.install").click().run()
    assert {r["name"] for r in store.list_runs("completed")} == {"mine", *DEMO_NAMES}


def test_without_a_bundle_classify_offers_training_and_says_how_long(store, monkeypatch, tmp_path):
    """No usable committed weights (e.g. the demo config changed): the buttons train the demos
    and each says how long that takes, from the profiler's estimate."""
    import core.demo

    monkeypatch.setattr(core.demo, "BUNDLE_DIR", tmp_path / "no-bundle")
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=90)
    at.run()
    at.switch_page("pages/classify.py").run()
    assert not at.exception
    assert {b.label for b in at.button} >= {"Train demo-audio", "Train demo-imu"}
    said = " ".join(c.value for c in at.caption)
    assert said.count("on one CPU core (estimated from its FLOPs") == 2, said
    assert store.list_runs() == []


def test_probe_cadence_is_said_in_words():
    from dashboard.estimates import probe_cadence

    cfg = demo_configs()["demo-imu"]
    cfg.train.probes.every_n_steps, cfg.train.probes.histogram_every_n_steps = 25, 100
    assert probe_cadence(cfg, 13).startswith("probes every 25 steps (about 4 points), histograms every 100 steps")
    cfg.train.probes.every_n_steps = cfg.train.probes.histogram_every_n_steps = None
    text = probe_cadence(cfg, 13)  # 104 steps: scaled to about 50 and 20 points
    assert text == ("probes every 2 steps (about 52 points), histograms every 5 steps (about 20), "
                    "scaled to the run's length"), text


def test_train_says_how_long_start_will_take_and_the_probe_cadence(store):
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=90)
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    said = " ".join(c.value for c in at.caption)
    assert "on one CPU core (estimated from its FLOPs" in said, said
    assert "probes every" in said and "histograms every" in said, said
