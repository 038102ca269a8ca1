"""Deploy page (AppTest): an empty store says so and offers the demo models; a run's last
export (runs/<id>/deploy/report.json) is shown on picking it: every variant in one table, the
size and latency bars, parity, the on-device estimates and a download button per file and for
the bundle; a choice the engine refuses is one error line and leaves the last export as it
was; an export started from the page runs in the background and its report replaces the view."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from core.demo import install_bundled
from core.deploy.export import export_run
from core.deploy.measure import MeasureSettings
from core.store import Store
from dashboard import deploy_parts
from dashboard.engine import shutdown_engines
from tests.test_pages import open_page, runs_dir  # noqa: F401 - runs_dir is a fixture

PAGE = "pages/deploy.py"
CHEAP = MeasureSettings(repeats=2, warmup=1, memory=False)
JOB_TIMEOUT = 600  # an export of demo-imu (onnx + dynamic int8) took 12 s on an idle 2-core machine


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A store holding demo-imu, exported as ONNX + dynamic int8 with the bundle."""
    runs = tmp_path_factory.mktemp("deploy-page") / "runs"
    old = os.environ.get("SIGSCOPE_RUNS_DIR")
    os.environ["SIGSCOPE_RUNS_DIR"] = str(runs)
    store = Store(runs / "sigscope.db")
    run_id = install_bundled(store, "demo-imu")
    bundle = Path(store.get_run(run_id)["run_dir"]) / deploy_parts.BUNDLE
    report = export_run(run_id, formats=["onnx"], quantize=["dynamic"], bundle=bundle, settings=CHEAP, store=store)
    yield {"runs": runs, "run_id": run_id, "report": report.to_dict()}
    shutdown_engines()
    if old is None:
        os.environ.pop("SIGSCOPE_RUNS_DIR", None)
    else:
        os.environ["SIGSCOPE_RUNS_DIR"] = old


def _labels(at, kind: str) -> list[str]:
    return [e.proto.label for e in at.get(kind)]


def _text(at) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "error", "warning")
                     for e in getattr(at, kind))


def _frame(at, column: str):
    """The table holding `column` (tables without selection carry no key under AppTest)."""
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(frames) == 1, [list(d.value.columns) for d in at.dataframe]
    return frames[0]


def _wait_for_export(at, run_id: str):
    """The page's export job, after it has ended (waited on its done event, then the page rerun)."""
    job = deploy_parts.export_jobs(Store()).latest(run_id)
    assert job is not None, "the Export button started no job"
    assert job.done.wait(JOB_TIMEOUT), f"the export was still at {job.fraction:.0%} ({job.text}) after {JOB_TIMEOUT} s"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return job


def test_an_empty_store_says_so_and_offers_the_demo_models(runs_dir):  # noqa: F811
    at = open_page(PAGE)
    assert "No finished run with a checkpoint yet" in at.info[0].value
    assert not at.selectbox
    at.button(key="deploy.demo").click().run()
    assert not at.exception, [e.message for e in at.exception]
    names = at.selectbox(key="deploy.run").options  # as the picker labels them
    assert any(n.startswith("demo-imu") for n in names) and any(n.startswith("demo-audio") for n in names)
    assert "has not been exported yet" in _text(at)

    run = Store().get_run(at.selectbox(key="deploy.run").value)
    (Path(run["run_dir"]) / "deploy").mkdir()
    (Path(run["run_dir"]) / "deploy" / "report.json").write_text("{not json")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.error) == 1 and "report.json cannot be read" in at.error[0].value


