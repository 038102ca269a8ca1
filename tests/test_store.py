"""The run store: schema, batched writer, readers that do not block, recovery, deletion."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from core.store import SCHEMA_VERSION, Store


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "runs" / "sigscope.db")


def test_schema_is_versioned_and_reopening_does_not_migrate_twice(store):
    run_id = store.create_run({"name": "a"}, name="first")
    again = Store(store.path)
    assert again.schema_version() == SCHEMA_VERSION
    assert again.get_run(run_id)["name"] == "first"
    rows = again.connect().execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
    assert rows == SCHEMA_VERSION
    assert again.connect().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_writer_batches_and_flushes_within_half_a_second(store):
    run_id = store.create_run({})
    writer = store.writer(run_id)
    writer.metric(1, 0, "step", "loss", 2.0)
    assert store.metric_series(run_id) == []  # buffered, not yet written
    time.sleep(0.55)
    writer.metric(2, 0, "step", "loss", 1.5)  # the next add sees the 0.5 s have passed
    assert [p["value"] for p in store.metric_series(run_id, keys=["loss"])] == [2.0, 1.5]
    writer.probe(2, "conv", "grad_norm", float("nan"))
    writer.histogram(2, "conv", "grad", [0.0, 0.5, 1.0], [3, 4])
    writer.report(2, 0, "val", "confusion_matrix", [[1, 0], [0, 1]])
    writer.progress(epoch=1, step=2)
    writer.close()
    assert store.probe_series(run_id, "grad_norm") == [{"step": 2, "layer": "conv", "key": "grad_norm", "value": None}]
    assert store.histograms(run_id, kind="grad")[0]["counts"] == [3, 4]
    assert store.reports(run_id, "confusion_matrix")[0]["value"] == [[1, 0], [0, 1]]
    assert store.get_run(run_id)["step"] == 2
    assert store.metric_series(run_id, since_step=1)[0]["step"] == 2


def test_readers_in_other_threads_do_not_wait_for_an_open_write(store):
    run_id = store.create_run({})
    store.writer(run_id).metrics(1, 0, "val", {"accuracy": 0.5})  # buffered only
    db = store.connect()
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO metrics(run_id, step, epoch, split, key, value) VALUES (?, 5, 0, 'val', 'loss', 1.0)",
               (run_id,))
    seen, took = [], []

    def read():
        start = time.monotonic()
        seen.append(Store(store.path).metric_series(run_id))
        took.append(time.monotonic() - start)

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(5)
    db.execute("COMMIT")
    assert took and took[0] < 1.0
    assert seen[0] == []  # the uncommitted row is invisible, and reading did not block


def test_runs_of_dead_processes_become_interrupted_and_live_ones_stay(store):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = store.create_run({}, status="running", owner_pid=dead.pid)
    queued_gone = store.create_run({}, status="queued", owner_pid=dead.pid)
    mine = store.create_run({}, status="running")
    elsewhere = store.create_run({}, status="running", owner_pid=dead.pid)
    store.update_run(elsewhere, owner_host=socket.gethostname() + "-other-machine")
    with store.writer(gone) as writer:
        writer.metrics(3, 0, "val", {"accuracy": 0.7})

    changed = Store(store.path).mark_interrupted()

    assert sorted(changed) == sorted([gone, queued_gone])
    assert store.get_run(gone)["status"] == "interrupted"
    assert "ended while it was running" in store.get_run(gone)["error"]
    assert store.get_run(mine)["status"] == "running"
    assert store.get_run(elsewhere)["status"] == "running"
    assert store.final_metrics(gone) == {"val_accuracy": 0.7}


def test_delete_run_removes_rows_and_folder_but_refuses_a_live_running_run(store):
    run_id = store.create_run({})
    folder = store.get_run(run_id)["run_dir"]
    with store.writer(run_id) as w:
        w.metric(1, 0, "step", "loss", 1.0)
        w.event("hello")
    assert os.path.isdir(folder)
    assert store.delete_run(run_id)
    assert store.get_run(run_id) is None and store.metric_series(run_id) == [] and store.events(run_id) == []
    assert not os.path.exists(folder)
    running = store.create_run({}, status="running")
    with pytest.raises(RuntimeError, match="cancel it"):
        store.delete_run(running)


def test_unknown_status_is_refused(store):
    run_id = store.create_run({})
    with pytest.raises(ValueError, match="unknown run status"):
        store.update_run(run_id, status="exploded")
