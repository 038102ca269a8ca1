"""A person builds a model, trains it on the bundled HAPT sample, watches it live, cancels a
second run and finds both on Runs. One use case per test, in order, on one real server."""
from __future__ import annotations

import re
import time

import pytest

from core.store import Store
from tests.e2e.conftest import screenshot, wait_for_app

pytestmark = pytest.mark.e2e

STATE: dict[str, str] = {}  # run ids handed from one use case to the next


def store_of(server) -> Store:
    return Store(server["runs"] / "sigscope.db")


def wait_status(server, run_id: str, wanted: tuple[str, ...], timeout: float) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = store_of(server).get_run(run_id)["status"]
        if status in wanted:
            return status
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} still {status} after {timeout:.0f} s (wanted {wanted})")


def wait_finished(server, run_id: str, stall: float = 180.0) -> str:
    """Wait for a run to end for as long as it keeps making progress: the wait is bounded by
    what is observed (a step, an epoch or a status change within `stall` seconds), not by a
    fixed guess at how fast shared cores train."""
    seen, last_change = None, time.time()
    while True:
        run = store_of(server).get_run(run_id)
        if run["status"] not in ("queued", "running"):
            return run["status"]
        now = (run["status"], run.get("step"), run.get("epoch"))
        if now != seen:
            seen, last_change = now, time.time()
        elif time.time() - last_change > stall:
            raise AssertionError(f"run {run_id} made no progress for {stall:.0f} s: {seen}")
        time.sleep(0.5)


def queued_run_id(page) -> str:
    text = page.get_by_text("Queued run").first.inner_text()
    return re.search(r"\d{8}-\d{6}-[0-9a-f]{6}", text).group(0)


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox by typing it, as a keyboard user does."""
    page.locator("[data-testid='stSelectbox']").filter(has_text=label).first.click()
    page.keyboard.type(option)
    page.keyboard.press("Enter")
    wait_for_app(page)


def test_build_a_small_model_and_train_it_on_hapt(server, page, test_output):
    page.goto(server["url"] + "/build")
    wait_for_app(page)
    choose(page, "Model", "resnet1d")
    params = page.locator("[data-testid='stMetric']").filter(has_text="Parameters")
    before = params.inner_text()
    for knob in ("Num stages", "Blocks per stage"):
        box = page.get_by_role("spinbutton", name=knob, exact=True)
        box.fill("1")  # the smallest value
        box.press("Enter")
        wait_for_app(page)
    assert params.inner_text() != before, "fewer stages and blocks change the parameter count"
    page.get_by_text("Block structure").wait_for()
    screenshot(page, test_output / "build.png")

    page.get_by_role("button", name="Train this model").click()
    page.get_by_role("button", name="Start training").wait_for()
    wait_for_app(page)
    assert "Train" in page.title() or page.url.endswith("/train")
    page.get_by_text("From Build: resnet1d").first.wait_for()  # what was carried over, said plainly
    page.get_by_text("UCI HAPT smartphone IMU").first.wait_for()  # the bundled real data it was sized for
    epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
    epochs.fill("200")  # long enough to be watched, then cancelled; never waited for
    epochs.press("Enter")
    wait_for_app(page)
    name = page.get_by_role("textbox", name="Run name")
    name.fill("e2e watched")
    name.press("Enter")
    wait_for_app(page)
    page.get_by_role("tab", name="Optimizer and schedule").click()  # the form's sections are tabs
    page.get_by_text("Learning rate this config will follow (200 epochs").wait_for()
    screenshot(page, test_output / "train.png")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Queued run").wait_for()
    run_id = queued_run_id(page)
    cfg = store_of(server).get_run(run_id)["config"]
    assert (cfg["data"]["source"], cfg["model"]["name"], cfg["train"]["epochs"]) == ("hapt", "resnet1d", 200)
    assert cfg["model"]["hparams"]["num_stages"] == 1, "Build's choices reached the run"
    STATE["watched"] = run_id


# the x values of the Monitor's loss chart as the browser holds them (Plotly's own data)
LOSS_X = """
    const charts = Array.from(document.querySelectorAll('.js-plotly-plot'));
    const title = c => String((c._fullLayout && c._fullLayout.title && c._fullLayout.title.text) || '');
    const loss = charts.find(c => title(c).includes('Training loss per step'));  // Streamlit wraps titles in <b>
    const x = loss && loss.data.length ? loss.data[0].x : [];"""


def loss_points(page) -> int:
    """Points in the Monitor's loss chart."""
    return page.evaluate("() => {" + LOSS_X + " return x.length; }")


def last_loss_step(page) -> float:
    """The last step in the Monitor's loss chart. Not the number of points: past
    dashboard.series.MAX_POINTS steps the chart is thinned to that many."""
    return page.evaluate("() => {" + LOSS_X + " return x.length ? Number(x[x.length - 1]) : 0; }")


