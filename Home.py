"""Sigscope dashboard entry: the router. Pages live in pages/, one file each."""
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent
# a bundled favicon: a :material/...: page icon makes the browser fetch it from an outside host
st.set_page_config(page_title="Sigscope", page_icon=str(ROOT / "dashboard" / "assets" / "favicon.png"), layout="wide")
analyze = [st.Page("pages/runs.py", title="Runs", icon=":material/table_view:")]
if (ROOT / "pages" / "classify.py").exists():
    analyze.append(st.Page("pages/classify.py", title="Classify", icon=":material/search:"))
if (ROOT / "pages" / "explore.py").exists():
    analyze.append(st.Page("pages/explore.py", title="Explore", icon=":material/scatter_plot:"))
pages = {
    "Sigscope": [st.Page("pages/home.py", title="Home", icon=":material/home:", default=True)],
    "Design": [st.Page("pages/build.py", title="Build", icon=":material/construction:")],
    "Train": [st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
              st.Page("pages/sweep.py", title="Sweep", icon=":material/tune:"),
              st.Page("pages/monitor.py", title="Monitor", icon=":material/monitoring:")],
    "Analyze": analyze,
    "Ship": [st.Page("pages/deploy.py", title="Deploy", icon=":material/rocket_launch:")],
}
st.navigation(pages).run()
