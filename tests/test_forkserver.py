"""Run processes forked from the job manager's fork server (core.forkserver): a run is a child
of one warm server, in its own session, named, with the run's environment and exit status; a
run whose fixed environment differs gets a new server; the server exits once idle or once its
client has gone and its children have ended, and a later run starts a new one; with the server
off, for an argv that is not `-m core`, or where a server cannot start, the run process is
exec'd as before."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core import forkserver, launch
from core.jobs import JobManager
from core.store import process_alive
from tests.test_runs_as_processes import child_pid, runs, small, store, wait_until  # noqa: F401 - fixtures


@pytest.fixture
def fresh_server():
    """No server left from an earlier test of this process; this test's goes afterwards."""
    forkserver.shutdown()
    yield
    forkserver.shutdown()
    forkserver._broken.clear()


def stat(pid: int) -> tuple[str, int, int]:
    """(name, parent pid, session id) of a live process."""
    text = Path(f"/proc/{pid}/stat").read_text()
    name = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return name, int(fields[1]), int(fields[3])


def server_pid() -> int | None:
    server = forkserver._server[0]
    return server.proc.pid if server is not None else None


def gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped counts), as the store judges a run's owner."""
    return not process_alive(pid, None, None)


def test_runs_are_forked_from_one_warm_server_each_in_a_session_of_its_own(store, tmp_path, monkeypatch,
                                                                          fresh_server):
    gate = tmp_path / "gate"
    monkeypatch.setenv("SIGSCOPE_PAUSE", f"1:{gate}")  # a SIGSCOPE_* switch set after the server may have started
    jobs = JobManager(store, max_workers=1)
    try:
        parents = []
        for _ in range(2):
            gate.unlink(missing_ok=True)
            run_id = jobs.submit(small(**{"train.epochs": 1}))
            pid = child_pid(store, run_id)
            wait_until(lambda: Path(str(gate) + ".reached").exists(), 120, "the run to reach step 1")
            name, parent, session = stat(pid)
            assert name == "sigscope-run" and session == pid, "named, and the leader of its own session"
            assert parent == server_pid(), "a child of the fork server, not an exec'd process"
            parents.append(parent)
            Path(str(gate) + ".reached").unlink()
            gate.write_text("go")
            assert jobs.wait(run_id, timeout=180) == "completed"
            assert "epoch 1/1" in Path(store.get_run(run_id)["log_path"]).read_text(), "its output is in the run's log"
        assert parents[0] == parents[1], "the second run comes from the same server"
    finally:
        gate.write_text("go")
        jobs.shutdown(cancel=True)


def test_exit_statuses_come_back_as_popens_would(tmp_path, fresh_server):
    env = launch.child_env(1)
    log = tmp_path / "out.log"
    usage = forkserver.start([sys.executable, "-m", "core", "no-such-command"], env, log)
    assert usage is not None and usage.wait(timeout=60) == 2, "argparse's exit status"
    assert "invalid choice" in log.read_text()
    assert forkserver.start([sys.executable, "-m", "core", "models"], env, log).wait(timeout=60) == 0

    gate = tmp_path / "gate"
    held = forkserver.start([sys.executable, "-m", "core", "train", "--model", "resnet1d", "--dataset", "synthetic_imu",
                             "--epochs", "1", "--set", "data.options.per_class=16", "--set", "train.batch_size=8"],
                            {**env, "SIGSCOPE_PAUSE": f"1:{gate}", "SIGSCOPE_RUNS_DIR": str(tmp_path / "runs")}, log)
    try:
        wait_until(lambda: Path(str(gate) + ".reached").exists(), 120, "the run to reach step 1")
        assert held.poll() is None
        os.kill(held.pid, signal.SIGKILL)
        assert held.wait(timeout=60) == -signal.SIGKILL, "killed: minus the signal, as subprocess.Popen says it"
        assert held.poll() == -signal.SIGKILL
    finally:
        gate.write_text("go")


