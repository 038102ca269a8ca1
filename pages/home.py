"""Home: what Sigscope is and the model zoo at a glance."""
import streamlit as st

from dashboard.parts import zoo_table

st.title("Sigscope")
st.markdown(
    "A workbench for deep learning on 1-D signals — IMU streams and audio. "
    "Build a model from a zoo of proven architectures, see its parameters, FLOPs, memory and "
    "latency before you train it, then train, watch and classify."
)
st.subheader("Model zoo")
st.dataframe(zoo_table(), hide_index=True, width="stretch")
st.page_link("pages/build.py", label="Open Build to size a model", icon="🧱")
