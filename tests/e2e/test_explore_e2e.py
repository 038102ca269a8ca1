"""A person opens Explore on the demo IMU run, sees the map of every window, clicks a point and
sees that window open beside the map: its channels, the run's prediction and its top classes;
then lists label issues the cheap way and measures channel importance."""
from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import assert_not_blank, demo_models, screenshot, wait_for_app

pytestmark = pytest.mark.e2e

# The most isolated point of the map (its nearest neighbour the farthest away on screen), so a
# click lands on it alone: its screen centre, and the window id its hover line names.
ISOLATED_POINT = """() => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(
      g => (g.layout.title.text || '').includes('windows ·'));
  const pts = [];
  gd.querySelectorAll('.scatterlayer .trace').forEach((trace, c) => {
    if (gd.data[c].name === 'opened window') return;
    trace.querySelectorAll('path.point').forEach(p => {
      const b = p.getBoundingClientRect();
      pts.push({x: b.x + b.width / 2, y: b.y + b.height / 2, c: c, i: p.__data__.i});
    });
  });
  let best = null, far = -1;
  for (const p of pts) {
    let near = Infinity;
    for (const q of pts) if (q !== p) near = Math.min(near, Math.hypot(p.x - q.x, p.y - q.y));
    if (near > far) { far = near; best = p; }
  }
  const text = gd.data[best.c].text[best.i];
  return {x: best.x, y: best.y, id: text.split(' (')[0], points: pts.length, gap: far};
}"""


@pytest.fixture(scope="module")
def demo_imu(server):
    return demo_models(server, "demo-imu")


def test_explore_the_demo_run_click_a_point_and_see_its_window(server, page, test_output, demo_imu):
    page.goto(server["url"] + "/explore")
    wait_for_app(page, timeout=120)
    page.get_by_text("Click a point on the map").first.wait_for(timeout=60_000)
    page.locator(".js-plotly-plot .scatterlayer path.point").first.wait_for(timeout=60_000)
    assert page.get_by_text("1,257 windows · PCA").count() >= 1
    assert page.get_by_text(re.compile("har_transformer's features")).count() >= 1
    shot = screenshot(page, test_output / "explore_map.png")

    point = page.evaluate(ISOLATED_POINT)
    assert point["points"] == 1257 and point["gap"] > 3, point
    page.mouse.click(point["x"], point["y"])
    page.get_by_text("Opened window").first.wait_for(timeout=60_000)
    wait_for_app(page)
    heading = page.locator("[data-testid='stMarkdownContainer']", has_text="labelled").first.inner_text()
    assert point["id"] in heading, (point, heading)  # the window clicked is the one opened
    metrics = page.locator("[data-testid='stMetricValue']")
    assert metrics.first.inner_text().strip() in {"WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING",
                                                   "STANDING", "LAYING"}
    assert page.get_by_text("Top classes").count() >= 1
    assert page.locator(".js-plotly-plot").count() >= 3  # the map, the window's channels, its top classes
    assert page.get_by_role("button", name="Exclude").count() == 1
    # the map rings the opened window
    assert page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].some("
                         "g => g.data.some(t => t.name === 'opened window'))")
    shot = screenshot(page, test_output / "explore_window.png")
    assert_not_blank(shot)

    # the cheap label-issue list and channel importance, below the map
    page.get_by_role("button", name="Score val + test with this run").click()
    page.get_by_text(re.compile(r"windows most likely mislabelled among")).first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Measure importance").click()
    page.get_by_text("Importance by channel: accuracy drop").first.wait_for(timeout=60_000)
    wait_for_app(page)
    screenshot(page, test_output / "explore_issues_importance.png")
