"""Page parts shared by several pages (no engine state here)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.compare import dataset_key
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
    """Input size widgets matching the model's input kind (no batch), keyed per model."""
    key = f"{key}.{spec.name}"
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


@st.cache_resource
def warm_up():
    """Import, in the background while a person reads Home, what the first profile on Build,
    the first learning-rate curve on Train and the first styled table on Runs import (torch's
    compiler stack, pulled in by the first optimizer, and pandas' Styler: seconds on a small
    machine). Once per server, after Home has painted (an import holds the interpreter)."""
    import threading
    import time

    def imports() -> None:
        time.sleep(2.0)
        import pandas.io.formats.style  # noqa: F401
        import torch._dynamo  # noqa: F401
        import core.models.describe  # noqa: F401
        import core.profile  # noqa: F401
        import core.train  # noqa: F401

    thread = threading.Thread(target=imports, name="sigscope-warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_resource
def latency_jobs():
    """The one background latency measurer of this server (dashboard.build_parts)."""
    from dashboard.build_parts import BackgroundLatency
    return BackgroundLatency()


# ---- runs: labels, status, progress, the queue ----------------------------------------------
def run_label(run: dict) -> str:
    """'quick start · 20250101-120000-3fa9c2 · running' for pickers and tables."""
    model = run["config"].get("model", {}).get("name", "?")
    name = run.get("name") or f"{model} on {dataset_key(run)}"
    return f"{name} · {run['id']} · {run['status']}"


def status_banner(run: dict) -> None:
    """The run's status in plain words, with the message when it did not complete."""
    status, error = run["status"], run.get("error") or ""
    if error.lower().startswith(status + ":"):  # "interrupted: the process ..." -> "the process ..."
        error = error[len(status) + 1:].strip()
    if status == "completed":
        st.success("Completed." + (f" {error}" if error else ""), icon=":material/check_circle:")
    elif status == "running":
        processes = int(run.get("processes") or 1)
        how = (f" in {processes} processes (DDP)" if processes > 1 else "") + \
              (f", {run['threads']} thread(s) each" if run.get("threads") else "")
        st.info(f"Running on {run.get('device') or 'its device'}{how}.", icon=":material/play_circle:")
    elif status == "queued":
        held = run.get("held")
        st.info(f"Queued: {held}" if held else "Queued: it starts when a worker is free.",
                icon=":material/hourglass_top:")
    elif status == "pruned":
        sweep = f" (trial {run['trial']} of sweep {run['study']})" if run.get("study") else ""
        st.warning(f"Pruned by its sweep{sweep}: {error or 'stopped early'}", icon=":material/content_cut:")
    elif status == "diverged":
        st.error(f"Diverged: {error or 'the loss became NaN/Inf'}", icon=":material/error:")
    elif status == "failed":
        st.error(f"Failed: {error or 'no message recorded'}", icon=":material/cancel:")
    elif status == "cancelled":
        st.warning(f"Cancelled: {error or 'stopped on request'}", icon=":material/stop_circle:")
    elif status == "interrupted":
        st.warning(f"Interrupted: {error or 'the process that ran it ended'}", icon=":material/warning:")


def progress_bar(run: dict) -> None:
    """Progress bar with step, epoch, elapsed time and ETA."""
    from dashboard.series import human_seconds, progress

    p = progress(run)
    total = f" / {p['total_steps']}" if p["total_steps"] else ""
    epochs = f" / {p['total_epochs']}" if p["total_epochs"] else ""
    eta = f" · ETA {human_seconds(p['eta'])}" if p["eta"] is not None else ""
    text = f"step {p['step']}{total} · epoch {p['epoch']}{epochs} · {human_seconds(p['elapsed'])} elapsed{eta}"
    st.progress(p["fraction"] if run["status"] != "completed" else 1.0, text=text)


@st.fragment(run_every=2)
def queue_view(key: str) -> None:
    """Queued and running runs of every process, newest last, each with a cancel button."""
    from dashboard.engine import engine

    eng = engine()
    active = list(reversed(eng.store.list_runs(("queued", "running"))))
    if not active:
        st.caption("Nothing queued or running.")
        return
    for run in active:
        with st.container(border=True):
            left, right = st.columns([5, 1])
            with left:
                st.markdown(f"**{run_label(run)}**")
                if run["status"] == "running":
                    progress_bar(run)
                elif run.get("held"):
                    st.caption(run["held"])
            if right.button("Cancel", key=f"{key}.cancel.{run['id']}", help="stops after the current step; "
                            "the last checkpoint is kept"):
                st.toast(eng.cancel(run["id"]))


# ---- presets and resume ---------------------------------------------------------------------
def save_preset_view(key: str, config) -> None:
    """"Save as preset": the form's config becomes a named preset of the user's (listed with
    the shipped ones on Train and by `python -m core presets`)."""
    from core.errors import SigscopeError
    from core.presets import save_preset

    with st.expander("Save these settings as a preset"):
        c1, c2 = st.columns([1, 2])
        name = c1.text_input("Preset name", key=f"{key}.save.name", placeholder="my_hapt_resnet",
                             help="lower-case letters, digits, _ or -; the CLI's --preset NAME")
        title = c2.text_input("Title", key=f"{key}.save.title", placeholder="what a person reads in the list")
        description = st.text_input("Description", key=f"{key}.save.description")
        if st.button("Save preset", key=f"{key}.save.button", disabled=not name.strip()):
            try:
                preset = save_preset(name.strip(), config, title=title, description=description)
            except SigscopeError as e:
                st.error(str(e))
            else:
                st.success(f"Saved preset **{preset.title}** ({preset.name}): it is in the preset list now. "
                           f"CLI: `python -m core train --preset {preset.name}`")


RESUMABLE = ("cancelled", "interrupted", "failed")


def resume_view(run: dict, key: str) -> None:
    """Resume a stopped run from its last checkpoint, optionally for more epochs."""
    from pathlib import Path

    from core.errors import SigscopeError
    from dashboard.engine import engine

    if run["status"] not in RESUMABLE:
        return
    last = Path(run.get("run_dir") or "") / "checkpoints" / "last.pt"
    if not last.is_file():
        st.caption("No checkpoint to resume from (it stopped before its first epoch ended); "
                   "Edit and re-run starts it again.")
        return
    planned = int((run["config"].get("train") or {}).get("epochs") or 1)
    done = int(run.get("epoch") or 0)
    c1, c2 = st.columns([1, 2])
    epochs = c1.number_input("Train to epoch", min_value=max(1, done + 1), max_value=100_000,
                             value=max(planned, done + 1), key=f"{key}.resume_epochs",
                             help="a resumed run carries on from its last checkpoint; only epochs, device and "
                                  "probe cadence may change")
    if c2.button(f"Resume from the last checkpoint (epoch {done})", key=f"{key}.resume", type="primary"):
        try:
            overrides = {"train.epochs": int(epochs)} if int(epochs) != planned else None
            engine().jobs.resume(run["id"], overrides=overrides)
        except SigscopeError as e:
            st.error(str(e))
        else:
            st.toast(f"Resuming {run['id']} to epoch {int(epochs)}")
            st.rerun()
