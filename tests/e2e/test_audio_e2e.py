"""A person sizes the audio model on Build, hands it to Train, starts it on the bundled FSDD
sample and watches it on Monitor. One use case per test, in order, on one real server."""
from __future__ import annotations

import re
import time

import pytest

from tests.e2e.conftest import screenshot, wait_for_app
from tests.e2e.test_train_e2e import choose, loss_points, queued_run_id, store_of, wait_status

pytestmark = pytest.mark.e2e

STATE: dict[str, str] = {}


def open_build_on_the_audio_model(server, page) -> None:
    page.goto(server["url"] + "/build")
    wait_for_app(page)
    choose(page, "Model", "audio_resnet_attention")
    page.get_by_text(re.compile(r"input \(4, 40, 126\) · 10 classes")).first.wait_for(timeout=120_000)
    wait_for_app(page, timeout=120)


def fill(page, label: str, value: str) -> None:
    box = page.get_by_role("spinbutton" if value.isdigit() else "textbox", name=label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_for_app(page)


def test_build_sizes_the_audio_model_on_fsdd(server, page, test_output):
    open_build_on_the_audio_model(server, page)
    sized_for = page.get_by_role("combobox", name="Sized for").input_value()
    assert "FSDD – audio ResNet+attention" in sized_for, f"sized for the audio data it takes, not {sized_for}"
    assert page.get_by_text("cannot be built").count() == 0
    for label in ("Parameters", "FLOPs / batch", "Training memory"):
        page.locator("[data-testid='stMetric']").filter(has_text=label).first.wait_for()
    page.get_by_text("Block structure").wait_for()
    screenshot(page, test_output / "build-audio.png")


def test_train_this_model_carries_it_to_train_on_fsdd(server, page, test_output):
    open_build_on_the_audio_model(server, page)
    page.get_by_role("button", name="Train this model").click()
    page.get_by_role("button", name="Start training").wait_for(timeout=60_000)
    wait_for_app(page, timeout=120)
    page.get_by_text("From Build: audio_resnet_attention").first.wait_for()
    page.get_by_text(re.compile(r"input spectrogram \(4, 40, 126\) · 10 classes")).first.wait_for(timeout=120_000)
    fill(page, "Epochs", "2")
    fill(page, "Run name", "e2e audio")
    assert page.get_by_text("Fix first").count() == 0
    screenshot(page, test_output / "train-audio.png")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Queued run").wait_for()
    run_id = queued_run_id(page)
    cfg = store_of(server).get_run(run_id)["config"]
    assert (cfg["model"]["name"], cfg["data"]["source"], cfg["data"]["features"]) == \
        ("audio_resnet_attention", "fsdd", "stack4")
    assert cfg["train"]["epochs"] == 2 and cfg["name"] == "e2e audio"
    STATE["audio"] = run_id


def test_monitor_watches_the_audio_run_and_cancels_it(server, page, test_output):
    run_id = STATE["audio"]
    page.goto(f"{server['url']}/monitor?run={run_id}")
    page.get_by_text("Loss points").wait_for(timeout=60_000)
    deadline = time.time() + 240  # a first read featurizes the clips; a busy machine may take minutes
    while time.time() < deadline and loss_points(page) < 2:
        if store_of(server).get_run(run_id)["status"] not in ("queued", "running"):
            break
        time.sleep(1.0)
    assert loss_points(page) >= 2 or store_of(server).get_run(run_id)["status"] == "completed", \
        "the audio run's loss chart never drew a point"
    screenshot(page, test_output / "monitor-audio.png")
    if store_of(server).get_run(run_id)["status"] == "running":
        page.get_by_role("button", name="Cancel this run").click()
        assert wait_status(server, run_id, ("cancelled", "completed"), timeout=120) in ("cancelled", "completed")
    page.get_by_role("tab", name="Gradients").click()
    page.get_by_text("Global gradient norm").first.wait_for()
    screenshot(page, test_output / "monitor-audio-gradients.png")
