"""JobManager and the CLI: queue order, cancel, failures, a killed process, foreground runs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from core.config import RunConfig
from core.jobs import JobManager
from core.store import Store
from core.train import Callback

ROOT = Path(__file__).resolve().parents[1]
TINY = {"data.source": "synthetic_imu", "data.max_examples": 120, "data.window": 64, "data.stride": 32,
        "train.batch_size": 32, "train.probes.every_n_steps": 2, "train.probes.histogram_every_n_steps": 0,
        "model.name": "resnet1d", "model.hparams.base_channels": 8, "model.hparams.num_stages": 2,
        "model.hparams.blocks_per_stage": 1}


def tiny(**overrides) -> RunConfig:
    return RunConfig().with_overrides({**TINY, **overrides}, explicit=False)


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "sigscope.db")


@pytest.fixture
def jobs(store):
    manager = JobManager(store, devices=["cpu"], mode="thread", check_memory=False)  # callbacks: in-process
    yield manager
    manager.shutdown(cancel=True, timeout=30)


class Gate(Callback):
    """Holds a job at `step` until the test opens the gate (as a person takes time to click)."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.reached = threading.Event()
        self.opened = threading.Event()

    def on_step_end(self, trainer, step):
        if step == self.step:
            self.reached.set()
            self.opened.wait(30)


def test_four_queued_jobs_finish_in_order_without_cross_talk(jobs, store):
    epochs = [1, 2, 1, 3]
    ids = [jobs.submit(tiny(**{"train.epochs": e, "train.seed": i}), name=f"job{i}") for i, e in enumerate(epochs)]
    assert [store.get_run(i)["status"] for i in ids[2:]] == ["queued", "queued"]  # submit returned at once
    for run_id in ids:
        assert jobs.wait(run_id, timeout=120) == "completed"
    runs = [store.get_run(i) for i in ids]
    starts = [r["started_at"] for r in runs]
    assert starts == sorted(starts)
    assert all(a["finished_at"] <= b["started_at"] for a, b in zip(runs, runs[1:]))  # one worker: one at a time
    for i, (run, e) in enumerate(zip(runs, epochs)):
        assert run["name"] == f"job{i}" and run["config"]["train"]["epochs"] == e
        val = store.metric_series(run["id"], keys=["accuracy"], split="val")
        assert [p["epoch"] for p in val] == list(range(e))  # its own epochs, nobody else's
        steps = [p["step"] for p in store.metric_series(run["id"], keys=["loss"], split="step")]
        assert steps == list(range(1, run["total_steps"] + 1))
        assert run["run_dir"].endswith(run["id"]) and Path(run["run_dir"], "checkpoints", "last.pt").is_file()
    assert jobs.status()["queued"] == [] and jobs.status()["running"] == {}


