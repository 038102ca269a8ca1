"""Explore through the router, as a person uses it: with no run it says what to do; on the
bundled demo-imu run it draws the map of every window (PCA, then t-SNE), recolours it, opens a
window as a click on the map does (its signal and the run's prediction, Classify's detail),
marks it excluded and removes the mark, ranks label issues the cheap way and measures
channel importance."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.store import Store
from tests.test_pages import runs_dir  # noqa: F401 (fixture: an empty runs folder, its engine shut down after)

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/explore.py"


def open_explore() -> AppTest:
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=120)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def values(array) -> list:
    """A trace's array as a list: plotly sends numpy arrays as typed binary ({"dtype", "bdata"})."""
    if isinstance(array, dict) and "bdata" in array:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def map_figure(at: AppTest) -> dict:
    return next(f for f in charts(at) if "windows ·" in str(f["layout"].get("title", {}).get("text", "")))


@pytest.fixture(scope="module")
def demo_imu(tmp_path_factory):
    """A runs folder holding the bundled demo-imu run (HAPT, 6 classes, 1,257 windows)."""
    import os

    from core.demo import install_bundled
    from dashboard.engine import shutdown_engines

    runs = tmp_path_factory.mktemp("explore") / "runs"
    old = os.environ.get("SIGSCOPE_RUNS_DIR")
    os.environ["SIGSCOPE_RUNS_DIR"] = str(runs)
    run_id = install_bundled(Store(), "demo-imu")
    yield run_id
    shutdown_engines()
    if old is None:
        os.environ.pop("SIGSCOPE_RUNS_DIR", None)
    else:
        os.environ["SIGSCOPE_RUNS_DIR"] = old


def open_window(at: AppTest, run_id: str, index: int) -> AppTest:
    """What a click on the map's point `index` does (the map's on_select callback): the page's
    own open_window, then a rerun. AppTest cannot click inside a Plotly chart."""
    from core.explore.embed import embed_run

    key = f"{run_id}.model.{embed_run(run_id, Store()).key}"
    opened = dict(at.session_state["explore.opened"]) if "explore.opened" in at.session_state else {}
    opened[key] = index
    at.session_state["explore.opened"] = opened
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_with_no_run_the_page_maps_the_data_alone_and_says_what_to_do(runs_dir):  # noqa: F811
    from core.config import DataConfig, RunConfig

    Store().create_run(RunConfig(name="weightless", data=DataConfig(source="hapt")).to_dict(), name="weightless",
                       status="completed")  # finished, but its checkpoint is gone
    at = open_explore()
    assert any("No finished run with weights yet" in i.value for i in at.info)
    assert any("1 finished run(s) without a checkpoint are not listed (weightless)" in c.value for c in at.caption)
    assert any(b.label.startswith("Add the demo models") for b in at.button)
    fig = map_figure(at)  # before any model: bundled HAPT's windows from their features
    assert fig["layout"]["title"]["text"] == "1,257 windows · PCA"
    assert {t["name"] for t in fig["data"]} >= {"WALKING", "LAYING"}
    assert at.selectbox(key="explore.data").value == "hapt"
    assert "predicted" not in at.selectbox(key="explore.color.data").options

    assert any("Click a point" in i.value for i in at.info)
    at.session_state["explore.opened"] = {"data.hapt": 5}  # what a click on point 5 does
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    heading = next(m.value for m in at.markdown if "labelled **" in m.value)
    assert "the map's run said" not in heading  # no model, no answer
    window = next(f for f in charts(at) if "imu (6, 128)" in str(f["layout"]["title"]["text"]))
    assert len(window["data"]) == 6 and window["data"][0]["name"] == "acc_x"  # the six axes of the raw window
    assert any(b.key == "explore.mark.data.exclude" for b in at.button)


def test_the_map_of_the_demo_run_is_drawn_and_recoloured(demo_imu):
    at = open_explore()
    fig = map_figure(at)
    assert fig["layout"]["title"]["text"] == "1,257 windows · PCA"
    names = {t["name"] for t in fig["data"]}
    assert {"WALKING", "SITTING", "LAYING"} <= names  # coloured by true class: one trace per class
    assert sum(len(values(t["x"])) for t in fig["data"]) == 1257
    assert all(t["type"] == "scatter" for t in fig["data"])  # SVG below SVG_POINTS: clickable points
    assert sorted(i for t in fig["data"] for i in values(t["customdata"])) == list(range(1257))
    assert "predicted" in fig["data"][0]["text"][0]

    at.selectbox(key="explore.color.model").set_value("correct").run()
    assert {t["name"] for t in map_figure(at)["data"]} == {"correct", "wrong"}
    at.selectbox(key="explore.color.model").set_value("split").run()
    assert {t["name"] for t in map_figure(at)["data"]} == {"train", "val", "test"}

    at.selectbox(key="explore.method").set_value("tsne").run()
    assert not at.exception, [e.message for e in at.exception]
    assert "t-SNE" in map_figure(at)["layout"]["title"]["text"]

    at.radio(key="explore.what").set_value("data").run()  # the data before any model: no answers to colour by
    assert not at.exception, [e.message for e in at.exception]
    assert any("inputs → PCA" in c.value for c in at.caption)
    assert "predicted" not in at.selectbox(key="explore.color.data").options


