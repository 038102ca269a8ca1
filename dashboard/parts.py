"""Page parts shared by several pages (no engine state here)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.models import registry


@st.cache_data(show_spinner=False)
def zoo_table() -> pd.DataFrame:
    rows = []
    for name in registry.list_models():
        s = registry.spec(name)
        rows.append({"model": name, "input": s.input_kind, "attention": s.has_attention,
                     "hyperparameters": len(s.hparams), "description": s.description})
    return pd.DataFrame(rows)


def input_shape_widgets(spec: registry.ModelSpec, key: str) -> tuple[int, ...]:
    """Input size widgets matching the model's input kind (no batch)."""
    default = spec.default_input
    if spec.input_kind == "spectrogram":
        text = st.text_input("Input (planes, freq, time)", ",".join(map(str, default)), key=key,
                             help="e.g. 4,40,126: log-mel, MFCC, Δ, ΔΔ planes × mel bins × frames")
    else:
        text = st.text_input("Input (channels, time)", ",".join(map(str, default)), key=key,
                             help="e.g. 6,128: accelerometer + gyroscope, 2.56 s at 50 Hz")
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        st.error(f"Input size {text!r}: write whole numbers separated by commas, e.g. {','.join(map(str, default))}")
        return default


@st.cache_data(show_spinner="Profiling…", max_entries=64)
def profile_cached(name: str, hparams: dict, input_shape: tuple, num_classes: int, batch_size: int,
                   optimizer: str, amp: str, grad_checkpointing: bool, measure_latency: bool) -> dict:
    """Profile report as a dict plus the block structure for the diagram; cached per choice."""
    from core.models.describe import block_structure
    from core.profile import profile_model

    report = profile_model(name, hparams=hparams, input_shape=input_shape, num_classes=num_classes,
                           batch_size=batch_size, optimizer=optimizer, amp=amp,
                           grad_checkpointing=grad_checkpointing, measure_latency=measure_latency).to_dict()
    model = registry.create(name, input_shape=input_shape, num_classes=num_classes, **hparams)
    report["blocks"] = block_structure(model)
    return report
