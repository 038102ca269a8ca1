"""Where runs live on disk.

The runs folder is `$SIGSCOPE_RUNS_DIR` when set, else `./runs` (relative to the current
working directory). The SQLite store is `<runs>/sigscope.db`; each run keeps its
checkpoints and config files in `<runs>/<run_id>/`, and its last export in `<runs>/<run_id>/deploy/`.
"""
from __future__ import annotations

import os
from pathlib import Path

RUNS_ENV = "SIGSCOPE_RUNS_DIR"
CACHE_ENV = "SIGSCOPE_CACHE_DIR"  # data features, synthetic voices, the machine's measured peak
STORE_FILE = "sigscope.db"
DEPLOY_DIR = "deploy"  # inside a run's folder: what `python -m core export` wrote (core.deploy.export)
DEPLOY_REPORT = "report.json"  # inside DEPLOY_DIR: every variant and what was measured


def runs_dir(create: bool = True) -> Path:
    """The runs folder (created when missing unless `create=False`)."""
    path = Path(os.environ.get(RUNS_ENV) or "runs").expanduser().resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(override: str | Path | None = None) -> Path:
    """The cache folder: `override`, else `$SIGSCOPE_CACHE_DIR`, else `runs/cache` (relative to the
    working directory, as the data cache has always been)."""
    if override is not None:
        return Path(override)
    return Path(os.environ.get(CACHE_ENV) or Path("runs") / "cache")


def store_path(runs: Path | None = None) -> Path:
    """The SQLite store file inside the runs folder."""
    return (Path(runs) if runs is not None else runs_dir()) / STORE_FILE


def run_dir(run_id: str, runs: Path | None = None, create: bool = True) -> Path:
    """One run's folder: checkpoints, config.json, normalization.json, classes.json."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise ValueError(f"run id {run_id!r} cannot name a folder")
    path = (Path(runs) if runs is not None else runs_dir()) / run_id
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