def test_a_selection_on_the_map_names_its_window():
    from dashboard.explore_parts import selected_window

    assert selected_window({"points": [{"curve_number": 2, "point_index": 9, "customdata": 412}]}) == 412
    assert selected_window({"points": [{"customdata": [7]}]}) == 7  # customdata given as a list
    assert selected_window({"points": [], "box": [], "lasso": []}) is None  # a click that deselected
    assert selected_window({"points": [{"x": 1.0}]}) is None
    assert selected_window(None) is None


def test_opening_a_window_shows_its_signal_and_prediction_and_marks_round_trip(demo_imu):
    at = open_explore()
    assert any("Click a point on the map" in i.value for i in at.info)
    open_window(at, demo_imu, 5)
    assert [m.label for m in at.metric][:2] == ["Prediction", "Confidence"]
    heading = next(m.value for m in at.markdown if "labelled **" in m.value)
    assert "the map's run said" in heading
    fig = map_figure(at)
    assert fig["data"][-1]["name"] == "opened window" and values(fig["data"][-1]["customdata"]) == [5]
    assert len(charts(at)) >= 3  # the map, the window's channels, its top classes

    at.button(key=f"explore.mark.{demo_imu}.exclude").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("no marks" not in m.value and "1 excluded" in m.value for m in at.markdown)
    assert any("This window is marked: excluded" in c.value for c in at.caption)
    remove = next(b for b in at.button if b.label == "Remove")
    remove.click().run()
    assert any("no marks" in m.value for m in at.markdown)

    target = next(s for s in at.selectbox if s.label == "Relabel as")
    target.set_value(target.options[0]).run()
    at.button(key=f"explore.mark.{demo_imu}.relabel").click().run()
    assert any("1 relabelled" in m.value for m in at.markdown)
    from core.explore.marks import list_marks

    marks = list_marks(Store(), Store().get_run(demo_imu)["config"]["data"])
    assert [(m.action, m.label) for m in marks] == [("relabel", target.options[0])]
    next(b for b in at.button if b.label == "Remove").click().run()
    assert not list_marks(Store(), Store().get_run(demo_imu)["config"]["data"])


def test_label_issues_the_cheap_way_list_windows_of_the_map(demo_imu):
    at = open_explore()
    at.button(key="explore.issues.cheap").click().run()
    assert not at.exception, [e.message for e in at.exception]
    tables = at.dataframe
    assert tables, "no label-issue table"
    frame = tables[0].value
    assert list(frame.columns)[:4] == ["rank", "window", "split", "labelled"]
    assert set(frame["split"]) <= {"val", "test"}
    # a chosen row opens its window through the embedding's row of that id (AppTest cannot pick a row)
    from core.explore.embed import embed_run
    from dashboard.explore_parts import index_of

    embedding = embed_run(demo_imu, Store())
    row = frame.iloc[0]
    index = index_of(embedding, row["window"], row["split"])
    assert embedding.table.ids[index] == row["window"] and embedding.table.split[index] == row["split"]


def test_channel_importance_is_drawn_as_bars(demo_imu):
    at = open_explore()
    key = f"explore.importance.{demo_imu}"
    at.number_input(key=f"{key}.repeats").set_value(2).run()
    at.button(key=f"{key}.go").click().run()
    assert not at.exception, [e.message for e in at.exception]
    bars = [f for f in charts(at) if "accuracy drop" in str(f["layout"].get("title", {}).get("text", ""))]
    assert bars and bars[0]["data"][0]["type"] == "bar"
    assert len(bars[0]["data"][0]["y"]) == 6  # six IMU channels
    assert bars[0]["data"][0]["error_x"]["array"]  # the interval over repeats
    at.selectbox(key=f"{key}.by").set_value("time").run()
    at.button(key=f"{key}.go").click().run()
    heat = [f for f in charts(at) if f["data"] and f["data"][0]["type"] == "heatmap"]
    assert heat and len(heat[0]["data"][0]["y"]) == 7  # all classes + six classes
