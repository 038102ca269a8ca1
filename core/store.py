"""SQLite run store: runs, configs, metric/probe series, histograms, events, artifacts.

One file (`<runs>/sigscope.db`, see `core.paths`) in WAL mode, so the dashboard's
readers never block a job's writer. Every thread gets its own connection. A job writes
through a `RunWriter`, which batches rows and flushes at least every 0.5 s (and at every
epoch end), so a training step never waits on the disk.

    store = Store()                                   # ./runs/sigscope.db or $SIGSCOPE_RUNS_DIR
    run_id = store.create_run(cfg.to_dict(), name="baseline")
    with store.writer(run_id) as w:
        w.metric(step=10, epoch=0, split="step", key="loss", value=1.2)
    store.metric_series(run_id, keys=["loss"])       # [{"step": 10, "epoch": 0, ...}]

Splits used in `metrics`: "step" (per optimizer step: loss, lr), "train", "val", "test"
(per epoch / at the end). `reports` hold JSON values that are not scalars (confusion
matrices, per-class arrays). Statuses: see `STATUSES`.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core import paths

STATUSES = ("queued", "running", "completed", "pruned", "failed", "diverged", "cancelled", "interrupted")
ACTIVE_STATUSES = ("queued", "running")
FLUSH_SECONDS = 0.5


_V1 = """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,
            config TEXT NOT NULL,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            error TEXT,
            epoch INTEGER NOT NULL DEFAULT 0,
            total_epochs INTEGER,
            step INTEGER NOT NULL DEFAULT 0,
            total_steps INTEGER,
            device TEXT,
            owner_pid INTEGER,
            owner_host TEXT,
            owner_started TEXT,
            run_dir TEXT,
            summary TEXT
        );
        CREATE INDEX runs_status ON runs(status);
        CREATE TABLE metrics (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            epoch INTEGER,
            split TEXT NOT NULL,
            key TEXT NOT NULL,
            value REAL
        );
        CREATE INDEX metrics_run_key ON metrics(run_id, key, step);
        CREATE TABLE probes (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            layer TEXT NOT NULL,
            key TEXT NOT NULL,
            value REAL
        );
        CREATE INDEX probes_run_key ON probes(run_id, key, step);
        CREATE TABLE histograms (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            layer TEXT NOT NULL,
            kind TEXT NOT NULL,
            edges TEXT NOT NULL,
            counts TEXT NOT NULL
        );
        CREATE INDEX histograms_run ON histograms(run_id, kind, step);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            time REAL NOT NULL,
            level TEXT NOT NULL,
            message TEXT NOT NULL
        );
        CREATE INDEX events_run ON events(run_id, id);
        CREATE TABLE artifacts (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            path TEXT NOT NULL,
            created_at REAL NOT NULL,
            info TEXT
        );
        CREATE INDEX artifacts_run ON artifacts(run_id);
        CREATE TABLE reports (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            epoch INTEGER,
            split TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL
        );
        CREATE INDEX reports_run_key ON reports(run_id, key, step);
