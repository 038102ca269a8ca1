"""Deploy in the browser: a person opens Deploy, picks the demo IMU model, exports it as ONNX
with a dynamic int8 variant, watches the progress, reads the variant table and downloads the
standalone bundle."""
from __future__ import annotations

import zipfile

import pytest

from tests.e2e.conftest import demo_models, screenshot, wait_for_app

pytestmark = pytest.mark.e2e
EXPORT_TIMEOUT_MS = 600_000  # demo-imu, onnx + dynamic int8 + bundle: 12-40 s on a 2-core machine (idle to busy)


def test_export_the_demo_imu_model_and_download_its_bundle(fresh_server, page, test_output, tmp_path):
    demo_models(fresh_server, "demo-audio", "demo-imu")
    page.goto(fresh_server["url"] + "/deploy")
    wait_for_app(page)
    page.get_by_text("has not been exported yet").first.wait_for()

    page.locator("[data-testid='stSelectbox']").filter(has_text="Run").first.click()
    page.get_by_role("option", name="demo-imu").first.click()
    wait_for_app(page)
    page.get_by_text("har_transformer on hapt").first.wait_for()

    formats = page.locator("[data-testid='stMultiSelect']").filter(has_text="Formats").first
    formats.locator("input").click()
    page.keyboard.press("Backspace")  # drops the last chip, torch: ONNX (and its int8 variant) only
    page.keyboard.press("Escape")
    wait_for_app(page)
    chips = [t.inner_text() for t in formats.locator("[data-tag]").all()] or formats.inner_text()
    assert "torch" not in str(chips) and "onnx" in str(chips), chips
    quantize = page.locator("[data-testid='stMultiSelect']").filter(has_text="int8 variants").first
    assert "dynamic" in quantize.inner_text()

    page.get_by_role("button", name="Export").click()
    page.locator("[data-testid='stProgress']").first.wait_for()
    screenshot(page, test_output / "deploy-progress.png")
    page.get_by_text("Last export").first.wait_for(timeout=EXPORT_TIMEOUT_MS)
    wait_for_app(page, timeout=120)
    table = page.locator("[data-testid='stDataFrame']").first
    table.wait_for()
    assert page.get_by_text("Could not export").count() == 0
    screenshot(page, test_output / "deploy-table.png")

    bundle = page.get_by_role("button", name="bundle.zip")
    bundle.scroll_into_view_if_needed()
    with page.expect_download(timeout=60_000) as download:
        bundle.click()
    path = tmp_path / "bundle.zip"
    download.value.save_as(path)
    assert download.value.suggested_filename == "demo-imu-bundle.zip"
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
    assert {"model.onnx", "predict.py", "pipeline.json", "classes.json"} <= names, names

    # the export is kept: a reload (a new session) shows it at once for the same run
    page.reload()
    wait_for_app(page)
    page.locator("[data-testid='stSelectbox']").filter(has_text="Run").first.click()
    page.get_by_role("option", name="demo-imu").first.click()
    wait_for_app(page)
    page.get_by_text("Last export").first.wait_for()
    screenshot(page, test_output / "deploy-after-reload.png")
