"""The CLI at parity with the browser: `runs cancel` reaches a run another process's engine
started (through the store), `runs queue` lists what waits and runs, `runs compare` puts final
metrics side by side with the resolved config diff."""
from __future__ import annotations

import json
import time

import pytest

from core.__main__ import main as cli
from core.jobs import JobManager
from core.store import Store
from tests.test_jobs import Gate, tiny


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGSCOPE_RUNS_DIR", str(tmp_path))
    return Store()


def wait_for(predicate, what: str, limit: float = 120.0):
    """Poll until `predicate()` is truthy; the limit only bounds a hang (each poll is cheap)."""
    deadline = time.monotonic() + limit
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.1)
    return value


def cli_json(capsys, *argv) -> tuple[int, dict | list]:
    code = cli(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_runs_cancel_reaches_a_running_and_a_queued_run_of_an_engine_through_the_store(store, capsys):
    jobs = JobManager(store, devices=["cpu"], mode="thread", check_memory=False)  # the dashboard's engine, say
    try:
        gate = Gate(step=3)
        running = jobs.submit(tiny(**{"train.epochs": 50}), name="long", callbacks=[gate])
        queued = jobs.submit(tiny(**{"train.epochs": 1}), name="waits")
        assert gate.reached.wait(120), "the first run never reached step 3"

        code, queue = cli_json(capsys, "runs", "queue", "--json")
        assert code == 0 and [r["id"] for r in queue] == [running, queued]
        assert [r["status"] for r in queue] == ["running", "queued"]

        code, out = cli_json(capsys, "runs", "cancel", queued, "--json", "--wait", "60")
        assert code == 0 and out["status"] == "cancelled" and out["error"] == "cancelled before it started"

        gate.opened.set()  # the run goes on training until the request reaches it
        code, out = cli_json(capsys, "runs", "cancel", running, "--json", "--wait", "120")
        assert code == 0 and out["status"] == "cancelled", out
        assert out["error"].startswith("cancelled at step"), out
        assert store.get_run(running)["epoch"] < 50
        code, queue = cli_json(capsys, "runs", "queue", "--json")
        assert queue == []
    finally:
        jobs.shutdown(cancel=True, timeout=30)


def test_runs_cancel_refuses_an_ended_or_unknown_run(store, capsys):
    run_id = store.create_run(tiny().to_dict(), name="done", status="completed")
    assert cli(["runs", "cancel", run_id]) == 2
    assert "has already ended (completed)" in capsys.readouterr().err
    assert cli(["runs", "cancel", "no-such-run"]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err


def _finished(store, config: dict, name: str, metrics: dict) -> str:
    run_id = store.create_run(config, name=name, status="completed")
    with store.writer(run_id) as w:
        w.metrics(10, 2, "val", {k.removeprefix("val_"): v for k, v in metrics.items() if k.startswith("val_")})
        w.metrics(10, 2, "test", {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")})
    return run_id


def test_runs_compare_puts_metrics_side_by_side_and_diffs_resolved_configs(store, capsys):
    quick = {"model": {"name": "resnet1d", "hparams": {}}, "data": {"source": "hapt"}}  # defaults left out
    spelled = {"model": {"name": "resnet1d", "hparams": {"kernel_size": 3, "num_stages": 2}},
               "data": {"source": "hapt"}}
    audio = {"model": {"name": "audio_resnet_attention", "hparams": {}}, "data": {"source": "fsdd"}}
    a = _finished(store, quick, "quick", {"val_accuracy": 0.91, "test_accuracy": 0.90})
    b = _finished(store, spelled, "spelled", {"val_accuracy": 0.93, "test_accuracy": 0.92})
    code, out = cli_json(capsys, "runs", "compare", a, b, "--json")
    assert code == 0
    rows = {m["metric"]: m for m in out["metrics"]}
    assert rows["test_accuracy"][a] == pytest.approx(0.90) and rows["test_accuracy"][b] == pytest.approx(0.92)
    settings = {r["setting"] for r in out["config_diff"]}
    assert "model.hparams.num_stages" in settings and "name" not in settings
    assert "model.hparams.kernel_size" not in settings  # 3 is resnet1d's default: not a difference
    assert out["note"] == ""
    c = _finished(store, audio, "audio", {"val_accuracy": 0.5})
    code, out = cli_json(capsys, "runs", "compare", a, c, "--json")
    assert "different data" in out["note"]
    assert cli(["runs", "compare", a]) == 2  # one run is not a comparison
    assert "two or more runs" in capsys.readouterr().err
    assert cli(["runs", "compare", a, b]) == 0  # the text table
    text = capsys.readouterr().out
    assert "test_accuracy" in text and "model.hparams.num_stages" in text
