"""A person with a small UCR set picks MiniRocket on Train for ArrowHead, fits its ridge head
in closed form and finds its test accuracy on Runs; the run says which rule chose its fit."""
from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import screenshot, wait_for_app
from tests.e2e.test_train_e2e import choose, queued_run_id, store_of, wait_finished

pytestmark = pytest.mark.e2e


def test_minirocket_on_arrowhead_from_train_to_runs(fresh_server, page, test_output):
    pytest.importorskip("aeon")
    server = fresh_server
    page.goto(server["url"] + "/train")
    wait_for_app(page)
    choose(page, "Source", "uea")
    choose(page, "Dataset", "ArrowHead")
    choose(page, "Validation", "auto")
    page.get_by_role("tab", name="Model").click()
    wait_for_app(page)
    choose(page, "Model", "minirocket")
    page.get_by_role("tab", name="Training").click()
    wait_for_app(page)
    choose(page, "Fit", "ridge")
    page.get_by_text("closed form").first.wait_for()  # the chosen fit is described under its box
    screenshot(page, test_output / "small-data-train.png")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Queued run").wait_for()
    run_id = queued_run_id(page)
    cfg = store_of(server).get_run(run_id)["config"]
    assert (cfg["data"]["options"]["name"], cfg["model"]["name"], cfg["train"]["fit"]) == ("ArrowHead", "minirocket",
                                                                                          "ridge")
    assert wait_finished(server, run_id) == "completed"
    summary = store_of(server).get_run(run_id)["summary"]
    accuracy = summary["test_metrics"]["test_accuracy"]
    assert accuracy > 0.7, f"MiniRocket on ArrowHead scored {accuracy:.3f} (aeon's: about 0.85)"

    page.goto(server["url"] + "/runs")
    wait_for_app(page)
    row = page.locator("[role=row]", has_text=run_id).first
    row.wait_for(state="attached")
    text = row.text_content()
    assert "completed" in text and "minirocket" in text and f"{accuracy:.3f}"[:4] in text, text
    page.get_by_role("tab", name="One run").click()
    page.get_by_text("Per-class report").first.wait_for()
    page.get_by_text(re.compile("Confusion matrix \\(test")).first.wait_for()
    screenshot(page, test_output / "small-data-runs.png")
