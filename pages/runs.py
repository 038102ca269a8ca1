"""Runs: every run in the store; filter, sort, compare, inspect, download, delete. The list,
the comparison and the one-run view are fragments: a change in one reruns that part alone; the
comparison and the one-run view are two sections of which only the open one is drawn."""
import streamlit as st

from core.compare import dataset_key
from dashboard import compare
from dashboard.engine import engine
from dashboard.parts import run_label
from dashboard.router import require_router

require_router()
st.title("Runs")
store = engine().store
if not store.list_runs():
    st.info("No runs yet. Start one on Train, or with the quick start on Home.")
    st.page_link("pages/train.py", label="Open Train", icon=":material/model_training:")
    st.stop()


def current_runs() -> dict[str, dict]:
    """The store's runs by id, read when a part reruns (a fragment rerun must not show a stale status)."""
    return {r["id"]: r for r in store.list_runs()}


@st.fragment
def runs_list() -> None:
    runs = list(current_runs().values())
    table = compare.runs_table(store, runs)
    f1, f2, f3, f4 = st.columns([2, 2, 2, 2])
    statuses = f1.multiselect("Status", sorted(table["status"].unique()), key="runs.status",
                              placeholder="any status")
    models = f2.multiselect("Model", sorted(table["model"].unique()), key="runs.model", placeholder="any model")
    search = f3.text_input("Search", "", key="runs.search", placeholder="name, id or data source")
    sort_by = f4.selectbox("Sort by", ["created", "test_accuracy", "val_accuracy", "test_macro_f1", "duration_s",
                                       "name"],
                           key="runs.sort", help="click a column header in the table to sort by any column")
    shown = compare.filter_table(table, statuses, models, search, sort_by)
    st.dataframe(shown, hide_index=True, width="stretch", key="runs.table", column_config=compare.TABLE_COLUMNS)
    st.caption(f"{len(shown)} of {len(table)} runs")


@st.fragment
def compare_view() -> None:
    by_id = current_runs()
    kw = {}
    if "runs.compare" in st.session_state:  # a run deleted since the last rerun must not linger in the widget
        st.session_state["runs.compare"] = [i for i in st.session_state["runs.compare"] if i in by_id]
    elif "runs.compared" in st.session_state:  # drawn again after the One run section: the same choice
        kw["default"] = [i for i in st.session_state["runs.compared"] if i in by_id]
    else:
        kw["default"] = compare.default_selection(list(by_id.values()))
    selected = st.multiselect("Runs to compare", list(by_id), key="runs.compare",
                              format_func=lambda i: run_label(by_id[i]), **kw)
    st.session_state["runs.compared"] = list(selected)
    if not selected:
        return
    chosen = [by_id[i] for i in selected]
    comparable, others = compare.split_comparable(chosen)
    if others:
        st.info(f"{', '.join(compare.short_label(r) for r in others)}: other data than "
                f"{dataset_key(comparable[0])}, so compared on final metrics only (curves over different class sets "
                "do not compare).", icon=":material/info:")
    compare.overlay_section(store, comparable)
    compare.final_metrics_section(store, chosen)
    compare.config_diff_section(chosen)


@st.fragment
def one_run() -> None:
    by_id = current_runs()
    if st.session_state.get("runs.focus") not in by_id:
        st.session_state.pop("runs.focus", None)
    ids = list(by_id)
    kept = st.session_state.get("runs.focused")
    selected = [kept] if kept in by_id else [i for i in st.session_state.get("runs.compared") or [] if i in by_id]
    focus = st.selectbox("Run", ids, index=ids.index(selected[0]) if selected else 0, key="runs.focus",
                         format_func=lambda i: run_label(by_id[i]))
    st.session_state["runs.focused"] = focus
    compare.run_detail(store, by_id[focus], engine())


runs_list()
# Only the open section is drawn (a switch reruns the page): both at once doubled the first paint.
compare_tab, one_run_tab = st.tabs(["Compare", "One run"], key="runs.section", on_change="rerun")
if compare_tab.open:
    with compare_tab:
        compare_view()
if one_run_tab.open:
    with one_run_tab:
        one_run()
