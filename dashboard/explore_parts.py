"""Page parts for Explore: the run and map choices, the embedding and its 2-D map (with a
progress bar, kept in the session so a new colour is instant), the opened window (Classify's
own detail view), marks, label issues (the cheap score or K fold runs through the JobManager,
watched through the store) and importance.

Every computation is a `core.explore` call in the script run; only the fold runs go to the
JobManager. The opened window lives in session state, set by the callbacks of the map and of
the label-issue table, so the last click wins whichever it was on.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.errors import SigscopeError
from core.infer import Predictor, error_line
from dashboard import classify_parts as cparts
from dashboard import explore_figures as ef

OPENED = "explore.opened"  # {map key: window index} the window opened beside each map
CACHE = "explore.cache"    # {(what, ...): result} embeddings, maps, windows, issues, importance of this session
MAX_CACHED = 24
TOP_K = 5
DETAIL_KEY = "explore-detail"  # the opened window's container (Streamlit gives it the class st-key-<key>)
# Classify's detail in a column beside the map: its four metrics at Classify's full-width size
# would cut a class name to "ST…", so their values are drawn smaller there, and only there.
DETAIL_CSS = (f"<style>.st-key-{DETAIL_KEY} [data-testid='stMetricValue'] {{font-size: 1.35rem;}}"
              f".st-key-{DETAIL_KEY} [data-testid='stMetricLabel'] p {{font-size: 0.8rem;}}</style>")


# ---- engine parts ------------------------------------------------------------------------------
def _cache() -> dict:
    cache = st.session_state.setdefault(CACHE, {})
    while len(cache) > MAX_CACHED:  # oldest first: dicts keep insertion order
        cache.pop(next(iter(cache)))
    return cache


class ProgressBar:
    """An st.progress fed by the engine's progress(done, total, stage) callback; removed when done."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.bar = st.progress(0.0, text=text)

    def __call__(self, done: int, total: int, stage: str) -> None:
        fraction = min(1.0, max(0.0, done / total)) if total else 0.0
        self.bar.progress(fraction, text=f"{self.text} {stage}: {done:,} / {total:,}")

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.empty()


# ---- choosing a run -----------------------------------------------------------------------------
def explorable_runs(store) -> list[dict]:
    """Completed runs with a checkpoint, newest first (Classify's list)."""
    return cparts.classifiable_runs(store)


def runs_without_weights(store) -> None:
    """A line naming the finished runs the picker leaves out because their checkpoint is gone."""
    missing = [r for r in store.list_runs("completed") if not cparts.has_checkpoint(r)]
    if missing:
        names = ", ".join(r.get("name") or r["id"] for r in missing[:3]) + (" …" if len(missing) > 3 else "")
        st.caption(f":material/visibility_off: {len(missing)} finished run(s) without a checkpoint are not listed "
                   f"({names}): their weights were deleted or never written; train them again to explore them.")


def run_picker(store, runs: list[dict]) -> dict:
    """The Run picker: each run by name with its data and held-out accuracy, as on Classify."""
    from dashboard.parts import run_label

    by_id = {r["id"]: r for r in runs}
    quality = {i: cparts.quality_of(store, r) for i, r in by_id.items()}
    ids = list(by_id)
    own = [i for i, r in by_id.items() if not (r["config"].get("data") or {}).get("folds")]  # not a fold run
    default = next((i for i, r in by_id.items() if r["name"] == "demo-imu"), (own or ids)[0])
    run_id = st.selectbox("Run", ids, index=ids.index(default), key="explore.run",
                          format_func=lambda i: f"{run_label(by_id[i])} · {quality[i].label()}",
                          help="a finished run with weights: its data and its accuracy and macro-F1 on its own "
                               "held-out split")
    if quality[run_id].warning():
        st.warning(quality[run_id].warning(), icon=":material/casino:")
    return by_id[run_id]


def add_demo_models(store) -> None:
    """No run yet: a button that installs the bundled demo models (instant)."""
    from core.demo import DEMO_NAMES, bundle_manifest, ensure_bundled

    bundled = tuple(n for n in DEMO_NAMES if bundle_manifest(n) is not None)
    if bundled and st.button(f"Add the demo models ({', '.join(bundled)})", key="explore.demo",
                             icon=":material/bolt:", help="install their committed weights as finished runs (instant)"):
        ensure_bundled(store, bundled)
        st.rerun()


