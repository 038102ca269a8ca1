"""Sigscope dashboard entry: the router. Pages live in pages/, one file each."""
import streamlit as st

st.set_page_config(page_title="Sigscope", page_icon="〰️", layout="wide")

pages = {
    "Sigscope": [st.Page("pages/home.py", title="Home", icon="🏠", default=True)],
    "Design": [st.Page("pages/build.py", title="Build", icon="🧱")],
}
st.navigation(pages).run()
