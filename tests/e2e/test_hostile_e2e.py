"""A person drops three CSVs on an IMU run in one batch: one with `inf` in it, one 12 MB file on
a single line, and a valid one saved by Excel (UTF-8 with a byte-order mark). The first two are
refused, each with its reason, the third is classified, and the page keeps serving."""
from __future__ import annotations

import codecs
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.e2e.conftest import ROOT, assert_not_blank, screenshot, wait_for_app
from tests.hostile.cases import CHANNELS, csv_text, imu_table

pytestmark = pytest.mark.e2e
RUN_NAME = "e2e-imu-hostile"


@pytest.fixture(scope="module")
def imu_run(server):
    """An (untrained) IMU run stored in the server's runs folder: refusals come before weights matter."""
    env = dict(os.environ, SIGSCOPE_RUNS_DIR=str(server["runs"]), SIGSCOPE_CACHE_DIR=str(server["runs"] / "cache"))
    code = ("from core.config import DataConfig; from tests.test_infer_bad_input import CHANNELS, stored_untrained_run;"
            f"print(stored_untrained_run({RUN_NAME!r}, 'resnet1d', DataConfig(source='hapt'), (6, 128), "
            "['WALKING', 'SITTING', 'LAYING'], CHANNELS, 50.0, 'imu', {'base_channels': 8, 'num_stages': 2}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_batch_of_hostile_csvs_is_refused_and_the_excel_one_classified(server, page, test_output, imu_run, tmp_path):
    lines = csv_text(imu_table(400)).splitlines()
    lines[11] = lines[11].replace(lines[11].split(",")[2], "inf", 1)
    non_finite = tmp_path / "with_inf.csv"
    non_finite.write_text("\n".join(lines) + "\n")
    one_line = tmp_path / "one_line_12MB.csv"
    one_line.write_text(",".join(CHANNELS) + "," + ",".join(f"{v:.6f}" for v in np.random.default_rng(0).random(1_400_000)))
    assert one_line.stat().st_size > 12_000_000
    excel = tmp_path / "excel_bom.csv"
    excel.write_bytes(codecs.BOM_UTF8 + csv_text(imu_table(640)).replace("\n", "\r\n").encode())

    page.goto(server["url"] + "/classify")
    wait_for_app(page)
    page.locator("[data-testid='stSelectbox']").first.click()
    page.get_by_role("option", name=re.compile(RUN_NAME)).first.click()
    wait_for_app(page)
    page.get_by_text("IMU CSV with columns").first.wait_for()
    started = time.monotonic()
    page.locator("[data-testid='stFileUploader'] input[type='file']").first.set_input_files(
        [str(non_finite), str(one_line), str(excel)])
    page.get_by_text("Batch: 3 files").wait_for(timeout=120_000)
    answered = time.monotonic() - started
    wait_for_app(page)
    shot = screenshot(page, test_output / "classify_hostile_batch.png")
    assert_not_blank(shot)
    body = page.locator("[data-testid='stMain']").inner_text()
    assert re.search(r"with_inf\.csv.*(inf|not finite)", body, re.S), body[-3000:]
    assert "SIGSCOPE_MAX_LINE_BYTES" in body, body[-3000:]  # the one-line file: refused at the line limit
    page.locator("h3", has_text="excel_bom.csv").first.wait_for()  # the valid file's own result section
    assert page.locator("[data-testid='stMetricValue']").first.inner_text().strip() in ("WALKING", "SITTING", "LAYING")
    (test_output / "hostile_batch_seconds.txt").write_text(f"{answered:.1f} s from upload to the batch table\n")
    page.goto(server["url"] + "/classify")  # the server is still serving (whichever model it picks first)
    wait_for_app(page)
    page.locator("[data-testid='stFileUploader']").first.wait_for()