# ---- the embedding and its map ------------------------------------------------------------------
def run_embedding(store, run: dict):
    """embed_run for the run (cached on disk by the engine and in this session by the page),
    with a progress bar while it computes. Raises SigscopeError with the engine's message."""
    from core.explore.embed import checkpoint_file, embed_run

    ckpt = checkpoint_file(Path(run.get("run_dir") or ""))
    stamp = ckpt.stat().st_mtime_ns if ckpt else 0
    key = ("embedding", run["id"], stamp)
    cache = _cache()
    if key not in cache:
        with ProgressBar(f"Embedding every window of {run['name'] or run['id']} through its model…") as bar:
            cache[key] = embed_run(run["id"], store, progress=bar)
    return cache[key]


def data_embedding(data: dict):
    """embed_data for a data config (the windows before any model), kept in this session."""
    import json

    from core.explore.embed import embed_data

    key = ("data-embedding", json.dumps(data, sort_keys=True, default=str))
    cache = _cache()
    if key not in cache:
        with ProgressBar("Embedding the data's windows (features → PCA)…") as bar:
            cache[key] = embed_data(data, progress=bar)
    return cache[key]


def data_choices() -> dict[str, dict]:
    """The sources that come with data (bundled, generated or shipped in a package), each as the
    data config Train starts from (its suggested split and features): source -> DataConfig dict."""
    from core.config import DataConfig
    from core.data.sources import list_sources

    out = {}
    for source in list_sources():
        if str(source.get("default_data", "")).startswith("none"):
            continue  # needs a path of the user's own
        out[source["name"]] = DataConfig.from_dict({"source": source["name"], **(source.get("suggested") or {})}).to_dict()
    return out


def data_picker(key: str) -> dict:
    """A selectbox of data_choices(); the chosen source's data config."""
    choices = data_choices()
    name = st.selectbox("Data", list(choices), key=key, index=list(choices).index("hapt") if "hapt" in choices else 0,
                        help="a source's bundled data as Train would start from it; its windows are mapped from "
                             "their features (flattened, then PCA) before any model exists")
    return choices[name]


def data_window_detail(data: dict, embedding, index: int) -> None:
    """The opened window of a map made before any model: where it comes from and its signal or
    features (and, for audio, its recording)."""
    import json

    st.markdown(window_heading(embedding, index))
    t = embedding.table
    bundle = _bundle(json.dumps(data, sort_keys=True, default=str))
    ds = getattr(bundle, str(t.split[index]))
    hits = np.flatnonzero(np.asarray(ds.ids).astype(str) == str(t.ids[index]))
    if not len(hits):
        st.warning(f"window {t.ids[index]} is not in the data any more", icon=":material/warning:")
        return
    x = np.asarray(ds.x[int(hits[0])])
    rate = bundle.sample_rate if x.ndim <= 2 and x.shape[-1] > 1 and bundle.input_kind in ("imu", "waveform") else 1.0
    st.plotly_chart(ef.window_signal_figure(x, list(bundle.channel_names), rate,
                                            title=f"{t.ids[index]}: {bundle.input_kind} {tuple(x.shape)}"),
                    width="stretch", key=f"explore.data_window.{index}")
    if bundle.info.get("signal") == "audio":
        try:
            st.audio(window_recording(data, str(t.source[index])).read_bytes())
        except SigscopeError as e:
            st.caption(error_line(e))
    st.caption("Train a model on this data to see its answers, label issues and importance here.")


def projection_of(embedding, method: str, seed: int):
    """project(embedding, method, seed), kept in this session per (embedding, method, seed): a new
    colour or another opened window redraws the map without projecting again."""
    from core.explore.project import project

    key = ("projection", embedding.kind, embedding.run_id, embedding.key, method, int(seed))
    cache = _cache()
    if key not in cache:
        with ProgressBar("Drawing the map…") as bar:
            cache[key] = project(embedding, method, int(seed), progress=bar)
    return cache[key]


def map_frame(embedding) -> pd.DataFrame:
    """One row per window for the map's colours and hover: the table's columns plus, when a
    model answered, predicted, confidence and correct ('correct' / 'wrong')."""
    frame = embedding.table.frame()
    if embedding.probabilities is not None:
        names = np.asarray(embedding.table.class_names, dtype=object)
        frame["predicted"] = names[embedding.predicted].astype(str)
        frame["confidence"] = embedding.confidence.astype(float)
        frame["correct"] = np.where(embedding.correct, "correct", "wrong")
    return frame