def test_picking_an_exported_run_shows_its_last_export(exported):
    at = open_page(PAGE)
    assert at.selectbox(key="deploy.run").value == exported["run_id"]
    table = _frame(at, "b32 (ms)")
    assert list(table["variant"]) == [v["label"] for v in exported["report"]["variants"]] == ["fp32 ONNX",
                                                                                              "dynamic int8"]
    assert list(table.columns) == ["variant", "size (KiB)", "b1 (ms)", "b32 (ms)", "peak memory (MiB)", "accuracy",
                                   "macro-F1", "agreement", "int8 operators"]
    assert table["accuracy"].iloc[0] == pytest.approx(exported["report"]["variants"][0]["accuracy"])
    assert table["size (KiB)"].iloc[1] < table["size (KiB)"].iloc[0]
    assert "MatMulInteger" in table["int8 operators"].iloc[1]
    assert len(at.get("plotly_chart")) == 2  # size and latency bars

    parity = _frame(at, "max |logit diff|")
    assert list(parity["artifact"]) == ["onnx"] and list(parity["passed"]) == ["yes"]
    footprint = _frame(at, "flash (KiB)")
    assert list(footprint["variant"]) == ["fp32 ONNX", "dynamic int8"]
    assert list(footprint["cortex-m7-mcu"]) == ["fits", "fits"]  # the one target that states memory limits
    latency = _frame(at, "where")
    assert list(latency["where"]) == ["phone-cpu-core", "raspberry-pi-4-core", "cortex-m7-mcu",
                                      "this machine, estimated", "this machine, measured"]
    assert latency["dynamic int8"].iloc[-1] == pytest.approx(exported["report"]["variants"][1]["latency_ms"]["1"])
    calibration = at.number_input(key=f"deploy.calibration.{exported['run_id']}")
    assert calibration.disabled and calibration.max == 818  # only static / qat calibrate; bounded by the split

    text = _text(at)
    assert "Made " in text and "ago" in text
    assert "Conv + BatchNorm folding" in text and "Time axis" in text
    downloads = _labels(at, "download_button")
    for name in ("model.onnx", "model.int8-dynamic.onnx", "report.json", "bundle.zip"):
        assert any(label.startswith(name) for label in downloads), (name, downloads)


def test_a_choice_the_engine_refuses_is_one_error_line_and_keeps_the_last_export(exported):
    at = open_page(PAGE)
    at.multiselect(key="deploy.formats").set_value(["torch"])
    at.multiselect(key="deploy.quantize").set_value(["dynamic"])
    at.button(key="deploy.export").click().run()
    job = _wait_for_export(at, exported["run_id"])
    assert job.state == "failed"
    assert len(at.error) == 1, [e.value for e in at.error]
    line = at.error[0].value
    assert line.startswith("Could not export:") and "onnx" in line and "\n" not in line
    # the last export is still there and still shown
    assert list(_frame(at, "b32 (ms)")["variant"]) == ["fp32 ONNX", "dynamic int8"]


def test_an_export_started_on_the_page_runs_in_the_background(runs_dir):  # noqa: F811
    store = Store()
    run_id = install_bundled(store, "demo-imu")
    at = open_page(PAGE)
    assert "has not been exported yet" in _text(at)
    at.multiselect(key="deploy.formats").set_value(["onnx"])
    at.multiselect(key="deploy.quantize").set_value(["dynamic"])
    at.number_input(key="deploy.repeats").set_value(2)
    at.toggle(key="deploy.memory").set_value(False)
    at.button(key="deploy.export").click().run()
    assert not at.exception, [e.message for e in at.exception]
    job = deploy_parts.export_jobs(store).latest(run_id)
    if not job.done.is_set():  # the page returned at once and shows the engine's progress
        assert at.get("progress"), "no progress bar while the export runs"
        assert at.button(key="deploy.export").disabled
    job = _wait_for_export(at, run_id)
    assert job.state == "done", job.error
    assert not at.error, [e.value for e in at.error]
    assert list(_frame(at, "b32 (ms)")["variant"]) == ["fp32 ONNX", "dynamic int8"]
    assert any(label.startswith("bundle.zip") for label in _labels(at, "download_button"))
    bundle = Path(store.get_run(run_id)["run_dir"]) / deploy_parts.BUNDLE
    with zipfile.ZipFile(bundle) as z:
        assert {"model.onnx", "predict.py", "pipeline.json"} <= set(z.namelist())
