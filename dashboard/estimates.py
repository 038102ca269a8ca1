"""What a run will take, said before a button starts it: its training time (the profiler's
FLOP-based estimate, core.profiling.duration) and its probe cadence (core.train.probes),
cached per config so that a rerun of the page costs nothing."""
from __future__ import annotations

import json

import streamlit as st

from core.config import RunConfig
from core.errors import SigscopeError


def training_time(config_json: str, n_train: int | None = None, n_val: int = 0, n_test: int = 0,
                  input_shape: tuple | None = None, num_classes: int | None = None) -> str:
    """'about 20 s on one CPU core (estimated from its FLOPs; …)' for a run config. The data's
    sizes and shape are loaded when not given (the Train page already has them). The FLOP
    count is cached per model and shape, so changing epochs or data sizes costs nothing."""
    from core.profiling.duration import estimate_training_time

    cfg = RunConfig.from_json(config_json)
    try:
        if n_train is None or input_shape is None or num_classes is None:
            n_train, n_val, n_test, input_shape, num_classes = _data_sizes(json.dumps(cfg.data.to_dict()))
        flops = _window_flops(cfg.model.name, json.dumps(cfg.model.hparams, sort_keys=True), tuple(input_shape),
                              num_classes)
        est = estimate_training_time(cfg, input_shape, num_classes, n_train, n_val, n_test, flops=flops)
    except SigscopeError as e:
        return f"training time unknown ({e})"
    return f"{est.text()} (estimated from its FLOPs; preparing the data the first time adds to it)"


@st.cache_data(show_spinner="Reading the data…", max_entries=16)
def _data_sizes(data_json: str) -> tuple:
    from core.config import DataConfig
    from core.data import load

    data = load(DataConfig.from_dict(json.loads(data_json)))
    return len(data.train), len(data.val), len(data.test), tuple(data.input_shape), len(data.class_names)


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