def selected_window(selection) -> int | None:
    """The window index a map selection points at (the customdata of its first point), or None.
    `selection`: a plotly_chart selection state ({"points": [{"customdata": ...}, ...]}) or None."""
    if not selection:
        return None
    points = selection.get("points") if hasattr(selection, "get") else None
    for point in points or []:
        data = point.get("customdata") if hasattr(point, "get") else None
        if isinstance(data, (list, tuple)):
            data = data[0] if data else None
        try:
            return int(data)
        except (TypeError, ValueError):
            continue
    return None


def opened(map_key: str) -> int | None:
    return st.session_state.setdefault(OPENED, {}).get(map_key)


def open_window(map_key: str, index: int | None) -> None:
    if index is not None:
        st.session_state.setdefault(OPENED, {})[map_key] = int(index)


def _on_map_select(chart_key: str, map_key: str) -> None:
    state = st.session_state.get(chart_key)
    open_window(map_key, selected_window(state.get("selection") if state else None))


def map_chart(embedding, projection, color_by: str, map_key: str, title: str, height: int = 560) -> None:
    """The map, clickable: a click opens that window (session state, through the callback)."""
    frame = map_frame(embedding)
    fig = ef.projection_map(projection.xy, frame, color_by, embedding.table.class_names,
                            selected=opened(map_key), title=title, height=height)
    chart_key = f"explore.map.{map_key}"
    st.plotly_chart(fig, width="stretch", key=chart_key, on_select=lambda: _on_map_select(chart_key, map_key),
                    selection_mode="points", config={"displaylogo": False, "scrollZoom": True})


def index_of(embedding, window_id: str, split: str | None = None) -> int | None:
    """The embedding row of a window id (in `split` when given), or None."""
    hits = np.flatnonzero(embedding.table.ids.astype(str) == str(window_id))
    if split is not None and len(hits) > 1:
        hits = hits[embedding.table.split[hits] == split] if (embedding.table.split[hits] == split).any() else hits
    return int(hits[0]) if len(hits) else None


# ---- one window in detail --------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the run's data…", max_entries=2)
def _bundle(data_json: str):
    import json

    from core.data import load

    return load(json.loads(data_json))


def bundle_of(predictor: Predictor):
    import json

    return _bundle(json.dumps(predictor.config.data.to_dict(), sort_keys=True, default=str))


def window_signal(predictor: Predictor, split: str, window_id: str) -> np.ndarray:
    """The raw IMU window (T, C) of `window_id` in the run's data split, as the source gave it."""
    from core.errors import DataError

    ds = getattr(bundle_of(predictor), split)
    hits = np.flatnonzero(np.asarray(ds.ids).astype(str) == str(window_id))
    if not len(hits):
        raise DataError(f"window {window_id} is not in the run's {split} split any more (the data or its marks "
                        "changed since the map was made)")
    x = np.asarray(ds.x[int(hits[0])], dtype=np.float32)
    if x.ndim != 2:
        raise DataError(f"window {window_id}: the split holds features of shape {x.shape}, not an IMU window")
    return x.T  # (C, T) -> (T, C)


def window_recording(data, source: str) -> Path:
    """The audio file a window came from (the source's own file list); data: a DataConfig or its dict."""
    from core.config import DataConfig
    from core.data.sources import get_source
    from core.errors import DataError

    data = data if isinstance(data, DataConfig) else DataConfig.from_dict(data)
    spec = get_source(data.source)
    files = spec.files(data) if spec.files else []
    match = [Path(f) for f in files if Path(f).name == source or str(f).endswith("/" + source)]
    if not match:
        raise DataError(f"the recording {source} is not among the source's files any more")
    return match[0]


def imu_window_prediction(predictor: Predictor, signal: np.ndarray, name: str, true_label: int):
    """Classify's Prediction for one in-memory IMU window (T, C): its answer, top-k and where the
    model looked, through core.infer's classify_signal (the path a file takes once read)."""
    from core.infer.predict import classify_signal

    return classify_signal(predictor, signal, np.zeros(1, dtype=np.int64), name, TOP_K,
                           truth=np.array([int(true_label)]))


