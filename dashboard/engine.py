"""The engine singleton: one JobManager + Store per server process.

Every browser session (tab, reload) of one `streamlit run` shares it through
`st.cache_resource`; each run trains in a child process the JobManager launches, never in a script
run. Worker threads never call `st.*`: pages poll the store by run id, so a run started
from the CLI or another process shows up exactly like one started here. The JobManager
re-checks every couple of seconds (core.jobs.WATCH_SECONDS) the runs other processes of this
machine own, by pid and start time: one killed under a running dashboard (SIGKILL, the
kernel's out-of-memory killer) shows `interrupted` within seconds, not at the next start.

The cache is keyed on the runs folder, so pointing `SIGSCOPE_RUNS_DIR` elsewhere (tests do)
gets a fresh engine over that folder.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from core import paths
from core.config import DataConfig, ModelConfig, ProbeConfig, RunConfig, TrainConfig
from core.jobs import JobManager
from core.store import ACTIVE_STATUSES, Store

WORKERS_ENV = "SIGSCOPE_WORKERS"

# The quick start: trains in about 20 s on two CPU cores and reaches ~0.8 test accuracy.
QUICK_START_HPARAMS = {"base_channels": 16, "num_stages": 2, "blocks_per_stage": 1}


@dataclass
class Engine:
    """What the pages share: the store they read and the job manager that trains."""

    store: Store
    jobs: JobManager
    started_at: float = field(default_factory=time.time)
    revived: list = field(default_factory=list)  # sweeps whose worker this engine restarted

    def submit(self, config: RunConfig) -> str:
        """Queue a run; returns its id at once."""
        return self.jobs.submit(config)

    def cancel(self, run_id: str) -> str:
        """Cancel a queued/running run; returns a sentence saying what happened. A run another
        process trains on this machine (a CLI run, one adopted from a restarted server) gets
        SIGTERM, which stops it after its current step."""
        if self.jobs.cancel(run_id):
            return f"cancel requested for {run_id}: it stops after its current step"
        from core.launch import signal_run
        return signal_run(self.store, run_id)

    def status(self) -> dict:
        """Devices and worker count of this engine, plus queued/running runs of every process."""
        own = self.jobs.status()
        active = self.store.list_runs(ACTIVE_STATUSES)
        return {"devices": own["devices"], "workers": own["workers"], "mode": own["mode"], "held": own["held"],
                "queued": [r for r in active if r["status"] == "queued"],
                "running": [r for r in active if r["status"] == "running"],
                "own_queued": own["queued"], "own_running": own["running"],
                "recovered": list(self.jobs.recovered), "runs_dir": str(self.store.runs_dir)}


# Behind the cache, one engine per (runs folder, workers) for the life of the process: the
# menu's "Clear caches" drops cache_resource entries, and a JobManager dropped that way would
# keep training with nobody able to cancel its jobs from the pages.
_ENGINES: dict[tuple[str, int], Engine] = {}
_LOCK = threading.Lock()


@st.cache_resource(show_spinner=False)
def _engine_for(runs_dir: str, workers: int) -> Engine:
    with _LOCK:
        eng = _ENGINES.get((runs_dir, workers))
        if eng is None:
            store = Store(paths.store_path(Path(runs_dir)))
            eng = _ENGINES[(runs_dir, workers)] = Engine(store=store, jobs=JobManager(store, max_workers=workers))
            from core.sweep import revive
            eng.revived = revive(store)  # sweeps a restart left without their worker carry on
        return eng


def shutdown_engines(cancel: bool = True) -> None:
    """Stop every engine of this process (tests; a server simply exits)."""
    with _LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for eng in engines:
        eng.jobs.shutdown(wait=False, cancel=cancel)
    st.cache_resource.clear()


def engine() -> Engine:
    """This server's engine over the current runs folder (created on first use)."""
    workers = int(os.environ.get(WORKERS_ENV, "1") or 1)
    return _engine_for(str(paths.runs_dir()), workers)


def quick_start_config() -> RunConfig:
    """The default model on the bundled data: a small resnet1d on the bundled HAPT sample
    (subjects 1-4, six activities), 3 epochs, stratified split."""
    return RunConfig(name="quick start: resnet1d on HAPT",
                     data=DataConfig(source="hapt"),
                     model=ModelConfig(name="resnet1d", hparams=dict(QUICK_START_HPARAMS)),
                     train=TrainConfig(epochs=3, batch_size=64, probes=ProbeConfig()))  # cadence scaled to the run
