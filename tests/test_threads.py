"""The thread policy: in-process work (profiling, inference, projections) sets its thread count
through core.threads.compute_threads, which leaves every other job's count alone: two
overlapping blocks in two threads restore what the process had, whichever ends first; a run
training in another thread or in a child process keeps its count while this process profiles
and classifies; and inference_threads gives inference the cores that running runs on this
host do not hold, never fewer than one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core import launch, threads
from core.config import RunConfig
from core.store import Store, process_identity
from core.threads import compute_threads, default_threads, inference_threads, open_blocks

SMALL = {"data.options.per_class": 16, "model.hparams.base_channels": 8, "model.hparams.num_stages": 1,
         "train.batch_size": 8, "train.probes.every_n_steps": 1}


def blas_counts() -> list[int]:
    from threadpoolctl import threadpool_info
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout:.0f} s for {what}")


class Block(threading.Thread):
    """A job in its own thread: opens compute_threads(n), notes what it sees, holds the block
    until told to close it."""

    def __init__(self, n: int) -> None:
        super().__init__(daemon=True)
        self.n, self.inside, self.close, self.closed = n, threading.Event(), threading.Event(), threading.Event()
        self.seen: list[int] = []

    def run(self) -> None:
        with compute_threads(self.n, purpose=f"job {self.n}"):
            self.seen.append(torch.get_num_threads())
            self.inside.set()
            self.close.wait(60)
            self.seen.append(torch.get_num_threads())
        self.closed.set()

    def open(self) -> "Block":
        self.start()
        assert self.inside.wait(60)
        return self

    def end(self) -> None:
        self.close.set()
        self.join(60)


# ---- overlapping blocks ---------------------------------------------------------------------------
@pytest.mark.parametrize("first_ends", ["first opened", "last opened"])
def test_overlapping_blocks_in_two_threads_leave_the_process_as_it_was(first_ends):
    original, original_blas, main_before = default_threads(), blas_counts(), torch.get_num_threads()
    a = Block(1).open()  # a latency measurement on one thread
    assert a.seen == [1]
    # B starts while A is open (as a Streamlit rerun thread does): it must not inherit A's 1 as
    # "the previous value" to restore, which is how the old save/restore code leaked it
    b = Block(original + 1).open()
    assert b.seen == [original + 1]
    assert default_threads() == original, "a thread started now gets the process's count, not a block's"
    assert blas_counts() == [1] * len(original_blas), "the shared BLAS pool runs at the smaller count"
    first, second = (a, b) if first_ends == "first opened" else (b, a)
    first.end()
    assert second.is_alive() and not second.closed.is_set()
    second.end()
    assert a.seen == [1, 1] and b.seen == [original + 1, original + 1], "each kept its own count throughout"
    assert default_threads() == original
    assert blas_counts() == original_blas
    assert torch.get_num_threads() == main_before
    assert open_blocks() == []


def test_a_nested_block_keeps_the_enclosing_count_and_restores_it():
    with compute_threads(1, purpose="outer") as outer:
        with compute_threads(None, purpose="inner", blas=1) as inner:
            assert inner == outer == torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1 and len(open_blocks()) == 1
    assert open_blocks() == []


# ---- the policy -------------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path / "runs"))
    return Store(tmp_path / "runs" / "sigscope.db")


def running(store: Store, threads: int | None, pid: int | None = None, host: str | None = None) -> str:
    run_id = store.create_run(RunConfig().to_dict(), name="fake")
    pid, here, started = process_identity(pid)
    store.update_run(run_id, status="running", owner_pid=pid, owner_host=host or here, owner_started=started,
                     threads=threads)
    return run_id


def test_inference_threads_are_the_cores_running_runs_on_this_host_do_not_hold(store, monkeypatch):
    monkeypatch.setattr(threads, "foreign_load", lambda: 0.0)  # nothing else on the machine
    monkeypatch.setattr(threads, "cores", lambda: 8)
    assert inference_threads(store) == 8, "nothing running: every core"
    running(store, 2)
    assert inference_threads(store) == 6
    with compute_threads(1):
        assert inference_threads(store) == 6, "this thread's own block is not another job"
    running(store, 3, host="another-machine")  # its cores are not ours
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    running(store, 4, pid=dead.pid)  # its process has ended: holds nothing
    assert inference_threads(store) == 6
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
                               env=dict(os.environ, OMP_NUM_THREADS="3"), stdout=subprocess.PIPE, text=True)
    try:
        # until the child has exec'd, /proc/<pid>/environ is still this process's (no OMP_NUM_THREADS):
        # a busy machine showed that race (inference_threads 1 instead of 3)
        assert sleeper.stdout.readline().strip() == "ready"
        running(store, None, pid=sleeper.pid)  # a CLI run: no threads column, its OMP_NUM_THREADS
        assert inference_threads(store) == 3
        running(store, 5)
        assert inference_threads(store) == 1, "never below one"
    finally:
        sleeper.kill()
        sleeper.wait()
        sleeper.stdout.close()


def test_inference_threads_count_blocks_open_in_other_threads(store, monkeypatch):
    monkeypatch.setattr(threads, "foreign_load", lambda: 0.0)  # nothing else on the machine
    monkeypatch.setattr(threads, "cores", lambda: 4)
    profiling = Block(1).open()
    try:
        assert inference_threads(store) == 3
        with compute_threads(None, purpose="classify") as n:
            assert n == torch.get_num_threads() == 3
    finally:
        profiling.end()
    assert inference_threads(store) == 4


def test_one_run_alone_gets_every_core():
    assert launch.threads_per_process(1, 1) == launch.cores()


# ---- concurrent jobs ----------------------------------------------------------------------------------
def test_a_run_training_in_a_thread_started_during_profiling_keeps_the_process_count(store):
    """JobManager's thread mode, or any job whose thread starts while a profile is measured."""
    from core.jobs import run_job
    from core.train import Callback

    original = default_threads()
    seen: list[int] = []

    class Watch(Callback):
        name = "watch_threads"

        def on_step_end(self, trainer, step: int) -> None:
            seen.append(torch.get_num_threads())

    config = RunConfig().with_overrides({**SMALL, "train.epochs": 1})
    run_id = store.create_run(config.to_dict(), name="beside profiling")
    with compute_threads(1, purpose="latency"):
        trainer = threading.Thread(target=run_job, args=(store, run_id, config, "cpu"),
                                   kwargs={"callbacks": [Watch()]})
        trainer.start()
        wait_until(lambda: seen, 120, "the run's first step")
    trainer.join(180)
    assert store.get_run(run_id)["status"] == "completed"
    assert set(seen) == {original}, f"the run trained at {sorted(set(seen))} threads, the process has {original}"


