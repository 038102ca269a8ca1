"""Home: what Sigscope is, the engine's status, a one-click quick start, the model zoo."""
import streamlit as st

from dashboard import estimates
from dashboard.engine import engine, quick_start_config
from dashboard.parts import run_label, warm_up, zoo_table
from dashboard.router import require_router

require_router()
warm_up()
st.title("Sigscope")
st.markdown(
    "A workbench for deep learning on 1-D signals — IMU streams and audio. "
    "**Build** a model from a zoo of proven architectures and see its parameters, FLOPs, memory and "
    "latency before you train it; **Train** it in the background; **Monitor** its health live "
    "(gradient norms per layer, dead units, activations); compare finished **Runs**."
)

left, right = st.columns([3, 2])
with left:
    st.subheader("Quick start")
    cfg = quick_start_config()
    st.markdown(f"Train a small **{cfg.model.name}** on the bundled **HAPT** sample (smartphone IMU, "
                f"subjects 1–4, six activities) for {cfg.train.epochs} epochs.")
    st.caption(estimates.training_time(cfg.to_json()))
    if st.button("Train the default model on the bundled data", type="primary", key="home.quick_start"):
        run_id = engine().submit(cfg)
        st.session_state["selected_run"] = run_id
        st.success(f"Queued run **{run_id}**.")
    st.page_link("pages/monitor.py", label="Watch runs on Monitor", icon=":material/monitoring:")
    st.page_link("pages/build.py", label="Size a model on Build", icon=":material/construction:")
    st.page_link("pages/train.py", label="Choose everything on Train", icon=":material/model_training:")


@st.fragment(run_every=2)
def engine_status() -> None:
    s = engine().status()
    st.subheader("Engine")
    c1, c2, c3 = st.columns(3)
    c1.metric("Device", ", ".join(s["devices"]), help=f"{s['workers']} run(s) at a time, each in its own process")
    c2.metric("Running", len(s["running"]))
    c3.metric("Queued", len(s["queued"]))
    for run in s["running"] + s["queued"]:
        st.caption(run_label(run))
    recent = [r for r in engine().store.list_runs() if r["status"] not in ("queued", "running")][:3]
    if recent:
        st.markdown("**Recent runs**")
        for run in recent:
            st.caption(run_label(run))
    if s["recovered"]:
        st.caption(f"{len(s['recovered'])} run(s) left running by an ended process were marked interrupted at start-up.")
    st.caption(f"Runs folder: `{s['runs_dir']}`")


with right:
    engine_status()

st.subheader("Model zoo")
st.dataframe(zoo_table(), hide_index=True, width="stretch",
             column_config={"input": st.column_config.TextColumn(width="medium"),
                            "description": st.column_config.TextColumn(width="large")})