def window_item(predictor: Predictor, embedding, index: int) -> cparts.Item:
    """The opened window as Classify's Item (kept in this session): an IMU window from the run's
    data split, or an audio window's recording classified as Classify classifies an upload."""
    t = embedding.table
    window_id, split, source = str(t.ids[index]), str(t.split[index]), str(t.source[index])
    key = ("window", predictor.run_id, str(predictor.checkpoint), predictor.epoch, split, window_id)
    cache = _cache()
    if key in cache:
        return cache[key]
    try:
        if predictor.signal == "audio":
            path = window_recording(predictor.config.data, source)
            data = path.read_bytes()
            item = cparts.classify_cached(predictor, data, path.name, predictor.stride / predictor.sample_rate,
                                          "mean", TOP_K)
            item = dataclasses.replace(item, name=f"{window_id} ({split})")
        else:
            pred = imu_window_prediction(predictor, window_signal(predictor, split, window_id), window_id,
                                         int(t.labels[index]))
            item = cparts.Item(f"{window_id} ({split})", b"", prediction=pred)
    except SigscopeError as e:
        item = cparts.Item(window_id, b"", error=error_line(e))
    except Exception as e:  # noqa: BLE001 - one window that cannot be shown must not take the page down
        item = cparts.Item(window_id, b"", error=f"window {window_id} could not be shown ({error_line(e)})")
    cache[key] = item
    return item


def window_heading(embedding, index: int) -> str:
    t = embedding.table
    start = float(t.start_s[index])
    where = "" if str(t.source[index]) == str(t.ids[index]) else f"{t.source[index]}"  # an audio file is its id
    if np.isfinite(start) and (where or start > 0):
        where += f"{', ' if where else ''}{start:.2f} s"
    line = (f"**{t.ids[index]}** · {t.split[index]} · {where + ' · ' if where else ''}"
            f"subject/speaker {t.groups[index]} · "
            f"labelled **{t.class_names[int(t.labels[index])]}**")
    if embedding.probabilities is not None:
        names = t.class_names
        line += (f" · the map's run said **{names[int(embedding.predicted[index])]}** "
                 f"({float(embedding.confidence[index]):.2f})")
    return line


def window_detail(predictor: Predictor, embedding, index: int, key: str) -> None:
    """The opened window: where it comes from, and Classify's detail (signal, or waveform +
    spectrogram + player, prediction with top-k, attention or saliency)."""
    st.markdown(window_heading(embedding, index))
    item = window_item(predictor, embedding, index)
    if item.error:
        st.warning(item.error, icon=":material/warning:")
        return
    cparts.show_prediction(predictor, item, key=key)


# ---- marks ---------------------------------------------------------------------------------------------
def mark_buttons(store, data: dict, embedding, index: int, key: str) -> None:
    """Exclude / relabel the opened window in new runs (core.explore.marks, stored per dataset)."""
    from core.explore import marks
    t = embedding.table
    window_id = str(t.ids[index])
    current = next((m for m in marks.list_marks(store, data) if m.window_id == window_id), None)
    if current is not None:
        what = "excluded" if current.action == "exclude" else f"relabelled as {current.label}"
        st.caption(f":material/bookmark: This window is marked: {what} in new runs.")
    given = t.class_names[int(t.labels[index])]
    others = [c for c in t.class_names if c != given]
    exclude_col, class_col, relabel_col = st.columns([1.1, 1.6, 2.3], vertical_alignment="bottom")
    if exclude_col.button("Exclude", key=f"{key}.exclude", icon=":material/block:",
                 help="leave this window out of new runs' training and validation windows"):
        marks.add_mark(store, data, window_id, "exclude")
        st.toast(f"{window_id}: excluded from new runs", icon=":material/block:")
        st.rerun()
    answer = predicted_name(embedding, index)
    target = class_col.selectbox("Relabel as", others, key=f"{key}.target.{window_id}",
                                 label_visibility="collapsed", index=others.index(answer) if answer in others else 0,
                                 help="the class a relabel trains it as (the run's answer first)")
    if relabel_col.button(f"Relabel as {target}", key=f"{key}.relabel", icon=":material/edit:",
                 help="train new runs on this window as another class"):
        marks.add_mark(store, data, window_id, "relabel", target)
        st.toast(f"{window_id}: relabelled as {target} in new runs", icon=":material/edit:")
        st.rerun()


