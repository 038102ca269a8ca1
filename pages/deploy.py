"""Deploy: export a trained run as ONNX / PyTorch artifacts and int8 variants, see what each
costs and whether it still classifies alike, and download the files and the standalone bundle."""
import streamlit as st

from core.demo import DEMO_NAMES, bundle_manifest, ensure_bundled
from core.errors import SigscopeError
from dashboard import deploy_parts as parts
from dashboard.classify_parts import classifiable_runs
from dashboard.engine import engine
from dashboard.forms import data_summary
from dashboard.parts import run_label
from dashboard.router import require_router

require_router()
st.title("Deploy")
st.caption("Export a trained run to ONNX and PyTorch, add int8 variants, compare their size, speed and accuracy "
           "side by side, and download them or a standalone bundle.")
store = engine().store
runs = classifiable_runs(store)
if not runs:
    st.info("No finished run with a checkpoint yet: nothing to export. Train one on Train, or add the demo models.")
    bundled = [n for n in DEMO_NAMES if bundle_manifest(n) is not None]
    if bundled and st.button(f"Add the demo models ({', '.join(bundled)})", key="deploy.demo", icon=":material/bolt:",
                             help="install their committed weights as completed runs (instant)"):
        ensure_bundled(store, tuple(bundled))
        st.rerun()
    st.page_link("pages/train.py", label="Open Train", icon=":material/model_training:")
    st.stop()

by_id = {r["id"]: r for r in runs}
run_id = st.selectbox("Run", list(by_id), key="deploy.run", format_func=lambda i: run_label(by_id[i]),
                      help="completed runs with a checkpoint; the best checkpoint is exported")
run = by_id[run_id]
summary = data_summary(run["config"]["data"])
n_train = summary.get("n_train") if "error" not in summary else None
st.caption(f"{run['config']['model']['name']} on {run['config']['data']['source']}"
           + (f" · {n_train} training / {summary['n_test']} test windows" if n_train else ""))

jobs = parts.export_jobs(store)
job = jobs.latest(run_id)
running = job is not None and not job.done.is_set()
with st.container(border=True):
    choices = parts.choices_form(run_id, n_train)
    if st.button("Export", key="deploy.export", type="primary", icon=":material/rocket_launch:", disabled=running,
                 help="an export of this run is under way" if running else
                 "export, check parity, quantize and measure in the background; the page stays usable"):
        jobs.start(run_id, run["run_dir"], choices)
        st.rerun()  # redraw with the button disabled and the progress shown
if running:
    parts.progress_view(jobs, run_id)

try:
    saved = parts.saved_report(run["run_dir"])
except SigscopeError as e:  # a damaged report.json is a message, not a crash
    st.error(str(e), icon=":material/error:")
    saved = None
if job is not None and job.error and (saved is None or job.finished_at >= saved.made_at):
    st.error(f"Could not export: {job.error}", icon=":material/error:")
if saved is not None:
    try:
        parts.report_view(saved, run.get("name") or run_id)
    except (KeyError, TypeError, ValueError) as e:  # a report.json of another Sigscope version
        st.error(f"{saved.path} does not read as an export report ({type(e).__name__}: {e}); export the run again",
                 icon=":material/error:")
elif not running:
    st.info("This run has not been exported yet: pick the formats and int8 variants above and press Export.")
