"""Dead runs that look alive, and what the server exposes (issue 18).

A CLI run SIGKILLed while a dashboard engine is up shows `interrupted` on the engine within
10 s, `runs show` agrees, and the epoch the store last reported has its checkpoint on disk;
`runs list` with no engine at all marks a killed run too, and leaves alone a run another
machine owns. The repo's .streamlit/config.toml binds Streamlit to 127.0.0.1 with the
product's own upload limit and no usage statistics. A server path outside the data roots is
refused, whatever it is (a file, a `..` walk, a symlink), with a message that names the roots
and the variable and never any of the file; inside a root it reads."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from core import data
from core.__main__ import main
from core.config import DataConfig
from core.data.paths import BUNDLED_DIR, ROOTS_ENV
from core.errors import DataError
from core.infer import load_run
from core.limits import Limits
from core.store import process_identity
from tests.conftest import ROOT
from tests.test_runs_as_processes import runs, store  # noqa: F401 (fixtures: a runs folder of the test's own)
from tests.test_runs_as_processes import SMALL, argv, wait_until

SECRET = "root:x:0:0:root:/root:/bin/bash"  # what /etc/passwd starts with: no error may quote it




def cli_json(capsys, *args: str):
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ---- dead runs ------------------------------------------------------------------------------------
def test_a_killed_cli_run_shows_interrupted_on_a_running_engine_and_its_last_reported_epoch_loads(
        runs, store, capsys):
    from dashboard.engine import engine, shutdown_engines

    eng = engine()  # the dashboard's engine, up before the run starts
    proc = subprocess.Popen([sys.executable, "-m", "core", "train", *argv({**SMALL, "train.epochs": 500})[1:]],
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def first_epoch():  # the moment the store announces an epoch: its val metrics appear
            rows = store.list_runs()
            if rows and store.metric_series(rows[0]["id"], keys=["accuracy"], split="val"):
                return rows[0]["id"]
        run_id = wait_until(first_epoch, 120, "the CLI run to report its first epoch", every=0.05)
        proc.kill()  # SIGKILL, and not waited for yet: a zombie still answers kill(pid, 0)
        reported = max(p["epoch"] for p in store.metric_series(run_id, keys=["accuracy"], split="val")) + 1

        wait_until(lambda: eng.store.get_run(run_id)["status"] == "interrupted", 10,
                   "the engine to mark the killed run interrupted")
        assert f"pid {proc.pid}" in eng.store.get_run(run_id)["error"]
        assert run_id not in [r["id"] for r in eng.status()["running"]], "the dashboard no longer lists it as running"

        shown = cli_json(capsys, "runs", "show", run_id)
        assert shown["status"] == "interrupted" and "last checkpoint are kept" in shown["error"]
        reported = max(reported, shown["epoch"],
                       max(p["epoch"] for p in store.metric_series(run_id, keys=["accuracy"], split="val")) + 1)

        predictor = load_run(run_id, store, which="last")
        assert predictor.epoch >= reported, f"the store reported {reported} epoch(s), the checkpoint has {predictor.epoch}"
        x = np.random.default_rng(0).normal(size=(2, *predictor.input_shape)).astype(np.float32)
        assert np.isfinite(predictor.logits(x)).all()
    finally:
        proc.kill()
        proc.wait()
        shutdown_engines()


def _until_exited(pid: int, limit: float = 60.0) -> None:
    """SIGKILL is delivered when the kernel next schedules the process, which on busy cores is
    not at once: wait until it is a zombie (exited, not yet collected by its parent), or gone."""
    from core.store import _process_stat

    deadline = time.monotonic() + limit
    while (stat := _process_stat(pid)) is not None and stat[0] not in ("Z", "X"):
        assert time.monotonic() < deadline, f"pid {pid} still {stat[0]} {limit:.0f} s after SIGKILL"
        time.sleep(0.01)


def test_runs_list_with_no_engine_marks_a_killed_run_and_leaves_other_machines_runs(store, capsys):
    config = {"model": {"name": "resnet1d"}, "data": {"source": "synthetic_imu"}}
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        killed = store.create_run(config, name="killed", status="running", owner_pid=owner.pid)
        assert process_identity(owner.pid)[2], "its start time is recorded, as a training process records it"
        elsewhere = store.create_run(config, name="on another machine", status="running")
        store.update_run(elsewhere, owner_host=socket.gethostname() + "-node1", owner_pid=owner.pid)
        alive = store.create_run(config, name="alive", status="running")  # owned by this live process
        assert cli_json(capsys, "runs", "list")[0]["status"] == "running"

        owner.kill()  # not waited for: still a zombie when `runs list` looks
        _until_exited(owner.pid)
        statuses = {r["name"]: r["status"] for r in cli_json(capsys, "runs", "list")}
        assert statuses == {"killed": "interrupted", "on another machine": "running", "alive": "running"}
        assert f"pid {owner.pid}" in store.get_run(killed)["error"], "the store itself was updated"
        assert store.get_run(alive)["status"] == store.get_run(elsewhere)["status"] == "running"
    finally:
        owner.kill()
        owner.wait()


# ---- exposure -------------------------------------------------------------------------------------
def test_streamlit_config_binds_to_localhost_with_the_products_upload_limit_no_statistics_and_no_gc_per_rerun():
    with open(ROOT / ".streamlit" / "config.toml", "rb") as f:
        toml = tomllib.load(f)
    assert toml["server"]["address"] == "127.0.0.1"
    assert toml["server"]["maxUploadSize"] == Limits().max_upload_mib == 50, \
        "Streamlit's upload limit (MiB) is the product's max_upload_mib"
    assert toml["browser"]["gatherUsageStats"] is False
    # a full collection after every script run costs 0.24 s of CPU with torch loaded, and the
    # Monitor reruns every second (bench/watch_cost.py)
    assert toml["runner"]["postScriptGC"] is False
    # and Streamlit itself reads it from the folder `streamlit run` starts in
    read = subprocess.run([sys.executable, "-c", "from streamlit import config; print(config.get_option("
                           "'server.address'), config.get_option('server.maxUploadSize'), "
                           "config.get_option('browser.gatherUsageStats'), config.get_option('runner.postScriptGC'))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert read.stdout.split() == ["127.0.0.1", "50", "False", "False"], read.stderr[-2000:]


def imu_csv(path: Path, first_line: str = "subject,time,acc_x,acc_y,acc_z,label") -> Path:
    rng = np.random.default_rng(0)
    rows = [f"1,{i * 0.02:.2f},{rng.normal():.4f},{rng.normal():.4f},{rng.normal():.4f},{'walk' if i < 60 else 'sit'}"
            for i in range(120)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([first_line, *rows]) + "\n")
    return path


def load(path):
    return data.load(DataConfig(source="imu_csv", path=str(path), window=10, stride=5, split="random"))


def refusal(path) -> str:
    with pytest.raises(DataError) as err:
        load(path)
    message = str(err.value)
    assert "outside the folders data is read from" in message and ROOTS_ENV in message
    assert str(BUNDLED_DIR) in message, "the allowed roots are named"
    assert "root:x" not in message and "/bin/bash" not in message and "\n" not in message
    return message


def test_a_server_path_outside_the_data_roots_is_refused_without_a_word_of_the_file(tmp_path, runs, monkeypatch,
                                                                                    capsys):
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    secret = imu_csv(tmp_path / "elsewhere" / "passwd.csv", SECRET)
    refusal(secret)
    refusal("/etc/passwd")
    refusal(BUNDLED_DIR / ".." / ".." / secret.relative_to("/"))  # walking out of data/ with ..
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "innocent.csv").symlink_to(secret)  # a link inside an allowed root to a file outside
    refusal(runs / "innocent.csv")

    capsys.readouterr()
    assert main(["data", "inspect", "imu_csv", "--path", "/etc/passwd"]) == 2, "the CLI: one error line, exit 2"
    err = capsys.readouterr().err
    assert err.startswith("error: imu_csv: path /etc/passwd is outside") and "root:x" not in err


def test_a_path_under_an_allowed_root_reads(tmp_path, runs, monkeypatch):
    mine = tmp_path / "my data"
    monkeypatch.setenv(ROOTS_ENV, os.pathsep.join([str(tmp_path / "other"), str(mine)]))
    bundle = load(imu_csv(mine / "walk.csv"))
    assert bundle.class_names == ["sit", "walk"] and np.isfinite(bundle.train.x).all()
    refusal(imu_csv(tmp_path / "next to it" / "walk.csv"))  # a root is that folder, not its parent