def predicted_name(embedding, index: int) -> str | None:
    if embedding.probabilities is None:
        return None
    return embedding.table.class_names[int(embedding.predicted[index])]


def marks_list(store, data: dict, key: str) -> None:
    """The dataset's marks, each with a remove button, and how a new run uses them."""
    from core.explore import marks
    current = marks.list_marks(store, data)
    st.markdown(f"**Marks on this dataset** — {marks.marks_words(current)}")
    st.caption("Marks belong to the data as windowed (source, files, window, stride). A new run of this data on "
               "Train can use them: they are written into its config (data.exclude, data.relabel), so the run "
               "stays reproducible when the marks change later; they act on its training and validation windows "
               "only, so the test split stays comparable.")
    for m in current:
        c1, c2 = st.columns([5, 1], vertical_alignment="center")
        what = "excluded" if m.action == "exclude" else f"relabelled as **{m.label}**"
        c1.markdown(f"`{m.window_id}` {what}" + (f" — {m.note}" if m.note else ""))
        if c2.button("Remove", key=f"{key}.remove.{m.window_id}", icon=":material/delete:"):
            marks.remove_mark(store, data, m.window_id)
            st.rerun()


# ---- label issues --------------------------------------------------------------------------------------
def issues_frame(issues) -> pd.DataFrame:
    """The ranked label issues as a table (one row each, worst first)."""
    return pd.DataFrame([{"rank": i.rank, "window": i.id, "split": i.split, "labelled": i.given,
                          "suggested": i.suggested, "label quality": round(float(i.quality), 3)}
                         for i in issues.issues])


def _on_issue_select(table_key: str, map_key: str, embedding, issues) -> None:
    state = st.session_state.get(table_key)
    rows = (state.get("selection") or {}).get("rows") if state else None
    if rows:
        issue = issues.issues[int(rows[0])]
        open_window(map_key, index_of(embedding, issue.id, issue.split))
        st.toast(f"Opened {issue.id} beside the map", icon=":material/arrow_upward:")


def issues_table(issues, embedding, map_key: str, key: str) -> None:
    """The list: choosing a row opens that window beside the map, as a click on the map does."""
    if not issues.issues:
        st.success(f"No label issues found among {issues.n_scored:,} scored windows ({issues.method}).",
                   icon=":material/check_circle:")
        return
    st.caption(f"{len(issues.issues)} windows most likely mislabelled among {issues.n_scored:,} scored "
               f"({issues.method}; cleanlab's find_label_issues), worst first. Choose a row to open it beside the "
               "map; exclude or relabel it there.")
    table_key = f"{key}.table"
    st.dataframe(issues_frame(issues), hide_index=True, width="stretch", key=table_key, on_select=lambda:
                 _on_issue_select(table_key, map_key, embedding, issues), selection_mode="single-row",
                 height=min(400, 36 + 35 * len(issues.issues)))


def label_issue_section(eng, run: dict, embedding, map_key: str) -> None:
    """The cheap score (the run on its own val + test windows) or K fold runs through the
    JobManager, watched through the store (found again after a reload: they carry the run's id
    as their parent); then the ranked list."""
    from core.explore import label_issues as li
    store = eng.store
    run_id = run["id"]
    cache = _cache()
    shown_key = f"explore.issues.shown.{run_id}"  # which list is shown: "self" or K
    c1, c2, c3 = st.columns([3, 1, 2], vertical_alignment="bottom")
    if c1.button("Score val + test with this run", key="explore.issues.cheap", icon=":material/bolt:",
                 help="the run's own answers on windows it never trained on (validation and test): quick, "
                      "but training windows are not scored"):
        try:
            with st.spinner("Scoring the run's validation and test windows…"):
                cache[("issues", run_id, "self")] = li.label_issues(run_id, folds=None, store=store)
            st.session_state[shown_key] = "self"
        except SigscopeError as e:
            st.warning(str(e), icon=":material/warning:")
    folds = int(c2.number_input("K", min_value=2, max_value=20, value=5, key="explore.issues.k",
                                help="folds over the training split's subjects/speakers"))
    if c3.button(f"Find with {folds} folds", key="explore.issues.folds", icon=":material/model_training:",
                 help=f"{folds} ordinary runs of this config, each trained without one fold of the training "
                      "subjects/speakers and scoring it: every training window gets an out-of-sample answer "
                      "(they queue like any run; Monitor shows them)"):
        try:
            li.submit_fold_runs(run_id, folds, eng.jobs, store)
            st.session_state[shown_key] = folds
        except SigscopeError as e:
            st.warning(str(e), icon=":material/warning:")
    fold_runs = li.find_fold_runs(store, run_id, None)
    if fold_runs:
        fold_progress(run_id, fold_runs[0].folds, [r.run_id for r in fold_runs])
    shown = st.session_state.get(shown_key)
    issues = cache.get(("issues", run_id, shown))
    if issues is None and fold_runs:
        issues = cache.get(("issues", run_id, fold_runs[0].folds))
    if issues is None:
        issues = cache.get(("issues", run_id, "self"))
    if issues is not None:
        issues_table(issues, embedding, map_key, key=f"explore.issues.{run_id}.{len(issues.fold_runs)}")


