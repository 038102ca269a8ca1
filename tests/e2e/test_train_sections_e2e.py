"""A person on a small screen scrolls down Train's longest section: Start, the run's name and
its epochs stay in view, and the sections switch without a rerun of the page."""
import pytest

from tests.e2e.conftest import screenshot, wait_for_app

pytestmark = pytest.mark.e2e


def test_start_stays_in_view_while_a_section_scrolls(server, page, test_output):
    page.set_viewport_size({"width": 1400, "height": 600})
    page.goto(server["url"] + "/train")
    wait_for_app(page, timeout=120)
    start = page.get_by_role("button", name="Start training")
    top_before = start.bounding_box()["y"]
    page.mouse.move(800, 400)
    page.mouse.wheel(0, 900)
    page.wait_for_function("() => document.querySelector('[data-testid=\"stMain\"]').scrollTop > 200")
    box = start.bounding_box()
    assert 0 <= box["y"] and box["y"] + box["height"] <= 600, f"Start left the screen: {box}"
    assert box["y"] < top_before, "the page did scroll, and Start came along"
    page.get_by_role("spinbutton", name="Epochs", exact=True).wait_for()  # still there to change
    screenshot(page, test_output / "train-sticky-start.png")

    page.get_by_role("tab", name="Optimizer and schedule").click()
    page.get_by_text("Learning rate this config will follow").first.wait_for()
