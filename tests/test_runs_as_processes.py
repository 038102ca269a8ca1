"""Runs as child processes, and the same run under torchrun DDP: a killed run ends failed
with its exit status while the engine and another run go on, cancel reaches the child within
a step, two processes follow one process's loss curve and gradient norms, two "nodes" meet
over a c10d rendezvous on localhost, a failing rank fails the run with its message, a DDP
checkpoint resumes on one process and back, and bad launch input gets one clear line."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.__main__ import main
from core.config import RunConfig
from core.infer import load_run
from core.jobs import JobManager
from core.store import Store

# 42 training windows at batch 8: 6 steps per epoch
SMALL = {"data.options.per_class": 16, "model.hparams.base_channels": 8, "model.hparams.num_stages": 1,
         "train.batch_size": 8, "train.probes.every_n_steps": 1}
# no BatchNorm and no dropout: one process and two see exactly the same arithmetic
TRANSFORMER = {"model.name": "har_transformer", "data.options.per_class": 32, "data.window": 32, "data.stride": 16,
               "model.hparams.hidden_ch": 8, "model.hparams.dim": 16, "model.hparams.depth": 1,
               "model.hparams.heads": 2, "model.hparams.mlp_dim": 32, "model.hparams.dropout": 0.0,
               "model.hparams.emb_dropout": 0.0, "train.batch_size": 32, "train.probes.every_n_steps": 1}


@pytest.fixture
def runs(tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(folder))
    return folder


@pytest.fixture
def store(runs):
    return Store(runs / "sigscope.db")


def small(**overrides) -> RunConfig:
    return RunConfig().with_overrides({**SMALL, **overrides})


def wait_until(predicate, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"waited {timeout:.0f} s for {what}")


def child_pid(store, run_id: str) -> int:
    """The pid of the process training a run, once it has claimed the run."""
    def claimed():
        run = store.get_run(run_id)
        return run["owner_pid"] if run["status"] == "running" and run["owner_pid"] != os.getpid() else None
    return wait_until(claimed, 120, f"run {run_id} to start in its own process")


def argv(overrides: dict, *extra: str) -> list[str]:
    return ["train", *[a for k, v in overrides.items() for a in ("--set", f"{k}={json.dumps(v)}")], *extra, "--json"]


# ---- runs as processes --------------------------------------------------------------------------
def test_a_run_trains_in_its_own_process_with_a_log_and_the_machines_cores(store):
    jobs = JobManager(store, max_workers=1)
    try:
        run_id = jobs.submit(small(**{"train.epochs": 2}))
        assert jobs.wait(run_id, timeout=180) == "completed"
    finally:
        jobs.shutdown()
    run = store.get_run(run_id)
    assert run["owner_pid"] != os.getpid(), "trained by a child process, not the manager's"
    assert run["threads"] == len(os.sched_getaffinity(0)) and run["processes"] == 1, "one run alone: every core"
    log = Path(run["log_path"]).read_text()
    assert "epoch 2/2" in log and run["log_path"].startswith(run["run_dir"])
    assert [p["epoch"] for p in store.metric_series(run_id, keys=["accuracy"], split="val")] == [0, 1]


def test_a_run_killed_mid_epoch_fails_with_its_exit_status_while_the_engine_and_another_run_go_on(store, tmp_path):
    gate = tmp_path / "gate"
    os.environ["SIGSCOPE_PAUSE"] = f"8:{gate}"  # the first run waits at step 8, mid epoch 2
    jobs = JobManager(store, max_workers=2)
    try:
        doomed = jobs.submit(small(**{"train.epochs": 5}))
        wait_until(lambda: Path(str(gate) + ".reached").exists(), 120, "the run to reach step 8")
        del os.environ["SIGSCOPE_PAUSE"]
        other = jobs.submit(small(**{"train.epochs": 2, "train.seed": 1}))
        pid = child_pid(store, doomed)
        os.kill(pid, signal.SIGKILL)
        assert jobs.wait(doomed, timeout=60) == "failed"
        run = store.get_run(doomed)
        assert "killed by SIGKILL (signal 9)" in run["error"] and "out-of-memory" in run["error"]
        assert max(p["step"] for p in store.metric_series(doomed, keys=["loss"])) >= 3, "its metrics are kept"
        assert load_run(doomed, store, which="last").epoch == 1, "its last checkpoint loads"
        assert jobs.wait(other, timeout=180) == "completed", "the other run went on"
        third = jobs.submit(small(**{"train.epochs": 1}))
        assert jobs.wait(third, timeout=180) == "completed", "and the engine still takes work"
    finally:
        os.environ.pop("SIGSCOPE_PAUSE", None)
        gate.write_text("go")
        jobs.shutdown(cancel=True)


def test_cancel_reaches_the_child_within_one_step(store, tmp_path):
    gate = tmp_path / "gate"
    os.environ["SIGSCOPE_PAUSE"] = f"8:{gate}"
    jobs = JobManager(store, max_workers=1)
    try:
        run_id = jobs.submit(small(**{"train.epochs": 10}))
        wait_until(lambda: Path(str(gate) + ".reached").exists(), 120, "the run to reach step 8")
        assert jobs.cancel(run_id)
        time.sleep(0.5)  # SIGTERM lands while step 8 is still on
        gate.write_text("go")
        assert jobs.wait(run_id, timeout=60) == "cancelled"
    finally:
        os.environ.pop("SIGSCOPE_PAUSE", None)
        jobs.shutdown(cancel=True)
    run = store.get_run(run_id)
    assert run["error"] == "cancelled at step 9 (epoch 2)", run["error"]  # the step after the signal, no more
    assert max(p["step"] for p in store.metric_series(run_id, keys=["loss"])) == 9
    assert Path(run["run_dir"], "checkpoints", "last.pt").is_file()


def _cli_run(runs: Path, gate: Path, step: int) -> subprocess.Popen:
    """A run trained by another process on this machine (a CLI run, or one left by a restarted
    server), held at `step` until `gate` exists."""
    env = dict(os.environ, SIGSCOPE_RUNS_DIR=str(runs), SIGSCOPE_PAUSE=f"{step}:{gate}")
    return subprocess.Popen([sys.executable, "-m", "core", "train", *argv({**SMALL, "train.epochs": 3})[1:]],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_manager_adopts_a_live_run_and_notices_when_its_process_dies(runs, store, tmp_path):
    gate = tmp_path / "gate"
    proc = _cli_run(runs, gate, 2)
    try:
        wait_until(lambda: Path(str(gate) + ".reached").exists(), 120, "the run to reach step 2")
        run_id = store.list_runs()[0]["id"]
        jobs = JobManager(Store(store.path), max_workers=1)  # a server starting beside it
        assert run_id not in jobs.recovered and store.get_run(run_id)["status"] == "running", "adopted, not marked"
        proc.kill()
        proc.wait()
        wait_until(lambda: store.get_run(run_id)["status"] == "interrupted", 30, "the watcher to notice")
        assert str(proc.pid) in store.get_run(run_id)["error"]
        jobs.shutdown()
    finally:
        gate.write_text("go")
        if proc.poll() is None:
            proc.kill()


def test_the_dashboard_cancels_a_run_another_process_trains(runs, store, tmp_path):
    from dashboard.engine import Engine

    gate = tmp_path / "gate"
    proc = _cli_run(runs, gate, 8)
    try:
        wait_until(lambda: Path(str(gate) + ".reached").exists(), 120, "the run to reach step 8")
        run_id = store.list_runs()[0]["id"]
        engine = Engine(store=store, jobs=JobManager(store, max_workers=1))
        assert f"asked {run_id}'s process" in engine.cancel(run_id)
        time.sleep(0.5)
        gate.write_text("go")
        assert proc.wait(60) == 1, "the CLI says the run did not complete"
        run = store.get_run(run_id)
        assert run["status"] == "cancelled" and run["error"] == "cancelled at step 9 (epoch 2)"
        engine.jobs.shutdown()
    finally:
        gate.write_text("go")
        if proc.poll() is None:
            proc.kill()


# ---- DDP under torchrun ---------------------------------------------------------------------------
def curves(store, run_id: str) -> tuple[list[float], list[float]]:
    loss = [r["value"] for r in store.metric_series(run_id, keys=["loss"], split="step")]
    norms = [r["value"] for r in store.probe_series(run_id, "grad_norm_before_clip")]
    return loss, norms


def test_two_processes_follow_one_process_loss_curve_and_gradient_norms(runs, store, capsys):
    ids = {}
    for n in (1, 2):
        assert main(argv({**TRANSFORMER, "train.epochs": 2}, "--nproc", str(n))) == 0
        ids[n] = json.loads(capsys.readouterr().out)["run_id"]
    one, two = curves(store, ids[1]), curves(store, ids[2])
    assert len(one[0]) == len(two[0]) >= 6 and len(one[1]) == len(two[1]) == len(one[0])
    # same global batches (one permutation per epoch from the seed), same averaged gradients:
    # equal up to the order of floating-point sums (stated tolerance 1e-4 relative)
    assert two[0] == pytest.approx(one[0], rel=1e-4)
    assert two[1] == pytest.approx(one[1], rel=1e-4)
    run = store.get_run(ids[2])
    assert run["processes"] == 2 and run["config"]["train"]["processes"] == 2
    val_two = store.final_metrics(ids[2])["val_accuracy"]
    assert val_two == pytest.approx(store.final_metrics(ids[1])["val_accuracy"]), "scored on the whole split"


def test_a_ddp_checkpoint_resumes_on_one_process_and_back(runs, store, capsys):
    assert main(argv({**SMALL, "train.epochs": 1}, "--nproc", "2")) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    store.update_run(run_id, status="cancelled")
    assert main(["train", "--resume", run_id, "--epochs", "2", "--nproc", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs_completed"] == 2
    store.update_run(run_id, status="cancelled")
    assert main(["train", "--resume", run_id, "--epochs", "3", "--nproc", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "completed" and out["epochs_completed"] == 3
    steps = [r["step"] for r in store.metric_series(run_id, keys=["loss"], split="step")]
    assert steps == sorted(set(steps)), "each step once: the curve carries on across the resumes"


def test_a_failing_rank_fails_the_run_with_its_message(runs, store, capsys, monkeypatch):
    monkeypatch.setenv("SIGSCOPE_FAULT", "1:2")
    assert main(argv({**SMALL, "train.epochs": 3}, "--nproc", "2")) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "failed"
    assert out["message"].startswith("rank 1: RuntimeError: injected fault on rank 1 at step 2"), out["message"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_meet_at_a_rendezvous_on_localhost(runs, store):
    port = _free_port()
    env = dict(os.environ, SIGSCOPE_RUNS_DIR=str(runs))
    common = [sys.executable, "-m", "core", "train", "--epochs", "1", "--nproc", "1", "--nnodes", "2",
              "--rdzv-endpoint", f"127.0.0.1:{port}", "--set", "data.options.per_class=16", "--set", "base_channels=8",
              "--set", "num_stages=1", "--json"]
    node0 = subprocess.Popen(common + ["--node-rank", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2)
    node1 = subprocess.Popen(common + ["--node-rank", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out0, err0 = node0.communicate(timeout=300)
        out1, err1 = node1.communicate(timeout=60)
    finally:
        for proc in (node0, node1):
            if proc.poll() is None:
                proc.kill()
    assert node0.returncode == 0 and node1.returncode == 0, (err0.decode()[-2000:], err1.decode()[-2000:])
    result = json.loads(out0)
    assert result["status"] == "completed"
    run = store.get_run(result["run_id"])
    assert run["processes"] == 2 and len(store.list_runs()) == 1, "node 0 stores the run; node 1 only trains"


def _too_many() -> str:
    from core.launch import max_processes
    return str(min(64, max_processes() + 1))


@pytest.mark.parametrize("extra, needle", [
    (["--nproc", "0"], "train.processes=0 is out of range"),
    (["--nproc", _too_many()], "more than this machine sensibly holds"),
    (["--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", "127.0.0.1:9"], "cannot reach node 0"),
    (["--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint", "localhost"], "give HOST:PORT"),
    (["--nnodes", "2", "--node-rank", "5", "--rdzv-endpoint", "127.0.0.1:29500"], "node ranks 0..1"),
    (["--rdzv-endpoint", "127.0.0.1:29500"], "give --nnodes too"),
])
def test_bad_launch_input_is_one_clear_line_and_starts_nothing(runs, capsys, monkeypatch, extra, needle):
    monkeypatch.setattr("core.launch.REACH_SECONDS", 2.0)
    assert main(["train", "--epochs", "1", *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and all(line.startswith("error: ") for line in err.strip().splitlines()), err
    assert not runs.exists() or not any(p.is_dir() for p in runs.iterdir())


def test_node_0_refuses_a_rendezvous_port_in_use(runs, capsys):
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["train", "--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint", f"127.0.0.1:{port}"]) == 2
    assert f"cannot listen on port {port}" in capsys.readouterr().err


def test_a_node_left_alone_at_the_rendezvous_fails_in_time_and_leaves_no_process(runs, store, capsys):
    port = _free_port()
    code = main(["train", "--epochs", "1", "--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint",
                 f"127.0.0.1:{port}", "--rdzv-timeout", "5", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["status"] == "failed"
    assert "the other machines did not join within --rdzv-timeout" in out["message"], out["message"]
    assert processes_of(out["run_id"]) == [], "no process of the run is left behind"


def processes_of(run_id: str) -> list[int]:
    """Live processes whose command line names the run."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and run_id.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found
