"""Seed ensembles (core/ensembles.py): one config trained N times with consecutive seeds and
classified as one model, as InceptionTime's paper does with five. From the CLI (`train
--ensemble N`, `evaluate --ensemble TAG`), from Train (Start queues N runs) and on Classify
(the ensemble is in the Model picker with its own test accuracy, and classifies a file)."""
from __future__ import annotations

import contextlib
import io
import json
import signal
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import RunConfig
from core.ensembles import SEED_MARK, cached_score, list_ensembles, seed_configs
from core.errors import ConfigError
from core.store import Store

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
# MiniRocket with a ridge head on GunPoint (50 training series): a run is about a second
GUNPOINT = ["--preset", "uea_small", "--set", "data.options.name=GunPoint", "--set", "num_features=840",
            "--device", "cpu"]


def cli(*argv: str) -> tuple[int, str, str]:
    """`python -m core ARGV` in this process: (exit code, stdout, stderr)."""
    from core.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    sigterm = signal.getsignal(signal.SIGTERM)  # training in the foreground takes SIGTERM over
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    return code, out.getvalue(), err.getvalue()


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


# ---- the configs -------------------------------------------------------------------------------
def test_the_seeds_of_an_ensemble_differ_only_in_their_seed_and_name():
    from core.presets import get

    base = get("uea_small").config.with_overrides({"train.seed": 7, "name": "gp"})
    plan = seed_configs(base, 3)
    assert plan.tag.startswith("ens-") and plan.seeds == [7, 8, 9]
    assert [c.name for c in plan.configs] == [f"gp{SEED_MARK}{k}/3" for k in (1, 2, 3)]
    reference = flat(base.to_dict())
    for k, config in enumerate(plan.configs):
        changed = {key for key, v in flat(config.to_dict()).items() if reference.get(key) != v}
        assert changed == ({"train.seed", "name"} if k else {"name"})  # the first keeps the config's seed
    assert seed_configs(base, 3).tag != plan.tag, "each ensemble gets its own tag"
    lone = seed_configs(base, 1)
    assert lone.tag == "" and lone.configs[0] == base.validated()
    unnamed = seed_configs(RunConfig(), 2)
    assert unnamed.configs[0].name == f"{RunConfig().model.name} on {RunConfig().data.source}{SEED_MARK}1/2"
    for bad in (0, 21, True, 2.5):
        with pytest.raises(ConfigError, match="ensemble of"):
            seed_configs(base, bad)
    with pytest.raises(ConfigError, match="no room for 3 seeds"):
        seed_configs(base.with_overrides({"train.seed": 2**32 - 2}), 3)


def test_a_store_made_before_ensembles_opens_and_gains_the_tag_column(tmp_path):
    import sqlite3

    from core.store import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version, migrate in MIGRATIONS[:4]:  # schema 4: before the ensemble column
        migrate(db)
        db.execute("INSERT INTO schema_version(version) VALUES (?)", (version,))
    db.execute("INSERT INTO runs(id, name, status, config, created_at) VALUES ('old', 'kept', 'completed', '{}', 1)")
    db.close()
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION  # every later migration ran on it
    assert store.get_run("old")["name"] == "kept" and store.get_run("old")["ensemble"] is None
    assert store.get_run("old")["parent"] is None and store.marks("any") == []
    assert list_ensembles(store) == []


# ---- the CLI -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`python -m core train ... --ensemble 3` on GunPoint, in a runs folder of this module's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path_factory.mktemp("seeds") / "runs"))
        yield cli("train", *GUNPOINT, "--ensemble", "3")


def test_train_ensemble_stores_three_tagged_runs_and_prints_the_ensembles_accuracy(trained):
    code, out, err = trained
    assert code == 0, err[-2000:]
    store = Store()
    runs = store.list_runs()
    assert len(runs) == 3 and {r["status"] for r in runs} == {"completed"}
    assert len({r["ensemble"] for r in runs}) == 1
    [ensemble] = list_ensembles(store)
    assert [r["config"]["train"]["seed"] for r in ensemble.members] == [0, 1, 2]
    assert [r["name"] for r in ensemble.members] == [f"uea_small{SEED_MARK}{k}/3" for k in (1, 2, 3)]
    line = next(x for x in out.splitlines() if x.startswith(f"ensemble {ensemble.tag} (3 of 3 runs)"))
    accuracy = float(line.split("test_accuracy=")[1].split()[0])
    assert accuracy > 0.9  # MiniRocket on GunPoint: about 0.99
    score = cached_score(store, ensemble)  # computed once by the CLI, kept for Classify's picker
    assert score is not None and score.accuracy == pytest.approx(accuracy, abs=1e-4) and score.n == 150
    assert set(score.member_accuracy) == set(ensemble.run_ids)
    assert ensemble.label(score).startswith("ensemble of 3 · minirocket on uea GunPoint · test acc ")


