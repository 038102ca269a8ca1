"""Sweeps (core.sweep): the space is the spec, a config over budget or invalid never trains, a
bad trial is pruned at the right epoch (Optuna's pruner for one objective, Sigscope's median
rule for several), a 2-worker sweep on bundled HAPT records every trial once, two worker
processes split one study, a killed worker's trial is failed and retried, a stopped sweep
keeps its finished trials and resumes, the best config trains as a run, bad input is one
clear message before any trial, and the cost estimates equal the profiler's."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from core import spec as typed
from core import sweep
from core.__main__ import main
from core.config import RunConfig
from core.store import Store
from tests.test_runs_as_processes import wait_until

ROOT = Path(__file__).resolve().parents[1]
TINY = {"data.options.per_class": 16, "model.hparams.base_channels": 8, "model.hparams.num_stages": 1,
        "train.batch_size": 16}
HAPT = {"data.source": "hapt", "data.options.classes": "basic6", "data.split": "subject",
        "model.hparams.base_channels": 8, "model.hparams.num_stages": 1, "train.batch_size": 64}


@pytest.fixture
def runs(tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(folder))
    folder.mkdir()
    return folder


@pytest.fixture
def store(runs):
    return Store(runs / "sigscope.db")


def make_spec(base: dict | None = None, space: dict | None = None, **settings) -> sweep.SweepSpec:
    config = RunConfig().with_overrides(base if base is not None else TINY)
    settings = {"trials": 2, "epochs": 2, "workers": 1, **settings}
    return sweep.SweepSpec(config.to_dict(), sweep.parse_space(space if space is not None else
                                                               {"optim.lr": {"low": 1e-3, "high": 1e-2, "log": True}}),
                           sweep.parse_settings(settings))


def by_number(name: str) -> dict[int, dict]:
    return {t["number"]: t for t in sweep.trials(name)}


# ---- the space is the spec -----------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [{}, {"model.name": "har_transformer"}, {"model.name": "tcn_dilated"}])
def test_the_space_built_from_the_spec_has_every_parameters_range_and_type(overrides):
    base = RunConfig().with_overrides(overrides)
    entries = sweep.choosable(base)
    keys = [e.key for e in entries]
    assert keys[0] == "model.name" and "optim.lr" in keys and "train.batch_size" in keys
    assert "train.label_smoothing" in keys and "optim.weight_decay" in keys
    assert not {"train.epochs", "train.seed", "train.device", "data.source"} & set(keys)
    for e in typed.params(base):
        if e.key.startswith("model.hparams.") and e.active and e.param.type in ("int", "float", "choice", "bool"):
            assert e.key in keys, e.key
    spec = sweep.SweepSpec(base.to_dict(), sweep.parse_space(keys), sweep.SweepSettings())
    dims, problems = sweep.resolved_dims(spec)
    assert problems == []
    for dim in dims:
        where = {**base.to_dict(), "model": {"name": dim.models[0], "hparams": {}}} if dim.models else base
        p = typed.lookup(dim.key, where)
        if p.type in ("choice", "bool"):
            assert dim.choices and all(p.coerce(c) == c for c in dim.choices), dim
        else:
            assert p.low <= dim.low <= dim.high <= p.high, dim
            assert isinstance(dim.low, int) == (p.type == "int"), dim
            assert bool(dim.log) == bool(p.log), dim


def test_a_sampled_config_is_the_base_with_the_sampled_values():
    spec = make_spec(space={"optim.lr": {"low": 1e-4, "high": 1e-2, "log": True}, "model.hparams.kernel_size": {},
                            "train.label_smoothing": {"low": 0.0, "high": 0.2}})
    dims = sweep.check(spec)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(5):
        trial = study.ask()
        overrides = sweep.suggest(trial, dims, spec.base)
        config = sweep.trial_config(spec, overrides)
        assert 1e-4 <= config.optim.lr <= 1e-2 and 0 <= config.train.label_smoothing <= 0.2
        assert config.model.hparams["kernel_size"] == overrides["model.hparams.kernel_size"]
        assert config.train.epochs == 2 and config.model.hparams["base_channels"] == 8, "the rest stays at the base"
        study.tell(trial, 0.0)


# ---- before training: invalid and over budget ---------------------------------------------------
def test_an_over_budget_or_invalid_config_is_refused_without_a_training_step(runs, store):
    spec = make_spec(base={**TINY, "model.hparams.block": "bottleneck"},
                     space={"model.hparams.base_channels": {"low": 8, "high": 64}}, trials=2, max_params=2_000)
    name = sweep.create_study(spec)
    study, _ = sweep.load(name)
    study.enqueue_trial({"model.hparams.base_channels": 64})  # 9,092 parameters: over the 2k budget
    study.enqueue_trial({"model.hparams.base_channels": 10})  # not a multiple of 4 with bottleneck blocks
    started = time.perf_counter()
    result = sweep.SweepWorker(name, store=store).run()
    assert time.perf_counter() - started < 30, "refusals take milliseconds, not a training run"
    assert result["trials"]["pruned"] == 2 and store.study_runs(name) == [], "no run was created, nothing trained"
    over, invalid = by_number(name)[0], by_number(name)[1]
    assert "parameters" in over["reason"] and "9.09k > 2k budget" in over["reason"], over["reason"]
    assert over["costs"]["params"] == 9092 and over["stage"].startswith("before training (")
    assert "base_channels=10 must be a multiple of 4" in invalid["reason"], invalid["reason"]


# ---- pruning during training -------------------------------------------------------------------
@pytest.mark.parametrize("costs", [[], ["params"]], ids=["one objective (Optuna's median pruner)",
                                                        "two objectives (Sigscope's median rule)"])
def test_a_bad_trial_is_pruned_at_the_first_epoch_it_may_be(runs, store, costs):
    lr = {"optim.lr": {"low": 1e-7, "high": 1e-2, "log": True}}
    spec = make_spec(space=lr, trials=2, epochs=4, costs=costs, startup_trials=1, warmup_epochs=2)
    name = sweep.create_study(spec)
    study, _ = sweep.load(name)
    # an earlier trial at 0.99 from its first epoch on, then a learning rate that learns nothing
    study.add_trial(optuna.trial.create_trial(
        values=[0.99] + [1000.0] * len(costs), params={"optim.lr": 5e-3}, user_attrs={"curve": [0.99] * 4},
        distributions={"optim.lr": optuna.distributions.FloatDistribution(1e-7, 1e-2, log=True)},
        intermediate_values={e: 0.99 for e in range(1, 5)}))
    study.enqueue_trial({"optim.lr": 1e-7})
    result = sweep.SweepWorker(name, store=store).run()
    assert result["trials"]["pruned"] == 1, result
    trial = by_number(name)[1]
    run = store.get_run(trial["run_id"])
    assert run["status"] == "pruned" and run["trial"] == 1 and run["study"] == name
    assert "pruned after epoch 2" in trial["reason"] and "worse than the median 0.99" in trial["reason"], trial["reason"]
    assert ("Sigscope's median rule" in trial["reason"]) == bool(costs)
    val = store.metric_series(run["id"], keys=["accuracy"], split="val")
    assert [r["epoch"] for r in val] == [0, 1], "it trained exactly the two warm-up epochs"
    assert store.metric_series(run["id"], keys=["accuracy"], split="test") == [], "a pruned trial skips the test split"
    assert len(trial["curve"]) == 2


# ---- whole sweeps ---------------------------------------------------------------------------------
def test_a_six_trial_two_worker_sweep_on_bundled_hapt_records_every_trial_once(runs, store):
    spec = make_spec(base=HAPT, space={"optim.lr": {"low": 3e-4, "high": 3e-2, "log": True},
                                       "model.hparams.base_channels": {"low": 8, "high": 32}},
                     trials=6, workers=2, epochs=1, max_params=10_000, pruner="none")
    name = sweep.create_study(spec)
    study, _ = sweep.load(name)
    study.enqueue_trial({"model.hparams.base_channels": 32, "optim.lr": 1e-3})  # 14,150 parameters: over budget
    result = sweep.SweepWorker(name, store=store).run()
    rows = sweep.trials(name)
    assert sorted(r["number"] for r in rows) == list(range(6))
    assert result["trials"]["complete"] + result["trials"]["pruned"] == 6 and result["trials"]["failed"] == 0
    assert result["trials"]["pruned"] >= 1 and "budget" in by_number(name)[0]["reason"]
    runs_ = store.study_runs(name)
    trained = [r for r in rows if r["run_id"]]
    assert sorted(r["trial"] for r in runs_) == sorted(r["number"] for r in trained), "one run per trained trial"
    assert len({r["id"] for r in runs_}) == len(runs_)
    for r in trained:
        run = store.get_run(r["run_id"])
        assert run["status"] == "completed" and r["state"] == "complete"
        assert r["value"] == pytest.approx(max(p["value"] for p in store.metric_series(
            run["id"], keys=["accuracy"], split="val")))
        assert run["config"]["data"]["source"] == "hapt" and run["config"]["train"]["epochs"] == 1
    spans = sorted((store.get_run(r["run_id"])["created_at"], store.get_run(r["run_id"])["finished_at"])
                   for r in trained)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "two trials were in flight at once"
    assert result["best"]["value"] == max(r["value"] for r in trained)
    assert store.get_sweep(name)["status"] == "finished"


def _worker_process(runs: Path, name: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core", "sweep", "worker", "--study", name, "--workers", "1"],
                            env=dict(os.environ, SIGSCOPE_RUNS_DIR=str(runs), **(env or {})), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_two_worker_processes_on_one_storage_split_the_trials_without_duplicates(runs, store):
    name = sweep.create_study(make_spec(trials=4, epochs=2, pruner="none"))
    procs = [_worker_process(runs, name) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-2000:]
    rows = sweep.trials(name)
    assert sorted(r["number"] for r in rows) == list(range(4)) and {r["state"] for r in rows} == {"complete"}
    assert len({r["run_id"] for r in rows}) == 4 and len(store.study_runs(name)) == 4
    study, _ = sweep.load(name)
    pids = {t.user_attrs["worker"]["pid"] for t in study.get_trials()}
    assert pids == {p.pid for p in procs}, "both processes took trials"


def test_a_killed_workers_trial_is_failed_and_retried_once(runs, store, tmp_path):
    name = sweep.create_study(make_spec(trials=1, epochs=2, pruner="none"))
    gate = tmp_path / "gate"
    proc = _worker_process(runs, name, {"SIGSCOPE_PAUSE": f"2:{gate}"})  # the trial's run waits at step 2
    try:
        wait_until(lambda: Path(str(gate) + ".reached").exists(), 180, "the trial to train to step 2")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        study, _ = sweep.load(name)
        assert sweep.reap(study, store) == [0]
        gate.write_text("go")  # the orphaned run goes on to its next step, sees SIGTERM and stops
        first = by_number(name)[0]
        assert first["state"] == "failed" and first["retried"] and "died" in first["reason"], first
        wait_until(lambda: store.get_run(first["run_id"])["status"] == "cancelled", 120, "the orphan run to stop")
        result = sweep.SweepWorker(name, store=store).run()
    finally:
        gate.write_text("go")
        if proc.poll() is None:
            proc.kill()
    retry = by_number(name)[1]
    assert retry["retry_of"] == 0 and retry["state"] == "complete" and retry["params"] == first["params"]
    assert result["trials"] == {"complete": 1, "pruned": 0, "failed": 1, "running": 0, "waiting": 0}
    assert sweep.remaining(sweep.load(name)[0], sweep.load(name)[1].settings) == 0, "the retry took its place"


def test_stopping_a_sweep_keeps_finished_trials_and_a_resume_finishes_it(runs, store, tmp_path, monkeypatch):
    name = sweep.create_study(make_spec(trials=3, epochs=3, pruner="none"))
    worker = sweep.SweepWorker(name, store=store)
    thread = threading.Thread(target=worker.run)
    thread.start()
    gate = tmp_path / "gate"  # never opened: the held trial ends when the stop cancels it
    try:
        wait_until(lambda: store.list_runs("running"), 300, "the first trial's process to run")
        # trials started from now on hold at their first step's end: the second is surely running when stopped
        monkeypatch.setenv("SIGSCOPE_PAUSE", f"1:{gate}")
        wait_until(lambda: Path(str(gate) + ".reached").exists(), 300, "the second trial to hold at its first step")
        assert sweep.summary(name)["trials"]["complete"] == 1
        monkeypatch.delenv("SIGSCOPE_PAUSE")
        sweep.request_stop(name, store=store)
        thread.join(180)
        assert not thread.is_alive()
    finally:
        worker.stop_event.set()
        thread.join(60)
    stopped = sweep.summary(name)
    assert stopped["trials"]["complete"] >= 1 and stopped["trials"]["waiting"] == 1, stopped
    assert store.get_sweep(name)["status"] == "stopped"
    interrupted = [t for t in sweep.trials(name) if t["state"] == "failed"]
    assert interrupted and all(t["retried"] for t in interrupted)
    assert store.get_run(interrupted[0]["run_id"])["status"] == "cancelled"
    sweep.clear_stop(sweep.load(name)[0])
    result = sweep.SweepWorker(name, store=store).run()
    assert result["trials"]["complete"] == 3 and result["trials"]["waiting"] == 0, result
    assert store.get_sweep(name)["status"] == "finished"


def test_a_finished_study_given_more_trials_runs_only_the_new_ones(runs, store, capsys):
    """A study that spent its budget takes a new one from `sweep worker --trials N`, and a
    running worker picks a changed budget up without a restart."""
    name = sweep.create_study(make_spec(trials=1, epochs=1, pruner="none"))
    assert sweep.SweepWorker(name, store=store).run()["trials"]["complete"] == 1
    worker = sweep.SweepWorker(name, store=store)
    assert sweep.set_trials(name, None, 3) == 1
    worker._refresh_budget()
    assert worker.spec.settings.trials == 3
    with pytest.raises(typed.ConfigError):
        sweep.set_trials(name, None, 0)
    assert main(["sweep", "worker", "--study", name, "--trials", "2", "--json"]) == 0
    assert "budget 3 -> 2 trials" in capsys.readouterr().err
    summary = sweep.summary(name)
    assert summary["budget"] == 2 and summary["trials"]["complete"] == 2, summary
    assert sorted(by_number(name)) == [0, 1]


def test_a_trial_cancelled_by_a_stop_is_queued_again_even_when_it_was_a_retry(runs, store):
    """A retry stopped by a second stop kept no place in the queue and its config was lost; a
    stop now always queues what it cancels, while a retry that fails otherwise is not retried."""
    name = sweep.create_study(make_spec(trials=3, epochs=1, pruner="none"))
    worker = sweep.SweepWorker(name, store=store)
    study = worker.study
    waiting = optuna.trial.TrialState.WAITING

    def cancelled_retry(first: int, stopping: bool) -> list:
        study.enqueue_trial({"optim.lr": 3e-3}, user_attrs={"retry_of": first})
        trial = study.ask()
        trial.suggest_float("optim.lr", 1e-3, 1e-2, log=True)
        worker.stopping = stopping
        worker._tell(trial, {"id": "r", "status": "cancelled", "error": "cancelled at step 3 (epoch 1)"})
        return [t for t in study.get_trials(deepcopy=False) if t.state == waiting]

    queued = cancelled_retry(first=0, stopping=True)
    assert len(queued) == 1 and queued[0].user_attrs["retry_of"] == 0  # still points at the first attempt
    assert queued[0].params == {} and study.ask().number == queued[0].number  # take it off the queue
    assert cancelled_retry(first=0, stopping=False) == []  # a retry that died otherwise is not retried


def test_the_best_config_launches_as_a_run(runs, store, capsys):
    name = sweep.create_study(make_spec(trials=2, epochs=1, pruner="none"))
    study, _ = sweep.load(name)
    lr = optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)
    for number, (value, rate) in enumerate(((0.5, 2e-3), (0.9, 7e-3))):  # two finished trials, recorded as a worker does
        study.add_trial(optuna.trial.create_trial(value=value, params={"optim.lr": rate}, distributions={"optim.lr": lr},
                                                  user_attrs={"overrides": {"optim.lr": rate}}))
    assert sweep.summary(name)["best"]["number"] == 1
    assert main(["sweep", "best", "--study", name, "--train", "--epochs", "1", "--json"]) == 0
    run = store.list_runs()[0]
    assert run["status"] == "completed" and run["study"] is None, "a plain run, not a trial"
    assert run["config"]["optim"]["lr"] == pytest.approx(7e-3) and run["config"]["train"]["epochs"] == 1
    assert run["name"] == f"{name} #1"


# ---- bad input: one clear message before any trial ------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--space", "{}"], "the search space is empty"),
    (["--space", '{"optim.lr": {"low": 0.1, "high": 0.001}}'], "optim.lr: the range is inverted"),
    (["--space", '{"model.hparams.heads": {}}'], "resnet1d has no hyperparameter 'heads'"),
    (["--space", '{"optim.lr": {"low": -1, "high": 0.1}}'], "optim.lr low=-1 is out of range"),
    (["--space", '{"train.epochs": {}}'], "train.epochs is fixed in a sweep"),
    (["--space", '{"model.hparams.base_channels": {"low": 8, "high": 16}}', "--budget", "params=10"],
     "no config of the space meets the budget (parameters <= 10)"),
    (["--storage", "mysql://x"], "is not a storage URL"),
    (["--storage", "postgresql://u:secret@127.0.0.1:1/db"], "cannot reach the study storage postgresql://u:***@"),
    (["--objective", "val_speed"], "settings.metric='val_speed' is not a known choice"),
    (["--cost", "latency_ms", "--set-sweep", "pruner=hyperband"], "needs one objective"),
    (["--budget", "speed=3"], "--budget 'speed=3': give COST=LIMIT"),
])
def test_bad_sweep_input_is_one_clear_message_before_any_trial(runs, capsys, args, message):
    code = main(["sweep", "--model", "resnet1d", "--dataset", "synthetic_imu", "--set",
                 "model.hparams.base_channels=8", "--trials", "2", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "secret" not in err and "Traceback" not in err
    assert sweep.list_studies() == [], "no study was created"


# ---- costs known before training ------------------------------------------------------------------
@pytest.mark.parametrize("model", ["resnet1d", "har_transformer"])
def test_the_sweeps_costs_are_the_profilers(model):
    from core.profile import profile_model

    config = RunConfig().with_overrides({"model.name": model, "train.batch_size": 16})
    costs = sweep.costs_of(config)
    shape, classes = sweep.input_of(config)
    report = profile_model(model, config.model.hparams, shape, classes, 16, measure_latency=False, cross_check=False)
    assert costs["params"] == report.params["total"]
    assert costs["flops"] == report.flops // 16
    assert costs["memory_mb"] == pytest.approx(report.memory["total"] / 2**20, rel=1e-6)
    assert costs["latency_ms"] == pytest.approx(report.latency_ms["estimated"] / 16, rel=0.5)


def test_the_embedded_storage_survives_four_concurrent_writers(runs):
    """Four processes asking and telling trials on the journal file at once: no lock errors,
    every trial recorded once."""
    url = sweep.default_storage()
    name = "concurrency"
    optuna.create_study(storage=sweep.open_storage(url), study_name=name)
    script = ("import optuna,sys; from core import sweep\n"
              f"s = optuna.load_study(study_name='{name}', storage=sweep.open_storage('{url}'))\n"
              "for i in range(25):\n"
              "    t = s.ask(); t.suggest_float('x', 0, 1); t.set_user_attr('w', sys.argv[1]); s.tell(t, 0.5)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    assert not any("locked" in e for e in errors)
    study = optuna.load_study(study_name=name, storage=sweep.open_storage(url))
    assert len(study.trials) == 100 and sorted(t.number for t in study.trials) == list(range(100))


def test_a_restarted_server_starts_the_worker_of_a_sweep_it_was_running_again(runs, store):
    name = sweep.create_study(make_spec(trials=1, epochs=1, pruner="none"))
    gone = subprocess.Popen(["true"])
    gone.wait()  # a worker process that has ended (the machine restarted under it)
    from core.store import process_identity
    pid, host, _ = process_identity()
    store.put_sweep(name, sweep.default_storage(), status="running", owner_pid=gone.pid, owner_host=host,
                    owner_started="0", workers=1)
    assert sweep.revive(store) == [name]
    row = store.get_sweep(name)
    assert row["owner_pid"] != gone.pid and sweep.worker_alive(row)
    wait_until(lambda: store.get_sweep(name)["status"] == "finished", 300, "the revived worker to finish the sweep")
    assert sweep.summary(name)["trials"]["complete"] == 1
    assert Path(store.get_sweep(name)["log_path"]).read_text().count("trial 0") >= 1
    assert sweep.revive(store) == [], "a finished sweep is left alone"
