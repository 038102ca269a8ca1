"""Build's parts without Streamlit: the run config a sized model is handed over as, and the
measured latency that runs in the background."""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

from core import presets, spec
from core.errors import SigscopeError
from core.presets import DataSetup


def handoff_config(model: str, hparams: dict, knobs: dict, setup: DataSetup | None, shape: tuple) -> dict:
    """{"config": a run config dict, "note": what was carried and what had to change}.

    The model and its hyperparameters, and Build's batch size, optimizer, precision and
    checkpointing go as chosen; the data is the setup Build sized it for (with the rest of its
    preset's config when it came from one). A custom shape has no data behind it, so the first
    data setup that fits the model's input kind is taken instead, and the note says so."""
    from core.models import registry
    from dashboard.engine import quick_start_config

    kind = registry.spec(model).input_kind
    changed = []
    if setup is None:
        fitting = presets.data_setups(kind)
        if not fitting:
            raise SigscopeError(f"no data setup gives {kind} input; Train cannot run {model} yet")
        setup = fitting[0]
        changed.append(f"Build sized it for a custom input {tuple(shape)}; Train needs real data, so it uses "
                       f"{setup.label}")
    config = (presets.get(setup.preset).config if setup.preset else quick_start_config()).to_dict()
    config["name"] = ""
    config["data"] = setup.data.to_dict()
    config["model"] = {"name": model, "hparams": dict(hparams)}
    for key, value in knobs.items():
        spec._set(config, key, value)
    problems = spec.problems(config)
    if problems:
        changed.append("Train lists what to fix first: " + problems[0].message)
    note = f"From Build: **{model}** with your hyperparameters, on **{setup.label}**."
    if changed:
        note += " " + "; ".join(changed) + "."
    return {"config": config, "note": note}


class BackgroundLatency:
    """Measured latency runs real forward passes for seconds, so it runs in one worker thread
    and a rerun never waits for it; each choice is measured once and kept (the newest
    `kept`). Shared by every session (one machine, one measurement at a time)."""

    def __init__(self, kept: int = 64) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sigscope-latency")
        self._jobs: OrderedDict[str, Future] = OrderedDict()
        self._lock = threading.Lock()
        self._kept = kept

    @staticmethod
    def _key(args: dict) -> str:
        return json.dumps(args, sort_keys=True, default=str)

    def request(self, args: dict) -> None:
        """Queue a measurement for these core.profile.profile_model arguments (once per choice)."""
        key = self._key(args)
        with self._lock:
            if key in self._jobs:
                self._jobs.move_to_end(key)
                return
            self._jobs[key] = self._pool.submit(_measure, dict(args))
            while len(self._jobs) > self._kept:
                self._jobs.popitem(last=False)

    def result(self, args: dict) -> dict | None:
        """The latency dict (estimated and measured ms) once measured, else None; a failed
        measurement raises its error."""
        with self._lock:
            job = self._jobs.get(self._key(args))
        if job is None or not job.done():
            return None
        return job.result()


def _measure(args: dict) -> dict:
    from core.profile import profile_model
    return profile_model(measure_latency=True, **args).to_dict()["latency_ms"]
