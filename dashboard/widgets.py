"""Widgets generated from the typed specs: a zoo model's hyperparameters drawn from its
registry spec (each a core.spec.Param, drawn by dashboard.forms.param_widget)."""
from __future__ import annotations

import streamlit as st

from core.models.registry import ModelSpec
from dashboard.forms import param_widget, widget_key


def hparam_form(spec: ModelSpec, prefix: str, values: dict | None = None, columns: int = 2) -> dict:
    """All of a model's hyperparameters as widgets laid out in columns; returns {name: value}.
    Keys are scoped by the model, so two models never share a widget's state."""
    values = values or {}
    cols = st.columns(columns)
    out = {}
    for i, h in enumerate(spec.hparams):
        with cols[i % columns]:
            out[h.name] = param_widget(h, widget_key(prefix, f"model.hparams.{h.name}", spec.name),
                                       values.get(h.name, h.default))
    return out
