"""Streamlit-side helpers: engine singleton, widgets built from specs, plotly figures."""
