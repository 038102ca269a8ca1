"""Monitor: one run, live. The view polls the store by run id inside a fragment, so a
reload, a second tab or a run started from the CLI are watched the same way."""
import streamlit as st

from dashboard.engine import engine
from dashboard.live import CHART_SECONDS, live_view
from dashboard.parts import run_label
from dashboard.router import require_router

require_router()
st.title("Monitor")
eng = engine()
runs = eng.store.list_runs()
if not runs:
    st.info("No runs yet. Start one on Train, or with the quick start on Home.")
    st.page_link("pages/train.py", label="Open Train", icon=":material/model_training:")
    st.stop()

by_id = {r["id"]: r for r in runs}
asked = st.query_params.get("run")
if asked in by_id:
    st.session_state["selected_run"] = asked
elif asked:  # a stale or mistyped link: say so instead of silently showing another run
    latest = ", ".join(run_label(r) for r in runs[:3])
    st.warning(f"No run {asked!r} in this store (deleted, or from another runs folder). The latest: {latest}.",
               icon=":material/search_off:")
chosen = st.session_state.get("selected_run")
if chosen not in by_id:
    running = [r["id"] for r in runs if r["status"] == "running"]
    chosen = running[0] if running else runs[0]["id"]
ids = list(by_id)
# The picker's labels carry each run's status. Streamlit's selectbox keeps showing the label it
# drew first even when format_func gives a new one and the value is set again (streamlit PR
# 13788), so when the chosen run's label changed since it was drawn (running -> completed) the
# picker is drawn afresh under a new key; the selection itself lives in "selected_run".
drawn = st.session_state.get("monitor.drawn")  # (run id, label) the picker showed last
if drawn and drawn[0] == chosen and drawn[1] != run_label(by_id[chosen]):
    st.session_state["monitor.picker"] = st.session_state.get("monitor.picker", 0) + 1
generation = st.session_state.get("monitor.picker", 0)
picker_key = "monitor.run" if not generation else f"monitor.run.{generation}"
if st.session_state.get(picker_key) not in by_id:
    st.session_state.pop(picker_key, None)

c1, c2, c3 = st.columns([4, 2, 1])
run_id = c1.selectbox("Run", ids, index=ids.index(chosen), key=picker_key,
                      format_func=lambda i: run_label(by_id[i]))
st.session_state["selected_run"] = run_id
st.session_state["monitor.drawn"] = (run_id, run_label(by_id[run_id]))
st.query_params["run"] = run_id  # like the tab: a reload or a shared link shows this run
smoothing = c2.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="monitor.smoothing",
                      help="exponential moving average of per-step curves (0 = raw)")
refresh = c3.selectbox("Refresh", [0.5, 1.0, 2.0, 5.0], index=1, key="monitor.refresh",
                       format_func=lambda s: f"every {s:g} s",
                       help="how often the live view polls the store (the per-step charts are redrawn "
                            f"{CHART_SECONDS:g} s apart at the most often)")

active = by_id[run_id]["status"] in ("queued", "running")
st.fragment(live_view, run_every=refresh if active else None)(run_id, smoothing, active)
