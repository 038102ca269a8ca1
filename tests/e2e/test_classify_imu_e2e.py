"""A person classifies a stretch of one HAPT subject's IMU CSV with the demo IMU model and reads
each channel in its own panel with the explanation beside them; a second upload replaces the
first unless "Add to the batch" is on."""
from __future__ import annotations

import gzip

import pytest

from tests.e2e.conftest import ROOT, demo_models, screenshot, wait_for_app

pytestmark = pytest.mark.e2e
HAPT = ROOT / "data" / "hapt" / "hapt_subjects01-04.csv.gz"


@pytest.fixture(scope="module")
def demo_imu(server):
    return demo_models(server, "demo-imu")


def subject_csv(folder, subject: int, rows: int = 1500):
    """The first `rows` samples of one subject's first session, as a user would export them."""
    with gzip.open(HAPT, "rt") as f:
        header = next(f)
        lines = [line for line in f if line.startswith(f"{subject},0,")][:rows]
    path = folder / f"subject{subject}.csv"
    path.write_text(header + "".join(lines))
    return path


def open_on_demo_imu(server, page) -> None:
    page.goto(server["url"] + "/classify")
    wait_for_app(page)
    page.locator("[data-testid='stSelectbox']").first.click()
    page.get_by_role("option", name="demo-imu").first.click()
    wait_for_app(page)
    page.get_by_text("IMU CSV with columns").first.wait_for()


def upload(page, *paths) -> None:
    page.locator("[data-testid='stFileUploader'] input[type='file']").first.set_input_files([str(p) for p in paths])


def test_each_imu_channel_has_its_own_panel_beside_the_explanation(server, page, test_output, demo_imu, tmp_path):
    open_on_demo_imu(server, page)
    upload(page, subject_csv(tmp_path, 2))
    page.locator("h3", has_text="subject2.csv").wait_for(timeout=60_000)
    wait_for_app(page)
    chart = page.locator(".js-plotly-plot").first
    labels = chart.locator(".annotation-text").evaluate_all("els => els.map(e => e.textContent)")  # SVG text
    for channel in ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"):
        assert channel in labels, labels
    assert any("rollout" in t or "Grad-CAM" in t or "pooling" in t for t in labels), labels  # the explanation's panel
    assert chart.locator(".legendtext").count() <= 6  # the legend holds the predicted classes only
    screenshot(page, test_output / "classify_imu_panels.png")


def test_a_second_upload_replaces_the_batch_unless_add_is_on(server, page, test_output, demo_imu, tmp_path):
    first, second, third = (subject_csv(tmp_path, s) for s in (1, 2, 3))
    open_on_demo_imu(server, page)
    upload(page, first, second)
    page.get_by_text("Batch: 2 files").wait_for(timeout=60_000)
    wait_for_app(page)
    upload(page, third)
    page.locator("h3", has_text="subject3.csv").wait_for(timeout=60_000)
    wait_for_app(page)
    assert page.get_by_text("Batch: ").count() == 0, "the new upload replaced the two files"
    page.get_by_text("Add to the batch").click()
    wait_for_app(page)
    upload(page, first, third)  # subject3.csv again: listed once
    page.get_by_text("Batch: 2 files").wait_for(timeout=60_000)
    wait_for_app(page)
    screenshot(page, test_output / "classify_imu_batch_added.png")
