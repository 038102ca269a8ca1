"""A person starts a small cost-aware sweep from the Sweep page, watches the trial table fill
(a trial over the parameter budget refused before training, with its reason), and sees the
optimization history and the Pareto front drawn."""
from __future__ import annotations

import time

import pytest

from core import sweep
from tests.e2e.conftest import screenshot, wait_for_app
from tests.e2e.test_ddp_e2e import fill
from tests.e2e.test_train_e2e import choose, store_of

pytestmark = pytest.mark.e2e


def test_a_small_sweep_from_the_page_fills_its_table_and_draws_history_and_pareto(server, page, test_output):
    page.goto(server["url"] + "/sweep")
    wait_for_app(page, timeout=120)
    page.get_by_text("New sweep").first.click()
    wait_for_app(page)
    choose(page, "Start from", "Run preset: HAPT – ResNet1D")
    page.get_by_text("What varies").wait_for()
    # the cost objective and a parameter budget that some widths in the space exceed
    page.locator("[data-testid='stMultiSelect']").filter(has_text="Cost objectives").first.click()
    page.keyboard.type("params")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    wait_for_app(page)
    fill(page, "Max parameters", "400000")
    fill(page, "Trials", "4")
    fill(page, "Epochs per trial", "1")
    page.get_by_text("The space before anything trains").wait_for(timeout=120_000)
    wait_for_app(page, timeout=120)
    screenshot(page, test_output / "sweep-new.png")
    page.get_by_role("textbox", name="Study name").fill("e2e-sweep")
    page.get_by_role("textbox", name="Study name").press("Enter")
    wait_for_app(page)
    assert page.get_by_text("Fix first").count() == 0
    page.get_by_role("button", name="Start sweep").click()

    page.get_by_text("trials ·").first.wait_for(timeout=60_000)
    store = store_of(server)
    # wait on what the study records, bounded by its progress: each trial ends within minutes
    last, deadline = -1, time.time() + 600
    while time.time() < deadline:
        counts = sweep.summary("e2e-sweep", f"journal:{server['runs'] / sweep.JOURNAL_FILE}")["trials"]
        done = counts["complete"] + counts["pruned"] + counts["failed"]
        if done >= 4:
            break
        if done != last:
            last, deadline = done, time.time() + 600
        time.sleep(1.0)
    rows = sweep.trials("e2e-sweep", f"journal:{server['runs'] / sweep.JOURNAL_FILE}")
    states = {r["state"] for r in rows}
    assert "complete" in states and "pruned" in states, [(r["state"], r["reason"]) for r in rows]
    refused = [r for r in rows if r["state"] == "pruned"]
    assert any("> 400k budget" in r["reason"] for r in refused), [r["reason"] for r in refused]
    assert all(r["run_id"] is None for r in refused), "refused before training: no run"
    assert all(store.get_run(r["run_id"])["study"] == "e2e-sweep" for r in rows if r["run_id"])

    page.reload()
    wait_for_app(page, timeout=120)
    page.get_by_text("Best so far").first.wait_for(timeout=60_000)
    page.locator("[data-testid='stDataFrame']").first.wait_for()
    page.get_by_role("tab", name="History").click()
    page.locator(".js-plotly-plot").first.wait_for()
    screenshot(page, test_output / "sweep-history.png")
    page.get_by_role("tab", name="Pareto front").click()
    page.get_by_text("Pareto front").last.wait_for()
    time.sleep(1.0)
    screenshot(page, test_output / "sweep-pareto.png")
