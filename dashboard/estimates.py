"""What a run will take, said before a button starts it: its training time (the profiler's
FLOP-based estimate, core.profiling.duration) and its probe cadence (core.train.probes),
cached per config so that a rerun of the page costs nothing."""
from __future__ import annotations

import json

import streamlit as st

from core.config import RunConfig
from core.errors import SigscopeError


def training_time(config_json: str, summary: dict | None = None) -> str:
    """'about 20 s on one CPU core (estimated from its FLOPs; …)' for a run config. `summary`
    is dashboard.forms.data_summary of its data (read here when not given; the Train page
    already has it). The FLOP count is cached per model and shape, so changing epochs or data
    sizes costs nothing."""
    from core.profiling.duration import estimate_training_time
    from dashboard.forms import data_summary

    cfg = RunConfig.from_json(config_json)
    summary = summary if summary is not None else data_summary(cfg.data.to_dict())
    if "error" in summary:
        return f"training time unknown ({summary['error']})"
    shape, classes = tuple(summary["input_shape"]), len(summary["class_names"])
    try:
        flops = _window_flops(cfg.model.name, json.dumps(cfg.model.hparams, sort_keys=True), shape, classes)
        est = estimate_training_time(cfg, shape, classes, summary["n_train"], summary["n_val"], summary["n_test"],
                                     flops=flops)
    except SigscopeError as e:
        return f"training time unknown ({e})"
    return f"{est.text()} (estimated from its FLOPs; preparing the data the first time adds to it)"


@st.cache_data(show_spinner="Counting the model's FLOPs…", max_entries=64)
def _window_flops(model: str, hparams_json: str, input_shape: tuple, num_classes: int) -> int:
    from core.profiling.duration import window_flops

    return window_flops(model, json.loads(hparams_json), input_shape, num_classes)


def probe_cadence(config: RunConfig, steps_per_epoch: int) -> str:
    """'probes every 3 steps (about 50 points), histograms every 8 steps (about 20)' for this run."""
    from core.train.probes import cadence_steps

    probes = config.train.probes
    if not probes.enabled or not probes.probes:
        return "probes off"
    total = steps_per_epoch * config.train.epochs
    every = cadence_steps(probes, "every_n_steps", total)
    hist = cadence_steps(probes, "histogram_every_n_steps", total)
    text = f"probes every {every} step{'s' * (every != 1)} (about {max(1, total // every)} points)"
    if hist > 0:
        text += f", histograms every {hist} step{'s' * (hist != 1)} (about {max(1, total // hist)})"
    return text + ("" if probes.every_n_steps is not None and probes.histogram_every_n_steps is not None
                   else ", scaled to the run's length")
