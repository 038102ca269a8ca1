"""JobManager: the queue of training runs, each run a child process, one per device by default.

    jobs = JobManager()                      # marks runs of dead processes `interrupted`
    run_id = jobs.submit(cfg, priority=0)    # returns at once; the run row is `queued`
    jobs.status()                            # {"devices": [...], "queued": [...], "running": [...]}
    jobs.cancel(run_id)                      # stops after its current step, keeps the last checkpoint
    jobs.wait(run_id)                        # -> final status
    jobs.shutdown()

Each run trains in a process of its own (`python -m core train --run-id ID`, forked from this
process's warm fork server, core.forkserver, on CPU; or torchrun with train.processes ranks for
DDP; core.launch), in a session of its own, its output in `<run>/train.log`. Worker threads here
only launch, watch and stop those processes, so the pages never share an interpreter with
training, and a run that crashes or is killed by the kernel ends `failed` with its exit status
and the last lines of its log while the dashboard and the other runs go on. The queue runs
higher `priority` first, then in order, at most one run per worker (one worker per device by
default); a run is given the cores of its slot (`threads`, recorded in its row) and is held,
with the reason in its row, while the profiler's estimate of its memory does not fit in what is
free. Cancel sends SIGTERM (the run stops after its current step) and kills the process group
after a grace period.

`mode="thread"` trains in this process's worker threads instead (the tests that hand the
Trainer callbacks use it; the bench compares the two). Every outcome is recorded in the
store: `completed`, `failed` (an exception, with its message; out-of-memory gets a message
that says what to lower), `diverged` (NaN/Inf loss, with the step), `cancelled`.

On start-up, and every few seconds after, runs whose owning process is gone become
`interrupted`: those left `running`, and also those left `queued` (they are not restarted
behind a person's back; resubmit, or `resume` one that has a checkpoint). Each run row records
the pid, host and process start time of the process that owns it (the child, once it starts),
so a live process's runs (a run left by a restarted server, a CLI run) are adopted, never
marked. Worker threads never touch Streamlit; the store is the only channel to the pages.
"""
from __future__ import annotations

import gc
import itertools
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.config import RunConfig
from core.errors import ConfigError, SigscopeError
from core.store import Store, process_identity


@dataclass
class _Job:
    run_id: str
    config: RunConfig
    resume_from: Path | None = None
    callbacks: Sequence[Any] = ()
    priority: int = 0
    seq: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    device: str | None = None
    held: str | None = None


def _device_for(job: _Job, slot: str) -> str:
    """The device a job runs on in a worker slot: its config's, or the slot's for "auto"."""
    return slot if job.config.train.device == "auto" else job.config.train.device


def default_devices() -> list[str]:
    """One entry per CUDA GPU, else ["cpu"]."""
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(error, MemoryError))