def test_a_run_in_a_child_process_keeps_its_threads_while_this_process_profiles_and_classifies(store, tmp_path,
                                                                                                monkeypatch):
    from core.demo import install_bundled
    from core.infer import classify_signal, load_run
    from core.jobs import JobManager
    from core.profile import profile_model

    gate = tmp_path / "gate"
    monkeypatch.setenv("SIGSCOPE_PAUSE", f"2:{gate}")
    jobs = JobManager(store, max_workers=1)
    try:
        run_id = jobs.submit(RunConfig().with_overrides({**SMALL, "train.epochs": 1}))
        wait_until(lambda: Path(str(gate) + ".reached").exists(), 120, "the run to reach step 2")
        monkeypatch.delenv("SIGSCOPE_PAUSE")
        run = store.get_run(run_id)
        given = launch.threads_per_process(1, 1)
        assert run["status"] == "running" and run["threads"] == given == launch.cores(), "alone: every core"
        held = json.loads(Path(str(gate) + ".reached").read_text())  # what the run process itself reads
        # its torch count starts at `given` and may follow other processes' load down (core.threads.threads_beside)
        assert 1 <= held["torch_threads"] <= given and held["OMP_NUM_THREADS"] == str(given), held
        assert inference_threads(store) == max(1, launch.cores() - given)

        original = default_threads()
        profile_model("resnet1d", {"base_channels": 8}, (6, 64), batch_size=2, measure_latency=False,
                      cross_check=False)
        imu = load_run(install_bundled(store, "demo-imu"), store)
        signal = np.zeros((imu.input_shape[-1] * 2, len(imu.channel_names)), dtype=np.float32)
        with compute_threads(inference_threads(store), purpose="classify") as n:
            assert n == torch.get_num_threads() == max(1, launch.cores() - given)
            classify_signal(imu, signal, np.array([0]), "zeros", explain="none")
        assert default_threads() == original
        assert store.get_run(run_id)["threads"] == given
        gate.write_text("go")
        assert jobs.wait(run_id, timeout=180) == "completed"
        assert store.get_run(run_id)["threads"] == given
    finally:
        gate.write_text("go")
        jobs.shutdown(cancel=True)