def test_a_different_allocator_gets_its_own_server_and_an_idle_server_goes(tmp_path, monkeypatch, fresh_server):
    log = tmp_path / "out.log"
    command = [sys.executable, "-m", "core", "models"]
    first = forkserver.start(command, launch.child_env(1), log)
    assert first.wait(timeout=60) == 0
    before = server_pid()
    monkeypatch.setenv("SIGSCOPE_MALLOC", "glibc")  # no preloaded jemalloc: fixed at a server's start
    assert forkserver.start(command, launch.child_env(1), log).wait(timeout=60) == 0
    assert server_pid() != before, "a new server for the other environment"
    wait_until(lambda: gone(before), 60, "the old server to exit once its client let it go")

    monkeypatch.setattr(forkserver, "idle_seconds", 0.5)
    forkserver.shutdown()
    assert forkserver.start(command, launch.child_env(1), log).wait(timeout=60) == 0
    idle = server_pid()
    wait_until(lambda: gone(idle), 60, "an idle server to exit")
    assert forkserver.start(command, launch.child_env(1), log).wait(timeout=60) == 0, "a new one starts on demand"
    assert server_pid() != idle


def test_the_server_outlives_its_client_only_while_its_children_run(tmp_path):
    """The client process exits while its run goes on: the run finishes, then the server exits."""
    gate, log = tmp_path / "gate", tmp_path / "out.log"
    script = textwrap.dedent(f"""
        import sys
        from core import forkserver, launch
        env = {{**launch.child_env(1), "SIGSCOPE_PAUSE": "1:{gate}", "SIGSCOPE_RUNS_DIR": "{tmp_path / 'runs'}"}}
        proc = forkserver.start([sys.executable, "-m", "core", "train", "--model", "resnet1d", "--dataset",
                                 "synthetic_imu", "--epochs", "1", "--set", "data.options.per_class=16"], env, "{log}")
        print(proc.pid, forkserver._server[0].proc.pid)
    """)
    out = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, timeout=180, check=True)
    run, server = (int(x) for x in out.stdout.split())
    try:
        wait_until(lambda: Path(str(gate) + ".reached").exists(), 120, "the run to reach step 1")
        assert not gone(run) and not gone(server), "the run goes on after its client has exited"
    finally:
        gate.write_text("go")
    wait_until(lambda: gone(run), 120, "the run to finish")
    wait_until(lambda: gone(server), 30, "the server to exit after its last child")


def test_off_or_not_a_core_command_means_exec(store, monkeypatch, fresh_server):
    assert forkserver.start([sys.executable, "-m", "torch.distributed.run", "-m", "core"], launch.child_env(1),
                            "/dev/null") is None
    monkeypatch.setenv(forkserver.ENV, "0")
    jobs = JobManager(store, max_workers=1)
    try:
        run_id = jobs.submit(small(**{"train.epochs": 1}))
        pid = child_pid(store, run_id)
        try:
            assert run_id.encode() in Path(f"/proc/{pid}/cmdline").read_bytes(), "an exec'd `python -m core train`"
        except FileNotFoundError:
            pass  # it finished first
        assert jobs.wait(run_id, timeout=180) == "completed"
        assert server_pid() is None
    finally:
        jobs.shutdown(cancel=True)


def test_a_server_that_cannot_start_is_tried_once_and_runs_are_execd(store, monkeypatch, fresh_server):
    tries = []

    def cannot_start(*args):
        tries.append(args)
        raise OSError("the fork server did not start")

    monkeypatch.setattr(forkserver, "_Server", cannot_start)
    jobs = JobManager(store, max_workers=1)
    try:
        for _ in range(2):
            assert jobs.wait(jobs.submit(small(**{"train.epochs": 1})), timeout=180) == "completed"
    finally:
        jobs.shutdown(cancel=True)
    assert len(tries) == 1, "not tried again for every run"