def run_job(store: Store, run_id: str, config: RunConfig, device: str | None = None,
            cancel: threading.Event | None = None, callbacks: Sequence[Any] = (),
            resume_from: str | Path | None = None) -> str:
    """Run one stored run to its end in this thread and record how it ended; returns the status.

    The CLI calls this in the foreground; JobManager workers call it in their thread."""
    from core.train import CancelOnEvent, CancelOnRequest, StoreWriter, Trainer

    cancel = cancel or threading.Event()
    run = store.get_run(run_id)
    run_dir = Path(run["run_dir"]) if run and run.get("run_dir") else None
    store.claim_owner(run_id)
    store.update_run(run_id, status="running", started_at=time.time(), finished_at=None, error=None,
                     device=device or config.train.device)
    writer = store.writer(run_id)
    status, message, summary = "failed", "", {}
    trainer = None
    try:
        if resume_from is not None:  # inside the try: a bad checkpoint ends the run `failed`, never `running`
            from core.train import read_checkpoint
            step = read_checkpoint(resume_from).get("global_step")
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise ConfigError(f"checkpoint {resume_from} has no valid global_step to resume from: train the "
                                  "run again")
            # steps after the checkpoint (a partial epoch) are replayed, so their old points go
            store.truncate_run(run_id, step)
        trainer = Trainer(config, recorder=writer, run_dir=run_dir, device=device,
                          callbacks=[CancelOnRequest(store, run_id, cancel), CancelOnEvent(cancel), StoreWriter(writer),
                                     *callbacks])
        result = trainer.fit(resume_from=resume_from)
        status, message = result.status, result.message
        summary = result.to_dict()
    except KeyboardInterrupt:
        status, message = "cancelled", "cancelled with Ctrl-C"
        writer.event(message, "warning")
        raise
    except BaseException as error:  # noqa: BLE001 - any failure ends this run, never the engine
        if is_out_of_memory(error):
            message = (f"out of memory on {device or config.train.device} with batch size "
                       f"{config.train.batch_size}: lower train.batch_size, turn on train.amp ('bf16' or 'fp16' "
                       f"on a GPU) or train.grad_checkpointing, or choose a smaller model ({_first_line(error)})")
        elif isinstance(error, SigscopeError):
            message = str(error)
        else:
            message = f"{type(error).__name__}: {error}"
            writer.event(traceback.format_exc(limit=8), "error")
        writer.event(message, "error")
        if not isinstance(error, Exception):
            raise
    finally:
        try:
            writer.flush()
        finally:
            store.update_run(run_id, status=status, finished_at=time.time(),
                             error=message if status != "completed" else None, summary=summary or None)
            del trainer
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return status


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def requeue_for_resume(store: Store, run_id: str, overrides: dict | None = None) -> tuple[RunConfig, Path]:
    """Check that `run_id` is a stopped run with a last checkpoint, apply the overrides a resumed
    run may take (epochs, device, probe cadence: the spec's `resume` choices; any other is
    refused with the reason), mark it queued again and return (its config, the checkpoint to
    continue from). ConfigError says why it cannot, before the run is touched."""
    from core import spec
    from core.train.checkpoints import check_resume_checkpoint

    run = store.get_run(run_id)
    if run is None:
        raise ConfigError(f"no run {run_id!r}; see `python -m core runs list`")
    if run["status"] in ("queued", "running"):
        raise ConfigError(f"run {run_id} is {run['status']}; only a stopped run can be resumed")
    last = Path(run["run_dir"]) / "checkpoints" / "last.pt"
    if not last.is_file():
        raise ConfigError(f"run {run_id} has no checkpoint to resume from (it stopped before its first "
                          f"epoch ended); submit its config again instead")
    config = RunConfig.from_dict(run["config"])
    # a damaged or foreign last.pt is refused here, before the run is queued or marked running
    state = check_resume_checkpoint(last, Path(run["run_dir"]), config)
    if overrides:
        spec.check_resume_overrides(overrides, config)
        config = config.with_overrides(overrides)
        done = int(state["epoch"])
        if config.train.epochs <= done:
            raise ConfigError(f"train.epochs={config.train.epochs}: run {run_id} has already completed {done} "
                              f"epoch(s); give more than {done} to train on")
    else:
        config = config.validated()
    # owned by this process from the moment it is queued again: a watcher (an engine, `runs list`)
    # must not take the dead process that owned it before for the owner of the resumed run
    pid, host, started = process_identity()
    store.update_run(run_id, status="queued", error=None, finished_at=None, config=config.to_dict(),
                     owner_pid=pid, owner_host=host, owner_started=started)
    return config, last


MODES = ("process", "thread")
HOLD_RECHECK_SECONDS = 2.0
# how often a manager re-checks the runs it does not train itself (pid + start time: a few
# /proc reads and one small query), so a killed CLI run shows `interrupted` within seconds
WATCH_SECONDS = 2.0