"""


def _execute_all(db: sqlite3.Connection, script: str) -> None:
    """Run a script statement by statement inside the caller's transaction
    (`executescript` would commit it half-way)."""
    for statement in (s.strip() for s in script.split(";")):
        if statement:
            db.execute(statement)


def _v1(db: sqlite3.Connection) -> None:
    _execute_all(db, _V1)


def _v2(db: sqlite3.Connection) -> None:
    """Runs as processes: the threads and processes a run was given, its log file, its
    queue priority and why it is held in the queue."""
    for column in ("threads INTEGER", "processes INTEGER", "log_path TEXT", "priority INTEGER NOT NULL DEFAULT 0",
                   "held TEXT"):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column}")


def _v3(db: sqlite3.Connection) -> None:
    """Sweeps: a run's study and trial (and the trial's storage, JSON), and the sweeps this
    machine started, with the process driving each."""
    for column in ("study TEXT", "trial INTEGER", "sweep TEXT"):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column}")
    db.execute("CREATE INDEX runs_study ON runs(study, trial)")
    db.execute("""CREATE TABLE sweeps (
            name TEXT NOT NULL,
            storage TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            owner_pid INTEGER,
            owner_host TEXT,
            owner_started TEXT,
            workers INTEGER NOT NULL DEFAULT 1,
            log_path TEXT,
            message TEXT,
            PRIMARY KEY (name, storage)
        )""")


def _v4(db: sqlite3.Connection) -> None:
    """A cancel asked for through the store (`runs cancel`, another machine): when it was asked;
    the engine that runs the run acts on it."""
    db.execute("ALTER TABLE runs ADD COLUMN cancel_requested REAL")


def _v5(db: sqlite3.Connection) -> None:
    """Seed ensembles: the tag shared by the runs trained as one ensemble (core.ensembles)."""
    db.execute("ALTER TABLE runs ADD COLUMN ensemble TEXT")


def _v6(db: sqlite3.Connection) -> None:
    """Explore: the run a run was made for (a cross-validation fold of it), and the marks a
    person put on a dataset's windows (exclude, relabel as) for new runs to use."""
    db.execute("ALTER TABLE runs ADD COLUMN parent TEXT")
    db.execute("""CREATE TABLE marks (
            dataset TEXT NOT NULL,
            window_id TEXT NOT NULL,
            action TEXT NOT NULL,
            label TEXT,
            note TEXT,
            created_at REAL NOT NULL,
            PRIMARY KEY (dataset, window_id)
        )""")


# Migrations as code: (version, function). Append new ones; never edit a released one.
MIGRATIONS: list[tuple[int, Callable[[sqlite3.Connection], None]]] = [(1, _v1), (2, _v2), (3, _v3), (4, _v4),
                                                                      (5, _v5), (6, _v6)]
SCHEMA_VERSION = MIGRATIONS[-1][0]

_RUN_FIELDS = ("name", "status", "config", "started_at", "finished_at", "error", "epoch", "total_epochs",
               "step", "total_steps", "device", "owner_pid", "owner_host", "owner_started", "run_dir", "summary",
               "threads", "processes", "log_path", "priority", "held", "study", "trial", "sweep",
               "cancel_requested", "ensemble", "parent")
# the run columns a run dump carries as they are (config and summary go as JSON; the owning
# process and the folder are the restoring store's own)
_DUMPED_RUN = ("name", "status", "created_at", "started_at", "finished_at", "error", "epoch", "total_epochs", "step",
               "total_steps", "device", "ensemble", "parent")
# the tables a run dump carries, and their columns (row ids and run_id left out)
_DUMPED = {"metrics": ("step", "epoch", "split", "key", "value"), "probes": ("step", "layer", "key", "value"),
           "histograms": ("step", "layer", "kind", "edges", "counts"), "events": ("time", "level", "message"),
           "reports": ("step", "epoch", "split", "key", "value")}
_SWEEP_FIELDS = ("status", "owner_pid", "owner_host", "owner_started", "workers", "log_path", "message")
SWEEP_STATUSES = ("running", "stopping", "stopped", "finished", "failed")


def new_run_id() -> str:
    """Sortable by creation time and unique: '20250101-120000-3fa9c2'."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def process_identity(pid: int | None = None) -> tuple[int, str, str]:
    """(pid, host, start token) of a process; the start token tells a reused pid apart."""
    pid = os.getpid() if pid is None else pid
    return pid, socket.gethostname(), _process_start(pid) or ""


def _process_stat(pid: int) -> tuple[str, str] | None:
    """(state, start token) of a process from /proc/PID/stat; None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # fields 3 (state) and 22 (starttime) count from after the ")" that closes the command name
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], fields[19]


def _process_start(pid: int) -> str | None:
    stat = _process_stat(pid)
    return stat[1] if stat else None


