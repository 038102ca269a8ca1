"""JobManager: background worker threads that run Trainer jobs, one per device by default.

    jobs = JobManager()                      # marks runs of dead processes `interrupted`
    run_id = jobs.submit(cfg)                # returns at once; the run row is `queued`
    jobs.status()                            # {"devices": [...], "queued": [...], "running": [...]}
    jobs.cancel(run_id)                      # stops at the next step, keeps the last checkpoint
    jobs.wait(run_id)                        # -> final status
    jobs.shutdown()

Jobs run in FIFO order. Every outcome is recorded in the store: `completed`, `failed`
(an exception, with its message; out-of-memory gets a message that says what to lower),
`diverged` (NaN/Inf loss, with the step), `cancelled`; the workers keep going.

On start-up, runs whose owning process is gone become `interrupted`: those left
`running`, and also those left `queued` (they are not restarted behind a person's back;
resubmit, or `resume` one that has a checkpoint). Each run row records the pid, host and
process start time of the process that owns it, so a live process's runs (a CLI run, a
second dashboard) are never marked. Worker threads never touch Streamlit; the store is
the only channel to the pages.

Jobs in one process share torch's global RNG: with several workers in one process, runs
that overlap in time are not bit-reproducible (each is still seeded).
"""
from __future__ import annotations

import gc
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from core.config import RunConfig
from core.errors import ConfigError, SigscopeError
from core.store import Store


@dataclass
class _Job:
    run_id: str
    config: RunConfig
    resume_from: Path | None = None
    callbacks: Sequence[Any] = ()
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    device: str | None = None


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
    from core.train import CancelOnEvent, StoreWriter, Trainer

    cancel = cancel or threading.Event()
    run = store.get_run(run_id)
    run_dir = Path(run["run_dir"]) if run and run.get("run_dir") else None
    store.claim_owner(run_id)
    store.update_run(run_id, status="running", started_at=time.time(), finished_at=None, error=None,
                     device=device or config.train.device)
    if resume_from is not None:
        from core.train import read_checkpoint
        # steps after the checkpoint (a partial epoch) are replayed, so their old points go
        store.truncate_run(run_id, int(read_checkpoint(resume_from)["global_step"]))
    writer = store.writer(run_id)
    status, message, summary = "failed", "", {}
    trainer = None
    try:
        trainer = Trainer(config, recorder=writer, run_dir=run_dir, device=device,
                          callbacks=[CancelOnEvent(cancel), StoreWriter(writer), *callbacks])
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
    from core.train import read_checkpoint

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
    if overrides:
        spec.check_resume_overrides(overrides, config)
        config = config.with_overrides(overrides)
        done = int(read_checkpoint(last).get("epoch", 0))
        if config.train.epochs <= done:
            raise ConfigError(f"train.epochs={config.train.epochs}: run {run_id} has already completed {done} "
                              f"epoch(s); give more than {done} to train on")
    else:
        config = config.validated()
    store.update_run(run_id, status="queued", error=None, finished_at=None, config=config.to_dict())
    return config, last


class JobManager:
    """Background training jobs over a shared run store."""

    def __init__(self, store: Store | None = None, max_workers: int | None = None,
                 devices: Sequence[str] | None = None, recover: bool = True) -> None:
        """store: the run store (default: ./runs or $SIGSCOPE_RUNS_DIR); max_workers: worker threads
        (default one per device); devices: e.g. ["cuda:0", "cuda:1"] (default: every GPU, else cpu);
        recover: mark runs left running/queued by dead processes `interrupted`."""
        self.store = store or Store()
        self.devices = list(devices) if devices else default_devices()
        n = max_workers if max_workers is not None else len(self.devices)
        if n < 1:
            raise ConfigError(f"max_workers={max_workers}: use at least one worker")
        self.recovered = self.store.mark_interrupted() if recover else []
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._jobs: dict[str, _Job] = {}
        self._queued: list[str] = []
        self._running: dict[str, str] = {}  # run_id -> device
        self._lock = threading.Lock()
        self._closed = False
        self._workers = [threading.Thread(target=self._work, args=(self.devices[i % len(self.devices)],),
                                          name=f"sigscope-worker-{i}", daemon=True) for i in range(n)]
        for worker in self._workers:
            worker.start()

    # ---- public API ------------------------------------------------------------------------
    def submit(self, config: RunConfig, name: str = "", callbacks: Sequence[Any] = ()) -> str:
        """Store a queued run and return its id at once; a config the spec refuses raises
        ConfigError (every problem, one per line) and stores nothing. `callbacks` are extra
        Trainer callbacks."""
        if not isinstance(config, RunConfig):
            raise ConfigError("submit() takes a RunConfig (use RunConfig.from_dict for a dict)")
        config = config.validated()  # a private, checked copy: a bad config never becomes a run
        run_id = self.store.create_run(config.to_dict(), name=name or config.name, status="queued")
        self._enqueue(_Job(run_id, config, callbacks=callbacks))
        return run_id

    def resume(self, run_id: str, callbacks: Sequence[Any] = (), overrides: dict | None = None) -> str:
        """Queue a stopped run (interrupted, cancelled, failed) to continue from its last
        checkpoint in the same run id: its metric curves carry on from that epoch. overrides:
        what a resumed run may change (e.g. {"train.epochs": 60}); others raise ConfigError."""
        config, last = requeue_for_resume(self.store, run_id, overrides)
        self.store.claim_owner(run_id)
        self._enqueue(_Job(run_id, config, resume_from=last, callbacks=callbacks))
        return run_id

    def _enqueue(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                self.store.update_run(job.run_id, status="cancelled", error="the job manager was shut down")
                raise RuntimeError("this JobManager has been shut down; create a new one")
            self._jobs[job.run_id] = job
            self._queued.append(job.run_id)
        self._queue.put(job)

    def cancel(self, run_id: str) -> bool:
        """Cancel a queued run (it never starts) or a running one (stops after its current
        step; the last checkpoint stays). False when the run is not this manager's or has ended."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None or job.done.is_set():
                return False
            job.cancel.set()
            if run_id in self._queued:
                self._queued.remove(run_id)
                self.store.update_run(run_id, status="cancelled", error="cancelled before it started",
                                      finished_at=time.time())
                job.done.set()
        return True

    def status(self) -> dict:
        """Devices, worker assignments, queued run ids (in order) and running run ids."""
        with self._lock:
            return {"devices": list(self.devices), "workers": len(self._workers),
                    "queued": list(self._queued), "running": dict(self._running)}

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
        join the workers (queued jobs still run unless cancelled)."""
        with self._lock:
            self._closed = True
            ids = list(self._queued) + list(self._running)
        if cancel:
            for run_id in ids:
                self.cancel(run_id)
        for _ in self._workers:
            self._queue.put(None)
        if wait:
            for worker in self._workers:
                worker.join(timeout)

    # ---- workers -------------------------------------------------------------------------
    def _work(self, device: str) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.cancel.is_set():  # cancelled while queued
                    continue
                self._queued.remove(job.run_id)
                self._running[job.run_id] = device
                job.device = device
            try:
                config_device = job.config.train.device
                use = device if config_device == "auto" else config_device
                run_job(self.store, job.run_id, job.config, use, job.cancel, job.callbacks, job.resume_from)
            except BaseException:  # noqa: BLE001 - run_job recorded it; the worker lives on
                pass
            finally:
                with self._lock:
                    self._running.pop(job.run_id, None)
                job.done.set()
