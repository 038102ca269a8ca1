"""Train: choose data, model, optimizer, schedule and training options; submit; the queue.
Every field is drawn from the one spec (core.spec) by dashboard.forms."""
import dataclasses

import streamlit as st

from core import spec
from core.models import registry
from core.train import steps_per_epoch_for
from dashboard import figures, forms
from dashboard.engine import engine, quick_start_config
from dashboard.parts import queue_view, save_preset_view
from dashboard.router import require_router

require_router()
st.title("Train")
st.caption("Runs train in the background on this server; watch them on Monitor. "
           "Every choice below becomes one run config (JSON), the same the CLI takes.")

handoff = st.session_state.pop("handoff.run", None)  # from Build's "Train this model" or Runs' "Edit and re-run"
if handoff:
    forms.fill_form("train", handoff["config"])
    st.session_state["train.preset"] = forms.NO_PRESET
    st.session_state["train.note"] = handoff.get("note", "")
form = forms.RunForm("train", base=dataclasses.replace(quick_start_config(), name=""))
if st.session_state.get("train.note"):
    st.info(st.session_state["train.note"], icon=":material/input:")
if forms.preset_section("train"):
    st.session_state.pop("train.note", None)

with st.container(border=True):
    st.subheader("Data")
    form.section("data.", exclude=("data.augment",))
    summary_slot = st.empty()
    form.augmentations(spec.value_at(form.working, "data.signal"))

with st.container(border=True):
    st.subheader("Model")
    kind = spec.value_at(form.working, "data.input_kind")
    form.restrict["model.name"] = [n for n in registry.list_models() if registry.spec(n).input_kind == kind]
    if not form.restrict["model.name"]:
        st.warning(f"No model in the zoo takes {kind} input; change the data's features.")
    form.section("model.")

with st.container(border=True):
    st.subheader("Training")
    form.restrict["train.device"] = forms.available_devices()
    most = forms.most_processes()
    form.restrict["train.processes"] = [1, most]
    if most < 2:  # DDP is offered where the machine holds more than one process
        form.hidden.add("train.processes")
    form.section("train.", columns=4)

with st.container(border=True):
    st.subheader("Optimizer and schedule")
    form.section("optim.", columns=4)
    form.section("schedule.", columns=4)
    lr_slot = st.empty()

form.section("name", columns=1)
config, problems = form.result()

summary = {}
if config is not None or not any(p.startswith("data.") for p in problems):
    summary = forms.data_summary(form.working["data"])
with summary_slot.container():
    if "error" in summary:
        st.error(f"This data cannot be loaded: {summary['error']}")
        problems.append(summary["error"])
    elif summary:
        made = (f" (of them {summary['synthetic']} synthetic voice clips, made when the run starts: minutes the "
                f"first time)") if summary.get("synthetic") else ""
        st.caption(f"**{summary['n_train']}** train{made} / **{summary['n_val']}** val / **{summary['n_test']}** test "
                   f"examples · input {summary['input_kind']} {summary['input_shape']} · "
                   f"{len(summary['class_names'])} classes: {', '.join(summary['class_names'])}")
if config is not None and "input_shape" in summary:
    try:
        registry.spec(config.model.name).resolve(config.model.hparams, summary["input_shape"])
    except Exception as e:  # noqa: BLE001 - the registry's ConfigError, shown as a reason
        problems.append(str(e))
if config is not None and "n_train" in summary:
    steps = steps_per_epoch_for(summary["n_train"], config.train.batch_size)
    with lr_slot.container():
        lrs = forms.lr_curve_cached(config.to_json(), steps)
        st.plotly_chart(figures.lr_schedule(lrs, steps, f"Learning rate this config will follow "
                                                        f"({config.train.epochs} epochs × {steps} steps)"),
                        width="stretch", key="train.lr_plot")
        if config.schedule.name == "plateau":
            st.caption("ReduceLROnPlateau lowers the rate when the validation loss stalls; "
                       "that depends on the run, so the curve is drawn flat.")

with st.expander("Run config (JSON) — `python -m core train --config run.json` runs the same"):
    st.code(forms.config_json(config.to_dict() if config is not None else form.config_dict()), language="json")

if st.button("Start training", type="primary", disabled=bool(problems), key="train.submit",
             help="; ".join(problems) if problems else "queue this run; it starts when a worker is free"):
    run_id = engine().submit(config)
    st.session_state["selected_run"] = run_id
    st.success(f"Queued run **{run_id}**.")
    st.page_link("pages/monitor.py", label="Watch it on Monitor", icon=":material/monitoring:",
                 query_params={"run": run_id})
if problems:
    st.error("Fix first:\n" + "\n".join(f"- {p}" for p in problems))
if config is not None:
    save_preset_view("train", config)

st.subheader("Queue")
queue_view("train")