def test_cancel_mid_epoch_stops_at_the_next_step_and_keeps_the_last_checkpoint(jobs, store):
    gate = Gate(step=4)  # 3 steps per epoch at these sizes: the cancel lands at step 5, mid epoch 2
    run_id = jobs.submit(tiny(**{"train.epochs": 5}), callbacks=[gate])
    assert gate.reached.wait(60)
    assert store.get_run(run_id)["status"] == "running" and run_id in jobs.status()["running"]
    assert jobs.cancel(run_id)
    gate.opened.set()
    assert jobs.wait(run_id, timeout=60) == "cancelled"
    run = store.get_run(run_id)
    assert "cancelled at step 5" in run["error"]
    assert max(p["step"] for p in store.metric_series(run_id, keys=["loss"])) == 5
    assert run["total_steps"] == 15 and run["epoch"] == 1
    last = torch.load(Path(run["run_dir"], "checkpoints", "last.pt"), weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 3  # the checkpoint of the last whole epoch is kept


def test_a_cancelled_queued_job_never_starts(jobs, store):
    gate = Gate(step=1)
    first = jobs.submit(tiny(**{"train.epochs": 1}), callbacks=[gate])
    second = jobs.submit(tiny(**{"train.epochs": 1}))
    assert gate.reached.wait(60)
    assert jobs.status()["queued"] == [second]
    assert jobs.cancel(second)
    gate.opened.set()
    assert jobs.wait(first, timeout=60) == "completed"
    run = store.get_run(second)
    assert run["status"] == "cancelled" and run["started_at"] is None
    assert store.metric_series(second) == []


def test_a_failing_job_is_recorded_and_the_next_one_still_runs(jobs, store):
    bad = jobs.submit(tiny(**{"train.epochs": 1, "data.source": "imu_csv", "data.path": str(ROOT / "data" / "no-such.csv")}))
    good = jobs.submit(tiny(**{"train.epochs": 1}))
    assert jobs.wait(bad, timeout=60) == "failed"
    assert "no-such.csv does not exist" in store.get_run(bad)["error"]  # found only when the data is read
    assert jobs.wait(good, timeout=60) == "completed"


class RunOutOfMemory(Callback):
    """Raises the error CUDA raises when an allocation fails, at a given step."""

    def on_step_end(self, trainer, step):
        if step == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_fails_the_run_with_a_message_that_says_what_to_lower(jobs, store):
    run_id = jobs.submit(tiny(**{"train.epochs": 1}), callbacks=[RunOutOfMemory()])
    assert jobs.wait(run_id, timeout=60) == "failed"
    error = store.get_run(run_id)["error"]
    assert error.startswith("out of memory") and "train.batch_size" in error and "Tried to allocate" in error
    after = jobs.submit(tiny(**{"train.epochs": 1}))
    assert jobs.wait(after, timeout=60) == "completed"


def test_resume_continues_a_cancelled_run_in_the_same_run_id(jobs, store):
    gate = Gate(step=4)
    run_id = jobs.submit(tiny(**{"train.epochs": 3}), callbacks=[gate])
    assert gate.reached.wait(60)
    jobs.cancel(run_id)
    gate.opened.set()
    assert jobs.wait(run_id, timeout=60) == "cancelled"
    jobs.resume(run_id)
    assert jobs.wait(run_id, timeout=60) == "completed"
    run = store.get_run(run_id)
    assert run["epoch"] == 3 and run["error"] is None
    val_epochs = [p["epoch"] for p in store.metric_series(run_id, keys=["loss"], split="val")]
    assert val_epochs == [0, 1, 2]
    steps = [p["step"] for p in store.metric_series(run_id, keys=["loss"], split="step")]
    assert steps == list(range(1, run["total_steps"] + 1))  # the cancelled partial epoch was replaced


def _cli(args: list[str], env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_cli_train_stores_a_run_and_runs_list_and_show_report_it(tmp_path):
    env = {**os.environ, "SIGSCOPE_RUNS_DIR": str(tmp_path / "runs")}
    sets = [f"--set={k}={json.dumps(v)}" for k, v in TINY.items() if k not in ("model.name", "data.source")]
    proc = _cli(["train", "--model", "resnet1d", "--dataset", "synthetic_imu", "--epochs", "1", *sets,
                 "--set", "dropout=0.0", "--json"], env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["status"] == "completed" and "test_accuracy" in result["test_metrics"]
    assert "epoch 1/1" in err

    listed = json.loads(subprocess.run([sys.executable, "-m", "core", "runs", "list", "--json"], cwd=ROOT, env=env,
                                       capture_output=True, text=True, check=True).stdout)
    assert [r["id"] for r in listed] == [result["run_id"]] and listed[0]["status"] == "completed"
    shown = json.loads(subprocess.run([sys.executable, "-m", "core", "runs", "show", result["run_id"], "--json"],
                                      cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout)
    assert shown["config"]["model"]["hparams"]["dropout"] == 0.0
    assert shown["final_metrics"]["test_accuracy"] == pytest.approx(result["test_metrics"]["test_accuracy"])
    assert "grad_norm" in shown["last_probes"] and shown["last_probes"]["dead_fraction"]


def test_a_killed_training_process_leaves_an_interrupted_run_with_its_metrics(tmp_path):
    env = {**os.environ, "SIGSCOPE_RUNS_DIR": str(tmp_path / "runs")}
    sets = [f"--set={k}={json.dumps(v)}" for k, v in TINY.items()]
    proc = _cli(["train", "--epochs", "500", *sets], env, start_new_session=True)
    store = Store(tmp_path / "runs" / "sigscope.db")
    deadline = time.monotonic() + 120
    run = None
    while time.monotonic() < deadline:
        runs = store.list_runs()
        if runs and store.metric_series(runs[0]["id"], keys=["accuracy"], split="val"):
            run = runs[0]
            break
        time.sleep(0.2)
    assert run is not None, "the CLI run stored no epoch within 120 s"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    before = store.metric_series(run["id"])
    assert store.get_run(run["id"])["status"] == "running"

    manager = JobManager(Store(store.path), devices=["cpu"])  # a new engine starting up
    try:
        assert run["id"] in manager.recovered
        after = store.get_run(run["id"])
        assert after["status"] == "interrupted" and str(proc.pid) in after["error"]
        assert store.metric_series(run["id"]) == before and len(before) > 0
        assert Path(after["run_dir"], "checkpoints", "last.pt").is_file()
    finally:
        manager.shutdown()


def test_higher_priority_runs_first(jobs, store):
    gate = Gate(step=1)
    first = jobs.submit(tiny(**{"train.epochs": 1}), callbacks=[gate])
    assert gate.reached.wait(60)
    low = jobs.submit(tiny(**{"train.epochs": 1}), name="low")
    high = jobs.submit(tiny(**{"train.epochs": 1}), name="high", priority=5)
    assert jobs.status()["queued"] == [high, low], "the queue is ordered by priority, then by arrival"
    gate.opened.set()
    for run_id in (first, high, low):
        assert jobs.wait(run_id, timeout=120) == "completed"
    assert store.get_run(high)["started_at"] < store.get_run(low)["started_at"]
    assert store.get_run(high)["priority"] == 5


def test_a_run_that_does_not_fit_in_memory_is_held_with_the_reason(store, monkeypatch):
    from core import launch

    monkeypatch.setattr(launch, "free_memory", lambda device: 1024)  # 1 KiB free
    manager = JobManager(store, devices=["cpu"], mode="thread")
    try:
        run_id = manager.submit(tiny(**{"train.epochs": 1}))
        def held():
            return store.get_run(run_id)["held"]
        deadline = time.time() + 60
        while not held() and time.time() < deadline:
            time.sleep(0.1)
        reason = held()
        assert reason and reason.startswith("held: needs about") and "1.0 KiB is free" in reason
        assert store.get_run(run_id)["status"] == "queued" and manager.status()["held"][run_id] == reason
        monkeypatch.setattr(launch, "free_memory", lambda device: None)  # memory frees up
        assert manager.wait(run_id, timeout=120) == "completed"
        assert store.get_run(run_id)["held"] is None
    finally:
        manager.shutdown(cancel=True)


def test_memory_a_started_run_will_still_take_is_reserved_before_the_next_starts(store, monkeypatch):
    """Two trials admitted at once both counted the same free memory and one was killed for it;
    now a run that has started keeps its expected peak (on CPU its resident memory with headroom,
    less what its process already holds) reserved, and the next waits with the reason."""
    from core import launch
    from core.runtime import resident_bytes

    mib = 2**20
    monkeypatch.setattr(launch, "memory_needed", lambda config: 100 * mib)
    expected = launch.expected_peak(tiny(), "cpu")
    assert expected == int(resident_bytes(100 * mib) * launch.CPU_HEADROOM) > 100 * mib
    monkeypatch.setattr(launch, "free_memory", lambda device: int(1.5 * expected))  # room for one run, not two
    manager = JobManager(store, devices=["cpu"], max_workers=2, mode="thread")
    gate = Gate(step=1)
    try:
        first = manager.submit(tiny(**{"train.epochs": 1}), callbacks=[gate])
        assert gate.reached.wait(60)
        second = manager.submit(tiny(**{"train.epochs": 1}))
        deadline = time.time() + 60
        while not store.get_run(second)["held"] and time.time() < deadline:
            time.sleep(0.1)
        reason = store.get_run(second)["held"]
        assert reason and "still to be taken by runs already started" in reason, reason
        assert store.get_run(second)["status"] == "queued"
        gate.opened.set()
        assert manager.wait(first, timeout=120) == "completed"
        assert manager.wait(second, timeout=120) == "completed"  # admitted once the first ended
    finally:
        gate.opened.set()
        manager.shutdown(cancel=True)


def test_runs_at_once_split_the_cores(store):
    import os

    manager = JobManager(store, devices=["cpu"], max_workers=2, check_memory=False)
    try:
        ids = [manager.submit(tiny(**{"train.epochs": 1, "train.seed": i})) for i in range(2)]
        for run_id in ids:
            assert manager.wait(run_id, timeout=180) == "completed"
    finally:
        manager.shutdown()
    cores = len(os.sched_getaffinity(0))
    assert [store.get_run(i)["threads"] for i in ids] == [max(1, cores // 2)] * 2
