"""The process side of `python -m core train --run-id ID` (and `--join`): what the job
manager starts for each run, and what torchrun starts for each rank of a DDP run.

One process: train the stored run and record it, as the CLI does. Under torchrun (WORLD_SIZE
set): join the process group; rank 0 reads the run's config from the store and hands it to
every rank, records the run and keeps its checkpoints; the other ranks train their shard.
A rank that raises writes its one-line error to `<run>/rank-errors/rank<R>.txt` for the
launcher (core.launch.finish). SIGTERM sets the cancel flag: the run stops at the end of its
current step on every rank, checkpoint kept.

Two switches for the tests of how runs end (fault injection, off unless set):
SIGSCOPE_FAULT=RANK:STEP makes that rank raise at that step; SIGSCOPE_PAUSE=STEP:PATH makes
rank 0 wait at the end of that step (after writing PATH.reached: the step, and the process's torch
thread count and OMP_NUM_THREADS as JSON) until PATH exists or the run is asked to stop.
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from core import distributed
from core.errors import ConfigError

FAULT_ENV = "SIGSCOPE_FAULT"
PAUSE_ENV = "SIGSCOPE_PAUSE"


def run_worker(args) -> int:
    import torch

    from core import launch
    from core.config import RunConfig
    from core.store import Store

    if args.threads:
        torch.set_num_threads(int(args.threads))
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    store = Store(args.store) if args.store else Store()
    run_dir = None
    status = "failed"
    try:
        device = distributed.init_from_env(args.device or "auto")
        rank = distributed.rank()
        if args.join and rank == 0:
            raise ConfigError("--join is for the ranks of nodes other than 0; node 0 stores the run")
        run = store.get_run(args.run_id) if args.run_id else None
        if args.run_id and run is None:
            raise ConfigError(f"no run {args.run_id!r} in {store.path}")
        run_dir = run["run_dir"] if run else None
        config = distributed.broadcast(RunConfig.from_dict(run["config"]) if rank == 0 else None)
        callbacks = injected(cancel)
        if run and run.get("sweep") and rank == 0:
            from core.sweep import trial_callback
            callbacks.append(trial_callback(run))
        if rank == 0:
            status = _rank0(store, args.run_id, config, device, cancel, callbacks, args)
            if status == "failed":
                launch.record_rank_error(run_dir, 0, (store.get_run(args.run_id) or {}).get("error") or "failed")
        else:
            status = _other_rank(config, device, cancel, callbacks, args)
    except BaseException as error:
        from core.infer.reading import error_line
        launch.record_rank_error(run_dir, distributed.rank(), error_line(error))
        raise
    finally:
        distributed.shutdown()
    return 0 if status in ("completed", "cancelled", "pruned") else 1


def _rank0(store, run_id: str, config, device: str, cancel, callbacks: list, args) -> str:
    from core.jobs import run_job
    from core.train import ProgressPrinter

    world = distributed.world_size()
    store.update_run(run_id, processes=world, **({"threads": int(args.threads)} if args.threads else {}))
    resume = Path(args.resume_checkpoint) if args.resume_checkpoint else None
    return run_job(store, run_id, config, device=None if device == "auto" else device, cancel=cancel,
                   callbacks=[ProgressPrinter(), *callbacks], resume_from=resume)


def _other_rank(config, device: str, cancel, callbacks: list, args) -> str:
    """Train this rank's shard with rank 0; nothing is recorded here."""
    from core.train import CancelOnEvent, Trainer

    trainer = Trainer(config, device=device, callbacks=[CancelOnEvent(cancel), *callbacks])
    return trainer.fit(resume_from=args.resume_checkpoint).status


def injected(cancel: threading.Event | None = None) -> list:
    """The fault-injection callbacks the environment asks for (none unless set); `cancel` is the
    run's stop flag, which also ends a pause."""
    return ([_fault()] if os.environ.get(FAULT_ENV) else []) + ([_pause(cancel)] if os.environ.get(PAUSE_ENV) else [])


def _fault():
    """A callback that raises on the rank and step SIGSCOPE_FAULT names."""
    from core.train import Callback

    rank_text, _, step_text = os.environ[FAULT_ENV].partition(":")

    class InjectedFault(Callback):
        name = "injected_fault"

        def on_step_end(self, trainer, step: int) -> None:
            if distributed.rank() == int(rank_text) and step == int(step_text or 1):
                raise RuntimeError(f"injected fault on rank {rank_text} at step {step} ({FAULT_ENV})")

    return InjectedFault()


def _pause(cancel: threading.Event | None = None):
    """A callback that holds rank 0 at the end of the step SIGSCOPE_PAUSE names until a file
    appears or the run is asked to stop (then it stops at that step's end)."""
    import json
    import time

    from core.train import Callback

    step_text, _, path_text = os.environ[PAUSE_ENV].partition(":")
    gate = Path(path_text)

    class Pause(Callback):
        name = "injected_pause"

        def on_step_end(self, trainer, step: int) -> None:
            if distributed.rank() == 0 and step == int(step_text):
                import torch  # what the held process runs on, for the tests that read it
                Path(str(gate) + ".reached").write_text(json.dumps({
                    "step": step, "torch_threads": torch.get_num_threads(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}))
                deadline = time.monotonic() + 120
                while not gate.exists() and time.monotonic() < deadline and not (cancel and cancel.is_set()):
                    time.sleep(0.05)

    return Pause()