def test_monitor_charts_gain_points_while_the_run_trains(server, page, test_output):
    run_id = STATE["watched"]
    page.goto(f"{server['url']}/monitor?run={run_id}")
    page.get_by_text("Loss points").wait_for(timeout=60_000)
    seen = [last_loss_step(page)]
    deadline = time.time() + 90
    while time.time() < deadline and len(set(seen)) < 3:
        time.sleep(1.0)
        seen.append(last_loss_step(page))
        if store_of(server).get_run(run_id)["status"] not in ("queued", "running"):
            break
    grew = sorted(set(seen))
    assert len(grew) >= 3 and seen[-1] == max(seen), f"the loss chart did not keep gaining steps: {seen}"
    page.get_by_text("Running on").wait_for()
    screenshot(page, test_output / "monitor.png")
    page.get_by_role("tab", name="Gradients").click()
    page.get_by_text("Global gradient norm").first.wait_for()
    page.wait_for_url(re.compile(r"tab=Gradients"))  # the link to this view names the tab
    time.sleep(3)  # three live ticks (or the redraw when the run ends) keep the chosen tab
    assert page.get_by_role("tab", name="Gradients").get_attribute("aria-selected") == "true"
    page.get_by_text("Global gradient norm").first.wait_for()  # (a tick may be redrawing it this instant)
    screenshot(page, test_output / "monitor-gradients.png")


def start_from_train(server, page, name: str, epochs: int | None = None) -> str:
    """Open Train at its defaults, name the run (and set its epochs), start it; its run id."""
    page.goto(server["url"] + "/train")
    wait_for_app(page)
    boxes = ((page.get_by_role("spinbutton", name="Epochs", exact=True), str(epochs)),) if epochs else ()
    for box, value in (*boxes, (page.get_by_role("textbox", name="Run name"), name)):
        box.fill(value)
        box.press("Enter")
        wait_for_app(page)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Queued run").wait_for()
    return queued_run_id(page)


def test_cancel_a_second_run_from_the_queue(server, page, test_output):
    run_id = start_from_train(server, page, "e2e cancelled")
    STATE["cancelled"] = run_id
    cancel = page.locator(f".st-key-train-cancel-{run_id} button")  # that run's row in the queue
    for _ in range(3):  # the queue redraws every 2 s; a click on a row being replaced is retried
        cancel.first.click()
        try:
            wait_status(server, run_id, ("cancelled",), timeout=20)
            break
        except AssertionError:
            continue
    assert store_of(server).get_run(run_id)["status"] == "cancelled"
    page.get_by_text("Queue").first.wait_for()
    screenshot(page, test_output / "train-queue.png")


def test_cancel_the_watched_run_from_monitor(server, page, test_output):
    """The 200-epoch run was for watching; it is stopped from its Monitor page, not waited for."""
    run_id = STATE["watched"]
    page.goto(f"{server['url']}/monitor?run={run_id}")  # live: it redraws every second, never calm
    cancel = page.get_by_role("button", name="Cancel this run")
    cancel.wait_for(timeout=60_000)
    assert store_of(server).get_run(run_id)["status"] == "running", "the watched run is still training"
    for _ in range(3):  # a live tick may be redrawing the button at the instant of the click
        cancel.click()
        try:
            wait_status(server, run_id, ("cancelled",), timeout=30)
            break
        except AssertionError:
            continue
    assert wait_finished(server, run_id) == "cancelled"
    page.get_by_text("Cancelled").first.wait_for(timeout=60_000)
    screenshot(page, test_output / "monitor-cancelled.png")


def test_a_short_run_completes_and_all_three_are_on_runs(server, page, test_output):
    watched, cancelled = STATE["watched"], STATE["cancelled"]
    done = start_from_train(server, page, "e2e completed", epochs=2)
    assert store_of(server).get_run(done)["config"]["train"]["epochs"] == 2
    assert wait_finished(server, done) == "completed"

    page.goto(server["url"] + "/runs")
    wait_for_app(page)
    for run_id, status in ((done, "completed"), (watched, "cancelled"), (cancelled, "cancelled")):
        # st.dataframe draws on a canvas; its rows also live in an accessible (hidden) table
        row = page.locator("[role=row]", has_text=run_id).first
        row.wait_for(state="attached")
        assert status in row.text_content(), row.text_content()
    search = page.get_by_role("textbox", name="Search")
    search.fill(cancelled)
    search.press("Enter")
    wait_for_app(page)
    page.get_by_text(re.compile(r"^1 of \d+ runs$")).wait_for()  # other tests may share this server
    search.fill("")
    search.press("Enter")
    wait_for_app(page)
    page.get_by_role("tab", name="One run").click()  # the section is drawn on the click
    page.get_by_text("Per-class report").first.wait_for()  # the completed run's confusion matrix
    screenshot(page, test_output / "runs.png")

    page.goto(f"{server['url']}/monitor?run={done}")  # the finished run, as it stays on Monitor
    page.get_by_text("Completed").first.wait_for()
    wait_for_app(page)
    screenshot(page, test_output / "monitor-completed.png")
    page.get_by_role("tab", name="Dead units").click()
    page.get_by_text(re.compile(r"^At step \d+: highest")).first.wait_for()  # the open tab is drawn on the click
    wait_for_app(page)
    screenshot(page, test_output / "monitor-dead-units.png")


def test_home_shows_the_engine(server, page, test_output):
    page.goto(server["url"])
    wait_for_app(page)
    page.get_by_text("Engine").first.wait_for()
    page.get_by_role("button", name="Train the default model on the bundled data").wait_for()
    screenshot(page, test_output / "home.png")
