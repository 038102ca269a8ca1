"""A person starts a run in two processes (PyTorch DDP) from the Train page and watches it on
Monitor, its processes' output on the Log tab."""
from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import screenshot, wait_for_app
from tests.e2e.test_train_e2e import loss_points, queued_run_id, store_of, wait_status

pytestmark = pytest.mark.e2e


def fill(page, label: str, value: str, role: str = "spinbutton") -> None:
    box = page.get_by_role(role, name=label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_for_app(page)


def test_a_two_process_run_from_train_is_watched_on_monitor_and_cancelled(server, page, test_output):
    page.goto(server["url"] + "/train")
    wait_for_app(page, timeout=120)
    page.get_by_role("tab", name="Training").click()  # the form's sections are tabs
    fill(page, "Processes per run", "2")
    fill(page, "Epochs", "40")
    fill(page, "Run name", "e2e two processes", role="textbox")
    assert page.get_by_text("Fix first").count() == 0
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Queued run").wait_for()
    run_id = queued_run_id(page)
    assert store_of(server).get_run(run_id)["config"]["train"]["processes"] == 2

    page.goto(f"{server['url']}/monitor?run={run_id}")
    page.get_by_text("Loss points").wait_for(timeout=60_000)
    deadline = time.time() + 240  # two processes start, load the data and join: slower on a busy machine
    while time.time() < deadline and loss_points(page) < 3:
        assert store_of(server).get_run(run_id)["status"] in ("queued", "running")
        time.sleep(1.0)
    assert loss_points(page) >= 3, "the two-process run's loss chart never drew"
    page.get_by_text("in 2 processes (DDP)").first.wait_for()
    screenshot(page, test_output / "monitor-ddp.png")
    run = store_of(server).get_run(run_id)
    assert run["processes"] == 2 and run["owner_pid"] != server["proc"].pid, "rank 0 of its own processes"
    page.get_by_role("button", name="Cancel this run").click()  # both processes stop at the same step
    assert wait_status(server, run_id, ("cancelled",), timeout=120) == "cancelled"
    assert "cancelled at step" in store_of(server).get_run(run_id)["error"]
    page.reload()
    page.get_by_text("Cancelled").first.wait_for()
    page.get_by_role("tab", name="Log").click()
    page.locator("code").filter(has_text="epoch 1/40").first.wait_for()
    wait_for_app(page)
    screenshot(page, test_output / "monitor-ddp-log.png")