def test_evaluate_scores_an_ensemble_by_its_tag(trained):
    [ensemble] = list_ensembles(Store())
    code, out, err = cli("evaluate", "--ensemble", ensemble.tag, "--json")
    assert code == 0, err
    scores = json.loads(out)
    assert scores["run_ids"] == ensemble.run_ids and scores["ensemble"] == ensemble.tag
    assert scores["accuracy"] == pytest.approx(cached_score(Store(), ensemble).accuracy, abs=1e-6)
    code, _, err = cli("evaluate", "--ensemble", "ens-nope")
    assert code == 2 and "no ensemble 'ens-nope'" in err and ensemble.tag in err
    code, _, err = cli("evaluate", "--ensemble", ensemble.tag, "--run", ensemble.run_ids[0])
    assert code == 2 and "not both" in err
    code, _, err = cli("train", *GUNPOINT, "--ensemble", "0")
    assert code == 2 and "ensemble of 0 seeds" in err


# ---- Classify ----------------------------------------------------------------------------------
def test_classify_offers_the_ensemble_with_its_accuracy_and_classifies_a_file_with_it(trained):
    from dashboard.engine import shutdown_engines
    from tests.test_explain_minirocket import csv_of, gunpoint

    store = Store()
    [ensemble] = list_ensembles(store)
    scored = cached_score(store, ensemble)
    (store.runs_dir / "ensembles" / f"{ensemble.tag}.json").unlink()  # as after training from the dashboard
    x_test, y_test = gunpoint("test")
    try:
        at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=120)
        at.run()
        at.switch_page("pages/classify.py").run()
        picker = at.selectbox(key="classify.run")
        shown = [o for o in picker.options if o.startswith("ensemble of 3")]
        assert len(shown) == 1 and f"minirocket on uea GunPoint · test acc {scored.accuracy:.3f}" in shown[0], \
            picker.options
        assert cached_score(store, ensemble) == scored  # measured by the page, once, and kept
        picker.set_value("ensemble:" + ensemble.tag).run()
        assert not at.exception, [e.message for e in at.exception]
        assert any("ensemble of 3 runs" in c.value for c in at.caption)
        at.file_uploader[0].set_value([("gunpoint.csv", csv_of(x_test[0]), "text/csv")]).run()
        assert not at.exception, [e.message for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        assert next(m.value for m in at.metric if m.label == "Prediction") == y_test[0]
        assert any("The mean of 3 runs' probabilities" in c.value for c in at.caption)
        # explained by the first run: MiniRocket's dilations and time steps
        assert "What carried the decision: dilations and time steps" in [s.value for s in at.subheader]
    finally:
        shutdown_engines()


# ---- Train -------------------------------------------------------------------------------------
def test_start_with_an_ensemble_of_two_seeds_queues_two_tagged_runs(tmp_path, monkeypatch):
    from dashboard.engine import engine, shutdown_engines
    from tests.test_pages import open_page, open_section

    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    try:
        at = open_page("pages/train.py")
        open_section(at, "Training")
        at.number_input(key="train.ensemble").set_value(2).run()
        open_section(at, "Data")  # the choice holds while the Training section is closed
        assert any("ensemble of 2 seeds" in c.value for c in at.caption)
        at.button(key="train.submit").click().run()
        assert not at.exception, [e.message for e in at.exception]
        assert any("Queued an ensemble of 2 runs" in s.value for s in at.success)
        runs = sorted(Store(tmp_path / "runs" / "sigscope.db").list_runs(), key=lambda r: r["created_at"])
        assert len(runs) == 2 and runs[0]["ensemble"] == runs[1]["ensemble"] is not None
        seed = runs[0]["config"]["train"]["seed"]
        assert [r["config"]["train"]["seed"] for r in runs] == [seed, seed + 1]
        queue = " ".join(m.value for m in at.markdown)
        assert all(f"{SEED_MARK}{k}/2 · {r['id']}" in queue for k, r in enumerate(runs, 1)), queue
        for run in runs:
            engine().cancel(run["id"])
        for run in runs:
            engine().jobs.wait(run["id"], timeout=60)
    finally:
        shutdown_engines()