def process_alive(pid: int | None, host: str | None, started: str | None) -> bool:
    """True when the process that owns a run is (probably) still running.

    A process on another host cannot be checked and counts as alive, so its runs are
    never marked interrupted from here."""
    if pid is None:
        return False
    if host and host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _process_stat(int(pid))
    if stat is None:
        return True
    state, now = stat
    # a zombie (Z) has exited and only waits for its parent to collect the exit status: a run
    # killed under a parent that has not waited yet is dead, though kill(pid, 0) still succeeds
    return state not in ("Z", "X") and not (started and now != started)


def _json_value(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def _float(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None  # NaN/Inf stored as NULL; events carry them


class Store:
    """The run store. Thread-safe: each thread uses its own SQLite connection."""

    def __init__(self, path: str | Path | None = None) -> None:
        """path: the .db file; None = `core.paths.store_path()` ($SIGSCOPE_RUNS_DIR or ./runs)."""
        self.path = Path(path) if path is not None else paths.store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.runs_dir = self.path.parent
        self._local = threading.local()
        self._migrate()

    # ---- connections and schema -------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; WAL; waits up to 30 s on a write lock)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    def close(self) -> None:
        """Close this thread's connection (others close when their thread's store goes)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _migrate(self) -> None:
        db = self.connect()
        if self._current_version(db) == SCHEMA_VERSION:
            return  # up to date: no write lock, so opening a store never waits on a running job
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema version {current}, newer than this code "
                                   f"({SCHEMA_VERSION}); update Sigscope or point SIGSCOPE_RUNS_DIR elsewhere")
            for version, migrate in MIGRATIONS:
                if version > current:
                    migrate(db)
                    db.execute("INSERT INTO schema_version(version) VALUES (?)", (version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @staticmethod
    def _current_version(db: sqlite3.Connection) -> int:
        try:
            return db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
        except sqlite3.OperationalError:
            return 0

    def schema_version(self) -> int:
        return self.connect().execute("SELECT MAX(version) FROM schema_version").fetchone()[0]

    # ---- runs ---------------------------------------------------------------------------
    def create_run(self, config: dict, name: str = "", status: str = "queued", run_id: str | None = None,
                   owner_pid: int | None = None) -> str:
        """Store a new run row and make its folder; returns the run id."""
        run_id = run_id or new_run_id()
        pid, host, started = process_identity(owner_pid)
        folder = paths.run_dir(run_id, self.runs_dir)
        self.connect().execute(
            "INSERT INTO runs(id, name, status, config, created_at, owner_pid, owner_host, owner_started, run_dir) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, name or config.get("name") or "", _check_status(status), json.dumps(config),
             time.time(), pid, host, started, str(folder)))
        return run_id

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set run columns by name (config/summary may be dicts; status is validated)."""
        bad = sorted(set(fields) - set(_RUN_FIELDS))
        if bad:
            raise ValueError(f"update_run: unknown field(s) {bad}; known: {_RUN_FIELDS}")
        if "status" in fields:
            _check_status(fields["status"])
        for key in ("config", "summary", "sweep"):
            if key in fields and not isinstance(fields[key], (str, type(None))):
                fields[key] = _json_value(fields[key])
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.connect().execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    def claim_owner(self, run_id: str) -> None:
        """Record this process as the run's owner (the one that will run it)."""
        pid, host, started = process_identity()
        self.update_run(run_id, owner_pid=pid, owner_host=host, owner_started=started)

    def request_cancel(self, run_id: str) -> bool:
        """Ask, through the store, that a queued or running run stop (the engine that runs it
        acts within seconds); False when the run does not exist or has ended."""
        cur = self.connect().execute(
            f"UPDATE runs SET cancel_requested = ? WHERE id = ? AND status IN ({','.join('?' * len(ACTIVE_STATUSES))})",
            (time.time(), run_id, *ACTIVE_STATUSES))
        return cur.rowcount > 0

    def cancel_requested(self, run_ids: Iterable[str]) -> list[str]:
        """Which of `run_ids` have a cancel asked for through the store."""
        ids = list(run_ids)
        if not ids:
            return []
        rows = self.connect().execute(f"SELECT id FROM runs WHERE cancel_requested IS NOT NULL AND id IN "
                                      f"({','.join('?' * len(ids))})", ids).fetchall()
        return [r["id"] for r in rows]

    def get_run(self, run_id: str) -> dict | None:
        row = self.connect().execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run_dict(row) if row else None

    def list_runs(self, status: str | Iterable[str] | None = None) -> list[dict]:
        """Runs, newest first (each a dict with the parsed config and summary)."""
        sql, args = "SELECT * FROM runs", ()
        if status is not None:
            wanted = (status,) if isinstance(status, str) else tuple(status)
            sql += f" WHERE status IN ({','.join('?' * len(wanted))})"
            args = wanted
        rows = self.connect().execute(sql + " ORDER BY created_at DESC, id DESC", args).fetchall()
        return [_run_dict(r) for r in rows]

    def study_runs(self, study: str) -> list[dict]:
        """The runs of one sweep study, by trial number."""
        rows = self.connect().execute("SELECT * FROM runs WHERE study = ? ORDER BY trial, created_at", (study,))
        return [_run_dict(r) for r in rows.fetchall()]

    # ---- sweeps this machine drives --------------------------------------------------------
    def put_sweep(self, name: str, storage: str, **fields: Any) -> None:
        """Insert or update a sweep's row (status, the process driving it, its log, message)."""
        bad = sorted(set(fields) - set(_SWEEP_FIELDS))
        if bad:
            raise ValueError(f"put_sweep: unknown field(s) {bad}; known: {_SWEEP_FIELDS}")
        if fields.get("status", "running") not in SWEEP_STATUSES:
            raise ValueError(f"unknown sweep status {fields['status']!r}; one of {SWEEP_STATUSES}")
        now = time.time()
        db = self.connect()
        db.execute("INSERT OR IGNORE INTO sweeps(name, storage, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                   (name, storage, fields.get("status", "running"), now, now))
        sets = ", ".join(f"{k} = ?" for k in [*fields, "updated_at"])
        db.execute(f"UPDATE sweeps SET {sets} WHERE name = ? AND storage = ?", (*fields.values(), now, name, storage))

    def get_sweep(self, name: str, storage: str | None = None) -> dict | None:
        sql, args = "SELECT * FROM sweeps WHERE name = ?", [name]
        if storage is not None:
            sql, args = sql + " AND storage = ?", [*args, storage]
        row = self.connect().execute(sql + " ORDER BY updated_at DESC", args).fetchone()
        return dict(row) if row else None

    def list_sweeps(self) -> list[dict]:
        """Sweeps started on this machine, newest first."""
        rows = self.connect().execute("SELECT * FROM sweeps ORDER BY created_at DESC").fetchall()
        return [dict(r) for r in rows]

    def put_mark(self, dataset: str, window_id: str, action: str, label: str | None = None, note: str = "") -> None:
        """Mark one window of a dataset (core.explore.marks says what a mark means); a window has
        one mark, so a new one replaces the old."""
        self.connect().execute(
            "INSERT OR REPLACE INTO marks(dataset, window_id, action, label, note, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (dataset, window_id, action, label, note, time.time()))

    def marks(self, dataset: str) -> list[dict]:
        """A dataset's marks, oldest first."""
        rows = self.connect().execute("SELECT * FROM marks WHERE dataset = ? ORDER BY created_at, window_id",
                                      (dataset,)).fetchall()
        return [dict(r) for r in rows]

    def delete_mark(self, dataset: str, window_id: str) -> bool:
        return self.connect().execute("DELETE FROM marks WHERE dataset = ? AND window_id = ?",
                                      (dataset, window_id)).rowcount > 0

    def delete_run(self, run_id: str, remove_files: bool = True) -> bool:
        """Delete a run's rows (and its folder unless `remove_files=False`). Refuses a running run."""
        run = self.get_run(run_id)
        if run is None:
            return False
        if run["status"] == "running" and process_alive(run["owner_pid"], run["owner_host"], run["owner_started"]):
            raise RuntimeError(f"run {run_id} is running; cancel it before deleting it")
        db = self.connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in ("metrics", "probes", "histograms", "events", "artifacts", "reports"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if remove_files and run.get("run_dir"):
            import shutil
            folder = Path(run["run_dir"])
            if folder.is_dir() and folder.parent == self.runs_dir:
                shutil.rmtree(folder, ignore_errors=True)
        return True

    def dump_run(self, run_id: str) -> dict:
        """Everything the store holds of one finished run as plain JSON-ready data: its row
        (without the process that owned it or its folder) and its series, events and reports
        (without row ids). `restore_run` puts it back, in this store or another one."""
        run = self.get_run(run_id)
        if run is None:
            raise KeyError(f"no run {run_id!r} in {self.path}")
        row = {k: run[k] for k in (*_DUMPED_RUN, "config", "summary")}
        db = self.connect()
        tables = {t: [list(r) for r in db.execute(f"SELECT {', '.join(cols)} FROM {t} WHERE run_id = ? ORDER BY id",
                                                  (run_id,))]
                  for t, cols in _DUMPED.items()}
        return {"format": 1, "run": row, "tables": tables}

    def restore_run(self, dump: dict, run_id: str | None = None) -> str:
        """Insert a `dump_run` result as a new run (a fresh id unless given; its folder is made
        empty, for the caller to fill) in one transaction; returns the id."""
        if not isinstance(dump, dict) or dump.get("format") != 1 or not isinstance(dump.get("run"), dict):
            raise ValueError("not a Sigscope run dump (format 1)")
        row, tables = dump["run"], dump.get("tables") or {}
        run_id = run_id or new_run_id()
        folder = paths.run_dir(run_id, self.runs_dir)
        fields = {k: row.get(k) for k in _DUMPED_RUN}
        fields.update(config=json.dumps(row.get("config") or {}), summary=_json_value(row.get("summary") or {}),
                      run_dir=str(folder), status=_check_status(fields["status"] or "completed"),
                      name=fields["name"] or "", created_at=fields["created_at"] or time.time(),
                      epoch=fields["epoch"] or 0, step=fields["step"] or 0)
        db = self.connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(f"INSERT INTO runs(id, {', '.join(fields)}) VALUES (?{', ?' * len(fields)})",
                       (run_id, *fields.values()))
            for table, cols in _DUMPED.items():
                db.executemany(f"INSERT INTO {table}(run_id, {', '.join(cols)}) VALUES (?{', ?' * len(cols)})",
                               [(run_id, *r) for r in tables.get(table, [])])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return run_id

    def truncate_run(self, run_id: str, after_step: int) -> None:
        """Drop series points after `after_step` (a resumed run replays those steps)."""
        db = self.connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in ("metrics", "probes", "histograms", "reports"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ? AND step > ?", (run_id, after_step))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def mark_interrupted(self, alive: Callable[[int | None, str | None, str | None], bool] = process_alive,
                         skip: Iterable[str] = ()) -> list[str]:
        """Runs left `running` or `queued` by a process that is gone become `interrupted`.

        Queued runs of a dead process are not restarted automatically: starting work a
        person queued in a session that has since died would surprise them; they can
        resubmit (or resume) it. Runs owned by a live process (or another host) stay."""
        changed = []
        skip = set(skip)
        for run in self.list_runs(ACTIVE_STATUSES):
            if run["id"] in skip or alive(run["owner_pid"], run["owner_host"], run["owner_started"]):
                continue
            what = "was running" if run["status"] == "running" else "was queued"
            msg = (f"interrupted: the process that owned this run (pid {run['owner_pid']} on "
                   f"{run['owner_host']}) ended while it {what}; its metrics and last checkpoint are kept")
            self.update_run(run["id"], status="interrupted", error=msg, finished_at=time.time())
            self.connect().execute("INSERT INTO events(run_id, time, level, message) VALUES (?, ?, ?, ?)",
                                   (run["id"], time.time(), "warning", msg))
            changed.append(run["id"])
        return changed

    # ---- series readers -----------------------------------------------------------------
    def metric_series(self, run_id: str, keys: Iterable[str] | None = None, since_step: int | None = None,
                      split: str | None = None) -> list[dict]:
        """Metric points ordered by step: dicts with step, epoch, split, key, value.
        `since_step` returns only points with step > since_step (for incremental polling)."""
        sql = "SELECT id, step, epoch, split, key, value FROM metrics WHERE run_id = ?"
        args: list[Any] = [run_id]
        if keys is not None:
            keys = [keys] if isinstance(keys, str) else list(keys)
            sql += f" AND key IN ({','.join('?' * len(keys))})"
            args += keys
        rows = self._series_rows(sql, args, since_step, split=split)
        return [{k: r[k] for k in ("step", "epoch", "split", "key", "value")} for r in rows]

    def metric_keys(self, run_id: str) -> list[tuple[str, str]]:
        """(split, key) pairs that a run has points for."""
        rows = self.connect().execute("SELECT DISTINCT split, key FROM metrics WHERE run_id = ? ORDER BY split, key",
                                      (run_id,)).fetchall()
        return [(r[0], r[1]) for r in rows]

    def final_metrics(self, run_id: str) -> dict[str, float | None]:
        """The last value of every (split, key) as {"val_accuracy": 0.9, "test_loss": ...}."""
        rows = self.connect().execute(
            "SELECT m.split, m.key, m.value FROM metrics m JOIN (SELECT split, key, MAX(id) AS id FROM metrics "
            "WHERE run_id = ? GROUP BY split, key) last ON m.id = last.id ORDER BY m.split, m.key",
            (run_id,)).fetchall()
        return {f"{r[0]}_{r[1]}": r[2] for r in rows}

    def probe_series(self, run_id: str, key: str, layer: str | None = None, since_step: int | None = None) -> list[dict]:
        """Probe points for one key (e.g. "grad_norm", "dead_fraction"): step, layer, key, value."""
        sql = "SELECT step, layer, key, value FROM probes WHERE run_id = ? AND key = ?"
        rows = self._series_rows(sql, [run_id, key], since_step, layer=layer)
        return [dict(r) for r in rows]

    def _series_rows(self, sql: str, args: list, since_step: int | None, **equal: Any) -> list:
        """Run a series SELECT narrowed by `column = value` for each value given and by
        `step > since_step` (incremental polling), ordered by step then insertion."""
        for column, value in equal.items():
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        if since_step is not None:
            sql += " AND step > ?"
            args.append(since_step)
        return self.connect().execute(sql + " ORDER BY step, id", args).fetchall()

    def probe_keys(self, run_id: str) -> list[str]:
        rows = self.connect().execute("SELECT DISTINCT key FROM probes WHERE run_id = ? ORDER BY key", (run_id,))
        return [r[0] for r in rows]

    def last_probes(self, run_id: str) -> dict[str, dict[str, float | None]]:
        """The latest value of every probe key per layer: {key: {layer: value}}."""
        rows = self.connect().execute(
            "SELECT p.key, p.layer, p.value FROM probes p JOIN (SELECT key, layer, MAX(id) AS id FROM probes "
            "WHERE run_id = ? GROUP BY key, layer) last ON p.id = last.id ORDER BY p.key, p.layer",
            (run_id,)).fetchall()
        out: dict[str, dict[str, float | None]] = {}
        for key, layer, value in rows:
            out.setdefault(key, {})[layer] = value
        return out

    def histograms(self, run_id: str, kind: str | None = None, layer: str | None = None,
                   step: int | None = None, since_step: int | None = None) -> list[dict]:
        """Histograms (kind "grad", "weight", "activation"): step, layer, kind, edges (n+1), counts (n)."""
        sql = "SELECT step, layer, kind, edges, counts FROM histograms WHERE run_id = ?"
        rows = self._series_rows(sql, [run_id], since_step, kind=kind, layer=layer, step=step)
        return [{"step": r[0], "layer": r[1], "kind": r[2], "edges": json.loads(r[3]), "counts": json.loads(r[4])}
                for r in rows]

    def histogram_kinds(self, run_id: str) -> list[str]:
        """The kinds of histogram a run stored ("grad", "weight", "activation", ...)."""
        rows = self.connect().execute("SELECT DISTINCT kind FROM histograms WHERE run_id = ? ORDER BY kind", (run_id,))
        return [r[0] for r in rows]

    def histogram_layers(self, run_id: str, kind: str) -> list[str]:
        """Layers with histograms of one kind, in the order the first step stored them (model order)."""
        rows = self.connect().execute(
            "SELECT layer, MIN(id) AS first FROM histograms WHERE run_id = ? AND kind = ? GROUP BY layer "
            "ORDER BY first", (run_id, kind))
        return [r[0] for r in rows]

    def events(self, run_id: str, since_id: int | None = None) -> list[dict]:
        """Log lines: id, time, level ("info" | "warning" | "error"), message; oldest first."""
        sql = "SELECT id, time, level, message FROM events WHERE run_id = ?"
        args: list[Any] = [run_id]
        if since_id is not None:
            sql += " AND id > ?"
            args.append(since_id)
        return [dict(r) for r in self.connect().execute(sql + " ORDER BY id", args).fetchall()]

    def artifacts(self, run_id: str) -> list[dict]:
        """Files a run produced: kind ("checkpoint_best", "checkpoint_last", "config", ...), path, info."""
        rows = self.connect().execute("SELECT kind, path, created_at, info FROM artifacts WHERE run_id = ? "
                                      "ORDER BY id", (run_id,)).fetchall()
        return [{"kind": r[0], "path": r[1], "created_at": r[2], "info": json.loads(r[3]) if r[3] else {}}
                for r in rows]

    def reports(self, run_id: str, key: str | None = None, split: str | None = None) -> list[dict]:
        """JSON reports (e.g. key "confusion_matrix"): step, epoch, split, key, value."""
        sql = "SELECT step, epoch, split, key, value FROM reports WHERE run_id = ?"
        args: list[Any] = [run_id]
        for column, value in (("key", key), ("split", split)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        rows = self.connect().execute(sql + " ORDER BY step, id", args).fetchall()
        return [{"step": r[0], "epoch": r[1], "split": r[2], "key": r[3], "value": json.loads(r[4])} for r in rows]

    # ---- writing --------------------------------------------------------------------------
    def writer(self, run_id: str, flush_seconds: float = FLUSH_SECONDS) -> RunWriter:
        """A batched writer for one run; use it from one thread (the job's)."""
        return RunWriter(self, run_id, flush_seconds)

    def add_event(self, run_id: str, message: str, level: str = "info") -> None:
        self.connect().execute("INSERT INTO events(run_id, time, level, message) VALUES (?, ?, ?, ?)",
                               (run_id, time.time(), level, message))


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}; one of {STATUSES}")
    return status


def _run_dict(row: sqlite3.Row) -> dict:
    run = dict(row)
    run["config"] = json.loads(run["config"]) if run["config"] else {}
    run["summary"] = json.loads(run["summary"]) if run.get("summary") else {}
    run["sweep"] = json.loads(run["sweep"]) if run.get("sweep") else None
    return run


class RunWriter:
    """Batched writes for one run, used from the job's thread with that thread's connection.

    Rows are buffered and written in one transaction when `flush_seconds` have passed
    since the last flush (checked on every add), on `flush()` and on `close()`. The
    trainer's store callback also flushes at every epoch end, before long evaluations.
    It offers the same methods as `core.train.recorder.MemoryRecorder`.
    """

    def __init__(self, store: Store, run_id: str, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.store = store
        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self._rows: dict[str, list[tuple]] = {"metrics": [], "probes": [], "histograms": [], "events": [],
                                              "artifacts": [], "reports": []}
        self._run_fields: dict[str, Any] = {}
        self._last_flush = time.monotonic()
        self._held = 0

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def metric(self, step: int, epoch: int | None, split: str, key: str, value: float) -> None:
        self._rows["metrics"].append((self.run_id, int(step), epoch, split, key, _float(value)))
        self.maybe_flush()

    def metrics(self, step: int, epoch: int | None, split: str, values: dict[str, float]) -> None:
        rows = self._rows["metrics"]
        for key, value in values.items():
            rows.append((self.run_id, int(step), epoch, split, key, _float(value)))
        self.maybe_flush()

    def probe(self, step: int, layer: str, key: str, value: float) -> None:
        self._rows["probes"].append((self.run_id, int(step), layer, key, _float(value)))
        self.maybe_flush()

    def probes(self, step: int, key: str, values: dict[str, float]) -> None:
        rows = self._rows["probes"]
        for layer, value in values.items():
            rows.append((self.run_id, int(step), layer, key, _float(value)))
        self.maybe_flush()

    def histogram(self, step: int, layer: str, kind: str, edges: list[float], counts: list[float]) -> None:
        self._rows["histograms"].append((self.run_id, int(step), layer, kind, _json_value(edges), _json_value(counts)))
        self.maybe_flush()

    def event(self, message: str, level: str = "info") -> None:
        self._rows["events"].append((self.run_id, time.time(), level, message))
        self.maybe_flush()

    def artifact(self, kind: str, path: str | Path, info: dict | None = None) -> None:
        self._rows["artifacts"].append((self.run_id, kind, str(path), time.time(), _json_value(info or {})))
        self.maybe_flush()

    def report(self, step: int, epoch: int | None, split: str, key: str, value: Any) -> None:
        self._rows["reports"].append((self.run_id, int(step), epoch, split, key, _json_value(value)))
        self.maybe_flush()

    def progress(self, **fields: Any) -> None:
        """Run-row fields (epoch, step, total_steps, ...) written with the next flush."""
        self._run_fields.update(fields)
        self.maybe_flush()

    def maybe_flush(self) -> None:
        if self._held == 0 and time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    @contextmanager
    def held(self) -> Iterator[None]:
        """No time-based flush inside this block; `flush()` still writes. The trainer holds an
        epoch's metrics here until that epoch's checkpoint is on disk, so an epoch the store
        reports always has its checkpoint, whenever the process is killed."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1

    def flush(self) -> None:
        """Write everything buffered in one transaction."""
        self._last_flush = time.monotonic()
        if not self._run_fields and not any(self._rows.values()):
            return
        rows, self._rows = self._rows, {k: [] for k in self._rows}
        fields, self._run_fields = self._run_fields, {}
        db = self.store.connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO metrics(run_id, step, epoch, split, key, value) VALUES (?,?,?,?,?,?)",
                           rows["metrics"])
            db.executemany("INSERT INTO probes(run_id, step, layer, key, value) VALUES (?,?,?,?,?)", rows["probes"])
            db.executemany("INSERT INTO histograms(run_id, step, layer, kind, edges, counts) VALUES (?,?,?,?,?,?)",
                           rows["histograms"])
            db.executemany("INSERT INTO events(run_id, time, level, message) VALUES (?,?,?,?)", rows["events"])
            db.executemany("INSERT INTO artifacts(run_id, kind, path, created_at, info) VALUES (?,?,?,?,?)",
                           rows["artifacts"])
            db.executemany("INSERT INTO reports(run_id, step, epoch, split, key, value) VALUES (?,?,?,?,?,?)",
                           rows["reports"])
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                values = [_json_value(v) if k == "summary" and not isinstance(v, str) else v for k, v in fields.items()]
                db.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*values, self.run_id))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.flush()
