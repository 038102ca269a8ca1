"""A real PostgreSQL server (Debian's `postgresql`, started here on a local socket) as the
study storage of two sweep worker processes, as two machines would share one study."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from core import sweep
from core.config import RunConfig
from core.store import Store

ROOT = Path(__file__).resolve().parents[1]
TINY = {"data.options.per_class": 16, "model.hparams.base_channels": 8, "model.hparams.num_stages": 1,
        "train.batch_size": 16}


def _bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("needs Debian's postgresql server (`apt-get install postgresql`; `make test` installs it as root)")
    return Path(found[-1]).parent


def _as_postgres(cmd: list[str]) -> list[str]:
    """The server refuses to run as root: run its tools as the `postgres` user then."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    return ["runuser", "-u", "postgres", "--", *cmd]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    bin_dir = _bin()
    top = Path(tempfile.mkdtemp(prefix="sigscope-pg-"))
    top.chmod(0o755)
    data, sock = top / "data", top / "sock"
    data.mkdir()
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
    port = _free_port()
    run = lambda cmd: subprocess.run(_as_postgres(cmd), check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "sigscope", "--no-sync"])
        run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(sock / "server.log"), "-w", "-t", "60", "-o",
             f"-k {sock} -c listen_addresses='' -p {port} -c fsync=off", "start"])
        run([str(bin_dir / "createdb"), "-h", str(sock), "-p", str(port), "-U", "sigscope", "sweeps"])
    except subprocess.CalledProcessError as e:
        shutil.rmtree(top, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {e.stderr or e.stdout}")
    yield f"postgresql://sigscope@/sweeps?host={sock}&port={port}"
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                   capture_output=True)
    shutil.rmtree(top, ignore_errors=True)


def test_two_worker_processes_share_one_study_on_postgresql(postgres_url, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(runs))
    spec = sweep.SweepSpec(RunConfig().with_overrides(TINY).to_dict(),
                           sweep.parse_space({"optim.lr": {"low": 1e-3, "high": 1e-2, "log": True}}),
                           sweep.parse_settings({"trials": 4, "epochs": 1, "pruner": "none"}))
    name = sweep.create_study(spec, "on-postgres", postgres_url)
    env = dict(os.environ, SIGSCOPE_RUNS_DIR=str(runs))
    procs = [subprocess.Popen([sys.executable, "-m", "core", "sweep", "worker", "--study", name,
                               "--storage", postgres_url], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-2000:]
    rows = sweep.trials(name, postgres_url)
    assert sorted(r["number"] for r in rows) == [0, 1, 2, 3] and {r["state"] for r in rows} == {"complete"}
    assert len({r["run_id"] for r in rows}) == 4
    study, _ = sweep.load(name, postgres_url)
    assert {t.user_attrs["worker"]["pid"] for t in study.trials} == {p.pid for p in procs}
    assert len(Store(runs / "sigscope.db").study_runs(name)) == 4
    # the study's whole definition lives in the database: a third machine needs only the URL
    assert sweep.load(name, postgres_url)[1].settings.trials == 4