@st.fragment(run_every=2)
def fold_progress(run_id: str, folds: int, fold_ids: list[str]) -> None:
    """The fold runs' progress from the store (polled every 2 s); once all have ended, the
    ranking from their answers (once: kept in this session) and a redraw of the page."""
    from core.explore.label_issues import fold_status, label_issues
    from dashboard.engine import engine

    store = engine().store
    try:
        status = fold_status(store, fold_ids)
    except SigscopeError as e:
        st.warning(str(e), icon=":material/warning:")
        return
    st.progress(status.progress, text=f"{folds}-fold cross-validation · {status.line()}")
    for r in status.failed:
        st.warning(f"{r.name}: {r.status}" + (f" — {r.error}" if r.error else "")
                   + ". Start the fold runs again, or use the cheap option.", icon=":material/warning:")
    key = ("issues", run_id, folds)
    cache = _cache()
    if status.ended and not status.failed and len(status.runs) == folds and key not in cache:
        try:
            with st.spinner("Ranking label issues from the fold runs' answers…"):
                cache[key] = label_issues(run_id, store=store, fold_runs=list(fold_ids))
            st.session_state[f"explore.issues.shown.{run_id}"] = folds
        except SigscopeError as e:
            st.warning(str(e), icon=":material/warning:")
            return
        st.rerun()  # the whole page: the list appears under the buttons


# ---- near-duplicates and outliers -------------------------------------------------------------------
def _on_row_select(table_key: str, map_key: str, rows_to_index: list[int]) -> None:
    state = st.session_state.get(table_key)
    rows = (state.get("selection") or {}).get("rows") if state else None
    if rows:
        open_window(map_key, rows_to_index[int(rows[0])])
        st.toast("Opened the window beside the map", icon=":material/arrow_upward:")


def neighbours_section(embedding, map_key: str, key: str, top: int = 30) -> None:
    """The closest pairs of windows from different recordings (different labels first worth a
    look) and the most isolated windows, by distance in the embedding; a row opens its window."""
    from core.explore import neighbours as nb
    cache = _cache()
    found_key = ("neighbours", embedding.kind, embedding.run_id, embedding.key, top)
    if found_key not in cache:
        try:
            cache[found_key] = (nb.near_duplicates(embedding, top=top), nb.outliers(embedding, top=top))
        except SigscopeError as e:
            st.warning(str(e), icon=":material/warning:")
            return
    pairs, odd = cache[found_key]
    t = embedding.table
    names = np.asarray(t.class_names, dtype=object)
    left, right = st.columns(2)
    with left:
        st.markdown("**Near-duplicates** (closest pairs from different recordings)")
        frame = pd.DataFrame([{"window": str(t.ids[p.i]), "label": names[t.labels[p.i]], "twin": str(t.ids[p.j]),
                               "twin's label": names[t.labels[p.j]], "distance": round(p.distance, 3),
                               "labels differ": p.labels_differ} for p in pairs])
        table_key = f"{key}.pairs"
        if len(frame):
            st.dataframe(frame, hide_index=True, width="stretch", key=table_key, selection_mode="single-row",
                         on_select=lambda: _on_row_select(table_key, map_key, [p.i for p in pairs]), height=300)
    with right:
        st.markdown("**Outliers** (farthest from their nearest windows)")
        frame = pd.DataFrame([{"window": str(t.ids[o.i]), "split": str(t.split[o.i]), "label": names[t.labels[o.i]],
                               "isolation": round(o.score, 3)} for o in odd])
        table_key = f"{key}.outliers"
        if len(frame):
            st.dataframe(frame, hide_index=True, width="stretch", key=table_key, selection_mode="single-row",
                         on_select=lambda: _on_row_select(table_key, map_key, [o.i for o in odd]), height=300)
    st.caption("Distances are between standardized embedding vectors. Windows of one recording are skipped as "
               "pairs (overlapping windows of a steady activity are alike by nature); a close pair with different "
               "labels is a labelling question, and the same clip in two recordings can leak between splits. "
               "Choose a row to open that window beside the map.")