# ---- a run process follows other processes' load ---------------------------------------------------
@pytest.mark.parametrize("others,most,now,expected", [
    (0.0, 2, 2, 2),   # alone: every core it was given
    (1.1, 2, 2, 1),   # one busy neighbour on 2 cores: one thread
    (3.0, 2, 2, 1),   # never below one
    (0.0, 2, 1, 2),   # the neighbour left: the thread comes back
    (0.4, 2, 1, 1),   # 1.6 cores free: not enough margin to go back up (no flapping)
    (0.0, 1, 1, 1),   # never above what it was given
    (2.2, 8, 8, 6),   # 5.8 of 8 cores free
])
def test_threads_beside_other_processes_round_the_free_cores(monkeypatch, others, most, now, expected):
    monkeypatch.setattr(threads, "cores", lambda: 2 if most <= 2 else 8)
    assert threads.threads_beside(others, most, now) == expected


def _spinners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="other processes' load is read from /proc/stat (Linux)")
def test_foreign_load_sees_a_busy_neighbour_and_not_this_process():
    watch = threads.ForeignLoad()
    spin = _spinners(1)
    try:
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            pass  # this process is busy too: its own CPU is not the neighbour's
        others = watch.take()
    finally:
        for p in spin:
            p.kill()
            p.wait()
    assert others is not None and 0.5 <= others <= threads.cores() + 0.2, others
    assert watch.take() is None, "a look shorter than MIN_SECONDS is no measurement"


@pytest.mark.skipif(launch.cores() < 2 or not Path("/proc/stat").exists(),
                    reason="needs 2 or more cores and /proc/stat")
def test_a_run_process_beside_busy_neighbours_computes_on_one_thread(monkeypatch):
    """A run process (core.launch.child_env sets SIGSCOPE_ADAPT_THREADS=1) beside as many busy
    processes as cores drops to one thread, says why, and sets its MFU against that peak; a
    trainer inside another program keeps the threads it was given."""
    from core.train import Trainer

    config = RunConfig().with_overrides({**SMALL, "train.epochs": 1})
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    spin = _spinners(launch.cores())
    try:
        monkeypatch.delenv(threads.ADAPT_ENV, raising=False)
        assert Trainer(config).load_watch is None, "not a run process: its count is left alone"
        monkeypatch.setenv(threads.ADAPT_ENV, "1")
        trainer = Trainer(config)
        time.sleep(threads.ForeignLoad.MIN_SECONDS)  # a measured look, not the load average
        trainer.fit()
        assert torch.get_num_threads() == 1
        events = [e["message"] for e in trainer.recorder.event_rows]
        assert any("cores busy while the run started: the run computes on 1 thread instead of 2" in e
                   for e in events), events
    finally:
        for p in spin:
            p.kill()
            p.wait()
        torch.set_num_threads(before)
    assert launch.child_env()[threads.ADAPT_ENV] == "1"


def test_inference_threads_leave_the_cores_other_processes_keep_busy(store, monkeypatch):
    """Work other than Sigscope's runs counts too; a run is among the busy processes, so the
    larger of the two is what is held, not their sum."""
    monkeypatch.setattr(threads, "cores", lambda: 4)
    monkeypatch.setattr(threads, "foreign_load", lambda: 1.2)
    assert inference_threads(store) == 3
    running(store, 2)
    assert inference_threads(store) == 2
    monkeypatch.setattr(threads, "foreign_load", lambda: 3.6)
    assert inference_threads(store) == 1


def test_foreign_load_is_measured_between_calls_and_the_load_average_before(monkeypatch):
    monkeypatch.setattr(threads, "_watch", [None])
    monkeypatch.setattr(os, "getloadavg", lambda: (7.0, 0.0, 0.0))
    assert threads.foreign_load() == 7.0, "no earlier call: the load average"
    assert threads.foreign_load() == 7.0, "a call 0.5 s later at most: still the load average"
    time.sleep(threads.ForeignLoad.MIN_SECONDS + 0.1)
    assert threads.foreign_load() < 7.0 - 1.0 or not Path("/proc/stat").exists()
