"""Widgets generated from the registry's typed hyperparameter specs: no page hand-codes
a model's knobs. Keys carry a prefix and the model name, so two models (or two pages)
never share a widget's state."""
from __future__ import annotations

from typing import Any

import streamlit as st

from core.models.registry import HParam, ModelSpec


def hparam_widget(h: HParam, key: str, value: Any | None = None) -> Any:
    """One widget for one hyperparameter; returns the chosen value."""
    value = h.default if value is None else value
    label = h.name.replace("_", " ")
    if h.type == "bool":
        return st.checkbox(label, value=bool(value), help=h.help, key=key)
    if h.type == "choice":
        options = list(h.choices)
        index = options.index(value) if value in options else 0
        return st.selectbox(label, options, index=index, help=h.help, key=key)
    if h.type == "int":
        lo, hi = int(h.low), int(h.high)
        if hi - lo <= 256 and not h.log:
            return st.slider(label, lo, hi, int(value), help=h.help, key=key)
        return int(st.number_input(label, lo, hi, int(value), step=1, help=h.help, key=key))
    lo, hi = float(h.low), float(h.high)
    if h.log:
        return float(st.number_input(label, lo, hi, float(value), format="%.2e", help=h.help, key=key))
    step = (hi - lo) / 100
    return float(st.slider(label, lo, hi, float(value), step=step, help=h.help, key=key))


def hparam_form(spec: ModelSpec, key_prefix: str, values: dict | None = None, columns: int = 2) -> dict:
    """All of a model's hyperparameters as widgets laid out in columns; returns {name: value}."""
    values = values or {}
    cols = st.columns(columns)
    out = {}
    for i, h in enumerate(spec.hparams):
        with cols[i % columns]:
            out[h.name] = hparam_widget(h, f"{key_prefix}.{spec.name}.{h.name}", values.get(h.name))
    return out
