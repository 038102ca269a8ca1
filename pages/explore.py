"""Explore: every window of a run's data on one map, through the run's model (or before any
model); click a window to open it; find likely mislabels; see which channel and moment mattered."""
import streamlit as st

from core.errors import SigscopeError
from core.explore.project import PROJECTIONS
from dashboard import classify_parts as cparts
from dashboard import explore_figures as ef
from dashboard import explore_parts as parts
from dashboard.engine import engine
from dashboard.router import require_router

require_router()
st.title("Explore")
st.caption("Every window of a run's data as a point: close points look alike to the model. Click one to open it; "
           "find windows that are probably mislabelled; measure which channel and which moment the model needs.")
eng = engine()
store = eng.store
runs = parts.explorable_runs(store)
if not runs:  # before any model: the data's own windows, mapped from their features
    st.info("No finished run with weights yet, so this map is of the data alone: each window's features, "
            "flattened and reduced by PCA. Train a run (or add the demo models, instant) to see the data through "
            "a model, its label issues and which channels it needs.", icon=":material/info:")
    parts.runs_without_weights(store)
    parts.add_demo_models(store)
    c1, c2, c3 = st.columns([2, 2, 2])
    with c1:
        data = parts.data_picker("explore.data")
    method = c2.selectbox("Projection", list(PROJECTIONS), key="explore.method",
                          format_func=lambda m: PROJECTIONS[m].label)
    color_by = c3.selectbox("Colour by", ef.color_options(False), key="explore.color.data",
                            format_func=lambda c: ef.COLOR_BY[c][0])
    try:
        embedding = parts.data_embedding(data)
        projection = parts.projection_of(embedding, method, 0)
    except SigscopeError as e:
        st.warning(str(e), icon=":material/warning:")
        st.stop()
    map_key = f"data.{data['source']}"
    left, right = st.columns([2, 3], gap="medium")
    with left:
        parts.map_chart(embedding, projection, color_by, map_key,
                        title=f"{len(embedding):,} windows · {PROJECTIONS[method].label}", height=620)
    with right:
        index = parts.opened(map_key)
        if index is None or index >= len(embedding):
            st.info("Click a point to open its window here.", icon=":material/touch_app:")
        else:
            st.subheader("Opened window")
            parts.mark_buttons(store, data, embedding, index, key="explore.mark.data")
            parts.data_window_detail(data, embedding, index)
    st.page_link("pages/train.py", label="Open Train", icon=":material/model_training:")
    st.stop()

run = parts.run_picker(store, runs)
parts.runs_without_weights(store)
c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
what = c1.radio("Map of", ["model", "data"], horizontal=True, key="explore.what",
                format_func=lambda w: "the run's model" if w == "model" else "the data only",
                help="the run's model: each window's forward_features embedding, coloured by its answers too; "
                     "the data only: the windows' inputs flattened and reduced by PCA, before any model")
method = c2.selectbox("Projection", list(PROJECTIONS), key="explore.method",
                      format_func=lambda m: PROJECTIONS[m].label,
                      help=" · ".join(f"{p.label}: {p.help}" for p in PROJECTIONS.values()))
seed = int(c4.number_input("Seed", 0, 2**31 - 1, 0, key="explore.seed", help="the projection's seed"))

try:
    predictor = cparts.predictor_for(store, run)
except Exception as e:  # noqa: BLE001 - a broken run folder is a message, not a crash
    st.error(f"Run {run['id']} cannot be loaded: {e}", icon=":material/error:")
    st.stop()
try:
    embedding = parts.run_embedding(store, run) if what == "model" else parts.data_embedding(run["config"]["data"])
    projection = parts.projection_of(embedding, method, seed)
except SigscopeError as e:
    st.warning(str(e), icon=":material/warning:")
    st.stop()
options = ef.color_options(embedding.probabilities is not None)
color_by = c3.selectbox("Colour by", options, key=f"explore.color.{what}",
                        format_func=lambda c: ef.COLOR_BY[c][0])

map_key = f"{run['id']}.{what}.{embedding.key}"
left, right = st.columns([2, 3], gap="medium")
with left:
    how = (f"{run['config']['model']['name']}'s features ({embedding.dim} dims)" if embedding.kind == "model"
           else f"inputs → PCA ({embedding.dim} dims)")
    parts.map_chart(embedding, projection, color_by, map_key,
                    title=f"{len(embedding):,} windows · {PROJECTIONS[method].label}", height=620)
    st.caption(f"Each point is a window: {how}. Embedding {embedding.seconds:.1f} s"
               f"{' (cached)' if embedding.cached else ''}, map "
               f"{projection.seconds:.1f} s{' (cached)' if projection.cached else ''}. Drag to pan, scroll to zoom, "
               "double-click to reset; click a point to open its window.")
with right.container(key=parts.DETAIL_KEY):
    st.html(parts.DETAIL_CSS)
    index = parts.opened(map_key)
    if index is None or index >= len(embedding):
        st.info("Click a point on the map to open its window here: its signal, the run's prediction and where "
                "the model looked.", icon=":material/touch_app:")
    else:
        st.subheader("Opened window")
        parts.mark_buttons(store, run["config"]["data"], embedding, index, key=f"explore.mark.{run['id']}")
        parts.window_detail(predictor, embedding, index, key=f"explore.window.{run['id']}")

st.divider()
st.header("Label issues")
st.caption("Windows whose label the model's out-of-sample answers disagree with most (cleanlab). Cheap: the run "
           "scores its own validation and test windows. Thorough: K runs of this config, each trained without "
           "one fold of the training subjects/speakers, score every training window.")
parts.label_issue_section(eng, run, embedding, map_key)
with st.expander("Near-duplicates and outliers"):
    parts.neighbours_section(embedding, map_key, key=f"explore.neighbours.{run['id']}")
with st.expander("Marks (excluded and relabelled windows)"):
    parts.marks_list(store, run["config"]["data"], key=f"explore.marks.{run['id']}")

st.divider()
st.header("Importance")
st.caption("Which channels, moments (and, for audio, frequency bands) the run's accuracy depends on, per class and "
           "overall, on its test split.")
parts.importance_section(run, predictor, store, key=f"explore.importance.{run['id']}")
