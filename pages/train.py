"""Train: choose data, model, optimizer, schedule and training options; submit; the queue."""
import streamlit as st

from core.config import RunConfig
from core.errors import ConfigError
from core.models import registry
from core.train import steps_per_epoch_for
from dashboard import figures, forms
from dashboard.engine import engine
from dashboard.parts import queue_view
from dashboard.router import require_router

require_router()
st.title("Train")
st.caption("Runs train in the background on this server; watch them on Monitor. "
           "Every choice below becomes one run config (JSON), the same the CLI takes.")

handoff = st.session_state.get("handoff.model")  # set by Build's "Train this model"
preset = forms.preset_section("train")  # choosing one fills every field below
base = preset.config if preset else None

with st.container(border=True):
    st.subheader("Data")
    data = forms.data_section("train", base.data if base else None)
    summary = forms.data_summary(data.to_dict())
    if "error" in summary:
        st.error(f"This data cannot be loaded: {summary['error']}")
    else:
        st.caption(f"**{summary['n_train']}** train / **{summary['n_val']}** val / **{summary['n_test']}** test "
                   f"examples · input {summary['input_kind']} {summary['input_shape']} · "
                   f"{len(summary['class_names'])} classes: {', '.join(summary['class_names'])}")

with st.container(border=True):
    st.subheader("Model")
    model, model_problem = forms.model_section("train", summary.get("input_kind"), summary.get("input_shape"), handoff)
    if model_problem:
        st.error(f"This combination is refused: {model_problem}")
    spec = registry.spec(model.name)

with st.container(border=True):
    st.subheader("Training")
    train = forms.train_section("train", spec.supports_checkpointing, base.train if base else None)

with st.container(border=True):
    st.subheader("Optimizer and schedule")
    optim = forms.optim_section("train", base.optim if base else None)
    schedule = forms.schedule_section("train", train.epochs, base.schedule if base else None)
    steps_per_epoch = steps_per_epoch_for(summary.get("n_train", 0), train.batch_size)
    problems = [p for p in (summary.get("error"), model_problem) if p]
    draft = RunConfig(data=data, model=model, optim=optim, schedule=schedule, train=train)
    try:
        lrs = forms.lr_curve_cached(draft.to_json(), steps_per_epoch)
        st.plotly_chart(figures.lr_schedule(lrs, steps_per_epoch,
                                            f"Learning rate this config will follow ({train.epochs} epochs × "
                                            f"{steps_per_epoch} steps)"), width="stretch", key="train.lr_plot")
        if schedule.name == "plateau":
            st.caption("ReduceLROnPlateau lowers the rate when the validation loss stalls; "
                       "that depends on the run, so the curve is drawn flat.")
    except ConfigError as e:  # a schedule the engine refuses is refused here, before training
        problems.append(str(e))
        st.error(f"This schedule is refused: {e}")

name = st.text_input("Run name (optional)", "", key="train.name", placeholder=f"{model.name} on {data.source}")
config = RunConfig(name=name.strip(), data=data, model=model, optim=optim, schedule=schedule, train=train)

with st.expander("Run config (JSON) — `python -m core train --config run.json` runs the same"):
    st.code(config.to_json(), language="json")

if st.button("Start training", type="primary", disabled=bool(problems), key="train.submit",
             help="; ".join(problems) if problems else "queue this run; it starts when a worker is free"):
    run_id = engine().submit(config)
    st.session_state["selected_run"] = run_id
    st.success(f"Queued run **{run_id}**.")
    st.page_link("pages/monitor.py", label="Watch it on Monitor", icon=":material/monitoring:")
if problems:
    st.caption("Fix first: " + "; ".join(problems))

st.subheader("Queue")
queue_view("train")
