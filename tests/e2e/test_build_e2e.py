"""A person opens Sigscope, goes to Build, picks a model and sees what it costs."""
import pytest

from tests.e2e.conftest import screenshot, wait_for_app

pytestmark = pytest.mark.e2e


def test_home_lists_the_zoo(server, page, test_output):
    page.goto(server["url"])
    page.get_by_text("Model zoo").wait_for()
    page.locator("[role=gridcell]", has_text="har_transformer").first.wait_for(state="attached")  # glide grid: an a11y table
    screenshot(page, test_output / "home-zoo.png")


def test_build_shows_parameters_flops_and_memory(server, page, test_output):
    page.goto(server["url"] + "/build")
    wait_for_app(page)
    page.get_by_text("Parameters").first.wait_for()
    page.get_by_text("Training memory").first.wait_for()
    page.get_by_text("Block structure").wait_for()
    wait_for_app(page)
    screenshot(page, test_output / "build-default.png")