class JobManager:
    """Background training runs over a shared run store (see the module doc)."""

    def __init__(self, store: Store | None = None, max_workers: int | None = None,
                 devices: Sequence[str] | None = None, recover: bool = True, mode: str = "process",
                 check_memory: bool = True) -> None:
        """store: the run store (default: ./runs or $SIGSCOPE_RUNS_DIR); max_workers: runs at once
        (default one per device); devices: e.g. ["cuda:0", "cuda:1"] (default: every GPU, else cpu);
        recover: mark runs left running/queued by dead processes `interrupted` (now and, in
        process mode, every few seconds); mode: "process" (each run a child process) or "thread";
        check_memory: hold a run while the profiler's memory estimate does not fit."""
        if mode not in MODES:
            raise ConfigError(f"mode={mode!r}: use one of {', '.join(MODES)}")
        self.store = store or Store()
        self.mode = mode
        self.check_memory = check_memory
        self.devices = list(devices) if devices else default_devices()
        n = max_workers if max_workers is not None else len(self.devices)
        if n < 1:
            raise ConfigError(f"max_workers={max_workers}: use at least one worker")
        self.recovered = self.store.mark_interrupted() if recover else []
        self._pending: list[_Job] = []
        self._jobs: dict[str, _Job] = {}
        self._running: dict[str, str] = {}  # run_id -> device
        self._started: dict[str, _Job] = {}  # the running jobs themselves (their memory is reserved)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._seq = itertools.count()
        self._closed = False
        self._worker_devices = [self.devices[i % len(self.devices)] for i in range(n)]
        self._workers = [threading.Thread(target=self._work, args=(device,), name=f"sigscope-worker-{i}", daemon=True)
                         for i, device in enumerate(self._worker_devices)]
        for worker in self._workers:
            worker.start()
        self._watch_dead = mode == "process" and recover  # thread-mode runs live and die with this process
        threading.Thread(target=self._watch, name="sigscope-watch", daemon=True).start()

    # ---- public API ------------------------------------------------------------------------
    def submit(self, config: RunConfig, name: str = "", callbacks: Sequence[Any] = (), priority: int = 0,
               columns: dict | None = None) -> str:
        """Store a queued run and return its id at once; a config the spec refuses raises
        ConfigError (every problem, one per line) and stores nothing. Higher `priority` runs
        first. `callbacks` (extra Trainer callbacks) need mode="thread". `columns`: run columns
        set before the run can start (a sweep's study, trial and storage)."""
        if not isinstance(config, RunConfig):
            raise ConfigError("submit() takes a RunConfig (use RunConfig.from_dict for a dict)")
        if callbacks and self.mode != "thread":
            raise ConfigError("Trainer callbacks cannot cross into a run's process; use JobManager(mode='thread')")
        config = config.validated()  # a private, checked copy: a bad config never becomes a run
        run_id = self.store.create_run(config.to_dict(), name=name or config.name, status="queued")
        self.store.update_run(run_id, priority=int(priority), processes=config.train.processes, **(columns or {}))
        self._enqueue(_Job(run_id, config, callbacks=callbacks, priority=int(priority)))
        return run_id

    def resume(self, run_id: str, callbacks: Sequence[Any] = (), overrides: dict | None = None,
               priority: int = 0) -> str:
        """Queue a stopped run (interrupted, cancelled, failed) to continue from its last
        checkpoint in the same run id: its metric curves carry on from that epoch. overrides:
        what a resumed run may change (e.g. {"train.epochs": 60}); others raise ConfigError."""
        config, last = requeue_for_resume(self.store, run_id, overrides)
        self.store.claim_owner(run_id)
        self._enqueue(_Job(run_id, config, resume_from=last, callbacks=callbacks, priority=int(priority)))
        return run_id

    def _enqueue(self, job: _Job) -> None:
        with self._wake:
            if self._closed:
                self.store.update_run(job.run_id, status="cancelled", error="the job manager was shut down")
                raise RuntimeError("this JobManager has been shut down; create a new one")
            job.seq = next(self._seq)
            self._jobs[job.run_id] = job
            self._pending.append(job)
            self._pending.sort(key=lambda j: (-j.priority, j.seq))
            self._wake.notify_all()

    def cancel(self, run_id: str) -> bool:
        """Cancel a queued run (it never starts) or a running one (stops after its current
        step; the last checkpoint stays). False when the run is not this manager's or has ended."""
        with self._wake:
            job = self._jobs.get(run_id)
            if job is None or job.done.is_set():
                return False
            job.cancel.set()
            if job in self._pending:
                self._pending.remove(job)
                self.store.update_run(run_id, status="cancelled", error="cancelled before it started",
                                      finished_at=time.time(), held=None)
                job.done.set()
            self._wake.notify_all()
        return True

    def status(self) -> dict:
        """Devices, worker count, queued run ids (in the order they will start), running run ids
        and the reason any queued run is held."""
        with self._lock:
            return {"devices": list(self.devices), "workers": len(self._workers), "mode": self.mode,
                    "queued": [j.run_id for j in self._pending], "running": dict(self._running),
                    "held": {j.run_id: j.held for j in self._pending if j.held}}

    def wait(self, run_id: str, timeout: float | None = None) -> str | None:
        """Block until a run of this manager ends; returns its status (None on timeout)."""
        job = self._jobs.get(run_id)
        if job is None:
            run = self.store.get_run(run_id)
            return run["status"] if run else None
        if not job.done.wait(timeout):
            return None
        return self.store.get_run(run_id)["status"]

    def shutdown(self, wait: bool = True, cancel: bool = False, timeout: float | None = None) -> None:
        """Stop accepting jobs; with cancel=True cancel queued and running ones; with wait=True
        join the workers (queued jobs still run unless cancelled). Runs that are not cancelled
        keep training in their processes: a new manager adopts them."""
        with self._wake:
            self._closed = True
            ids = [j.run_id for j in self._pending] + list(self._running)
            self._wake.notify_all()
        if cancel:
            for run_id in ids:
                self.cancel(run_id)
        if wait:
            for worker in self._workers:
                worker.join(timeout)

    # ---- workers -------------------------------------------------------------------------
    def _work(self, device: str) -> None:
        while True:
            job = self._next(device)
            if job is None:
                return
            try:
                use = _device_for(job, device)
                if self.mode == "thread":
                    run_job(self.store, job.run_id, job.config, use, job.cancel, job.callbacks, job.resume_from)
                else:
                    self._run_process(job, use, device)
            except BaseException:  # noqa: BLE001 - run_job / launch.finish recorded it; the worker lives on
                pass
            finally:
                with self._wake:
                    self._running.pop(job.run_id, None)
                    self._started.pop(job.run_id, None)
                    self._wake.notify_all()
                job.done.set()

    def _next(self, device: str) -> _Job | None:
        """The next job to run on `device`: the first in priority order that fits in memory now
        (others wait with the reason in their row); None once shut down with nothing queued."""
        while True:
            with self._wake:
                if not self._pending:
                    if self._closed:
                        return None
                    self._wake.wait(HOLD_RECHECK_SECONDS)
                    continue
                candidates = list(self._pending)
            for job in candidates:
                held = self._held(job, device)
                with self._wake:
                    if job not in self._pending:
                        continue
                    if held is None:
                        self._pending.remove(job)
                        self._running[job.run_id] = device
                        self._started[job.run_id] = job
                        if job.held:
                            self.store.update_run(job.run_id, held=None)
                        job.device, job.held = device, None
                        return job
                    if held != job.held:
                        job.held = held
                        self.store.update_run(job.run_id, held=held)
            with self._wake:
                self._wake.wait(HOLD_RECHECK_SECONDS)

    def _held(self, job: _Job, device: str) -> str | None:
        """Why a job cannot start now (None: it can)."""
        if not self.check_memory:
            return None
        from core import launch
        try:
            check = launch.memory_check(job.config, _device_for(job, device), self._reserved(device))
        except Exception:  # noqa: BLE001 - an estimate that fails never blocks a run: training says what is wrong
            return None
        return None if check.fits else check.reason

    def _reserved(self, device: str) -> int:
        """Bytes the runs this manager started on `device` are still expected to take: each one's
        expected peak less what its process holds now (all of it while that cannot be read, e.g.
        a run in this process's threads). Two runs admitted together no longer both count the
        same free memory (a sweep's trial was killed for memory that way)."""
        from core import launch

        with self._wake:
            started = [job for job in self._started.values() if job.device == device]
        total = 0
        for job in started:
            try:
                peak = launch.expected_peak(job.config, _device_for(job, device))
            except Exception:  # noqa: BLE001 - as in _held
                continue
            pid = (self.store.get_run(job.run_id) or {}).get("owner_pid") if self.mode == "process" else None
            held_now = launch.process_rss(pid) if pid else None
            total += max(0, peak - (held_now or 0))
        return total

    def _run_process(self, job: _Job, device: str, slot_device: str) -> None:
        from core import launch

        run = self.store.get_run(job.run_id)
        log_path = Path(run["run_dir"]) / launch.LOG_NAME
        log_path.parent.mkdir(parents=True, exist_ok=True)
        processes = job.config.train.processes
        concurrent = sum(1 for d in self._worker_devices if d == slot_device)
        threads = launch.threads_per_process(processes, concurrent)
        cmd = launch.worker_command(job.run_id, self.store.path, threads, processes, resume=job.resume_from,
                                    device=device if device != "auto" else None)
        self.store.update_run(job.run_id, threads=threads, processes=processes, log_path=str(log_path), held=None,
                              device=device)
        launch.clear_rank_errors(run["run_dir"])
        proc = launch.start_run_process(cmd, launch.child_env(threads), log_path, device)
        killed = False
        while proc.poll() is None:
            if job.cancel.wait(0.5):
                killed = launch.stop(proc, (self.store.get_run(job.run_id) or {}).get("owner_pid"))
                break
        proc.wait()
        launch.finish(self.store, job.run_id, proc.returncode, job.cancel.is_set(), killed, log_path)

    def _watch(self) -> None:
        """Every few seconds: runs whose process died unseen (adopted from a restarted server,
        killed CLI runs) become `interrupted`, and this manager's queued runs with a cancel asked
        for through the store (`python -m core runs cancel`, another machine) are cancelled (a
        running one sees the request itself: run_job's CancelOnRequest)."""
        while True:
            time.sleep(WATCH_SECONDS)
            with self._lock:
                if self._closed:
                    return
                mine = set(self._running)
                queued = [job.run_id for job in self._pending]
            try:
                if self._watch_dead:
                    self.store.mark_interrupted(skip=mine)
                for run_id in self.store.cancel_requested(queued):
                    self.cancel(run_id)
            except Exception:  # noqa: BLE001 - a busy database is tried again next time
                pass