# ---- importance ------------------------------------------------------------------------------------------
def importance_section(run: dict, predictor: Predictor, store, key: str) -> None:
    """By channel, time or band: the accuracy drop when that part of the input is shuffled
    (permutation) or set to its training mean (ablation), with a confidence interval from repeats."""
    from core.explore import importance as imp
    units = imp.allowed_units(predictor)
    methods = imp.IMPORTANCE_METHODS
    c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    by = c1.selectbox("By", units, format_func=lambda u: imp.IMPORTANCE_UNITS[u].label, key=f"{key}.by",
                      help=" · ".join(f"{imp.IMPORTANCE_UNITS[u].label}: {imp.IMPORTANCE_UNITS[u].help}"
                                      for u in units))
    method = c2.radio("Method", list(methods), horizontal=True, format_func=lambda m: methods[m].label,
                      key=f"{key}.method", help=" · ".join(f"{m.label}: {m.help}" for m in methods.values()))
    repeats = int(c3.number_input("Repeats", 1, 20, imp.DEFAULT_REPEATS, key=f"{key}.repeats",
                                  disabled=method == "ablation", help="shuffles per unit; the interval is over them"))
    cache = _cache()
    result_key = ("importance", run["id"], by, method, repeats if method == "permutation" else 1)
    if st.button("Measure importance", key=f"{key}.go", icon=":material/insights:",
                 help="on the run's test split; each unit costs a pass over it per repeat"):
        try:
            with ProgressBar(f"Measuring importance by {imp.IMPORTANCE_UNITS[by].label.lower()}…") as bar:
                cache[result_key] = imp.importance(run["id"], by=by, method=method, repeats=repeats, store=store,
                                                   progress=bar)
        except SigscopeError as e:
            st.warning(str(e), icon=":material/warning:")
    result = cache.get(result_key)
    if result is not None:
        importance_view(result, key)


def importance_view(result, key: str) -> None:
    """Bars (channels, bands: overall with its interval, or one class's recall drop) or the
    classes x time heat map."""
    st.caption(f"{result.method.capitalize()} importance on {result.n_windows:,} test windows, {result.repeats} "
               f"repeat(s): baseline accuracy {result.baseline_accuracy:.3f}. A bar is how much accuracy falls "
               "when that part of the input is " + ("shuffled across windows" if result.method == "permutation"
                                                    else "set to its training mean") + "; the whisker is the "
               "confidence interval over repeats. Near zero or below: the model does not rely on it.")
    if result.by == "time":
        st.plotly_chart(ef.importance_heatmap(result.names, result.per_class, result.class_names, result.drop,
                                              title="Which moments of the window each class relies on"),
                        width="stretch", key=f"{key}.heat")
        st.plotly_chart(ef.importance_bars(result.names, result.drop, result.low, result.high,
                                           title="Overall, per time block"), width="stretch", key=f"{key}.timebars")
        return
    whom = st.selectbox("For", ["all"] + list(result.class_names), key=f"{key}.class",
                        format_func=lambda c: "all classes (accuracy drop)" if c == "all" else f"{c} (recall drop)")
    if whom == "all":
        fig = ef.importance_bars(result.names, result.drop, result.low, result.high,
                                 title=f"Importance by {result.by}: accuracy drop")
    else:
        k = list(result.class_names).index(whom)
        fig = ef.importance_bars(result.names, result.per_class[k], title=f"Importance by {result.by} for {whom}",
                                 axis="recall drop")
    st.plotly_chart(fig, width="stretch", key=f"{key}.bars")
    with st.expander("Every class at once"):
        st.plotly_chart(ef.importance_heatmap(result.names, result.per_class, result.class_names, result.drop,
                                              title=f"Recall drop per class and {result.by}"),
                        width="stretch", key=f"{key}.classheat")
