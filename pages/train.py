"""Train: choose data, model, optimizer, schedule and training options; submit; the queue.
Every field is drawn from the one spec (core.spec) by dashboard.forms."""
import dataclasses

import streamlit as st

from core import spec
from core.ensembles import MAX_MEMBERS, submit_seeds
from core.errors import SigscopeError
from core.explore.marks import list_marks, marks_words, with_marks
from core.models import registry
from core.train import steps_per_epoch_for
from dashboard import estimates, figures, forms
from dashboard.engine import engine, quick_start_config
from dashboard.parts import queue_view, save_preset_view
from dashboard.router import require_router

SECTIONS = ["Data", "Model", "Training", "Optimizer and schedule", "Probes", "Run config"]
# The Start bar sticks below Streamlit's header (3.75rem) while the sections scroll under it. Its
# wrapper is the element that can stick (the keyed block is exactly as tall as its wrapper), and
# it needs the page's own background so the fields scrolling under it do not show through.
STICKY_CSS = """<style>[data-testid="stLayoutWrapper"]:has(> .st-key-train-start) {{position: sticky;
top: 3.75rem; z-index: 990; background-color: {background}; border-radius: 0.5rem;}}</style>"""
PAGE_BACKGROUND = {"light": "#ffffff", "dark": "#0e1117"}  # Streamlit's own light and dark themes
ENSEMBLE_KEY = "train.ensemble"  # "Ensemble of N seeds" (Training section); Start reads it in any section


def run_summary(working: dict, summary: dict, steps: int | None) -> str:
    """One line of what Start will train, so the bar says it without opening a section."""
    model = spec.value_at(working, "model.name")
    source = spec.value_at(working, "data.source")
    data = (f"{summary['n_train']} train examples, {len(summary['class_names'])} classes"
            if "n_train" in summary else "data not read yet")
    length = f" · {steps} steps per epoch" if steps else ""
    return f"**{model}** on **{source}** ({data}) · batch {spec.value_at(working, 'train.batch_size')}{length}"


require_router()
st.title("Train")
st.caption("Runs train in the background on this server; watch them on Monitor. "
           "Every choice below becomes one run config (JSON), the same the CLI takes.")

# set through the API each run, so the value outlives the Training section being closed (not drawn)
st.session_state[ENSEMBLE_KEY] = st.session_state.get(ENSEMBLE_KEY, 1)
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

# Start stays in view (a sticky bar over the sections): the run's name, what it will train and the button
start_bar = st.container(border=True, key="train-start")
st.html(STICKY_CSS.format(background=PAGE_BACKGROUND.get(st.context.theme.type or "light", "#ffffff")))
# Only the open section is drawn (a section switch reruns the page): drawing every section's widgets
# made the first paint 2.5-4 s in Chromium; the form keeps the values of the sections not drawn.
data_tab, model_tab, training_tab, optim_tab, probes_tab, config_tab = st.tabs(
    SECTIONS, key="train.section", on_change="rerun")
summary_slot = lr_slot = None

with data_tab:
    if data_tab.open:
        form.section("data.", exclude=("data.augment",))
        summary_slot = st.empty()
        form.augmentations(spec.value_at(form.working, "data.signal"))

kind = spec.value_at(form.working, "data.input_kind")
form.restrict["model.name"] = [n for n in registry.list_models() if registry.spec(n).input_kind == kind]
form.restrict["train.device"] = forms.available_devices()
form.keep_within_choices("model.name")  # the data changed to another input kind while Model was closed
no_model = "" if form.restrict["model.name"] else f"No model in the zoo takes {kind} input; change the data's features."

with model_tab:
    if model_tab.open:
        if no_model:
            st.warning(no_model)
        form.section("model.")

with training_tab:
    if training_tab.open:
        most = forms.most_processes()
        form.restrict["train.processes"] = [1, most]
        if most < 2:  # DDP is offered where the machine holds more than one process
            form.hidden.add("train.processes")
        form.hidden.add("train.epochs")  # drawn in the Start bar: how long to train is decided next to Start
        form.section("train.", exclude=("train.probes.",), columns=4)
        form.hidden.discard("train.epochs")
        seeds_col, seeds_note = st.columns([1, 3], vertical_alignment="bottom")
        seeds_col.number_input("Ensemble of N seeds", min_value=1, max_value=MAX_MEMBERS, step=1, key=ENSEMBLE_KEY,
                               help="Start queues N runs of this config with seeds Seed, Seed+1, …; Classify "
                                    "offers them as one model (the mean of their probabilities)")
        seeds_note.caption("N > 1 trains the same config N times with consecutive seeds and averages them, as "
                           "InceptionTime's paper does with 5: steadier and usually a little more accurate than "
                           "one run, at N times the training time.")

with optim_tab:
    if optim_tab.open:
        form.section("optim.", columns=4)
        form.section("schedule.", columns=4)
        lr_slot = st.empty()

with probes_tab:
    if probes_tab.open:
        st.caption("What Monitor shows while the run trains: gradient norms, dead units and activation statistics "
                   "every so many steps (each probe costs a little training time).")
        form.section("train.probes.", columns=4)

with start_bar:
    name_col, epochs_col, summary_col, button_col = st.columns([3, 1, 5, 2], vertical_alignment="bottom")
    with name_col:
        form.section("name", columns=1)
    with epochs_col:
        form.section("train.epochs", columns=1)
config, problems = form.result()
form.keep()

summary = {}
if config is not None or not any(p.startswith("data.") for p in problems):
    summary = forms.data_summary(form.working["data"])
if "error" in summary:
    problems.append(summary["error"])
if summary_slot is not None:  # the Data section is open
    with summary_slot.container():
        if no_model:
            st.warning(no_model)
        if "error" in summary:
            st.error(f"This data cannot be loaded: {summary['error']}")
        elif summary:
            made = (f" (of them {summary['synthetic']} synthetic voice clips, made when the run starts: minutes "
                    f"the first time)") if summary.get("synthetic") else ""
            st.caption(f"**{summary['n_train']}** train{made} / **{summary['n_val']}** val / "
                       f"**{summary['n_test']}** test examples · input {summary['input_kind']} "
                       f"{summary['input_shape']} · {len(summary['class_names'])} classes: "
                       f"{', '.join(summary['class_names'])}")
if config is not None and "input_shape" in summary:
    try:
        registry.spec(config.model.name).resolve(config.model.hparams, summary["input_shape"])
    except Exception as e:  # noqa: BLE001 - the registry's ConfigError, shown as a reason
        problems.append(str(e))
steps = None
if config is not None and "n_train" in summary:
    steps = steps_per_epoch_for(summary["n_train"], config.train.batch_size)
if steps and lr_slot is not None:  # the Optimizer and schedule section is open
    with lr_slot.container():
        lrs = forms.lr_curve_cached(config.to_json(), steps)
        st.plotly_chart(figures.lr_schedule(lrs, steps, f"Learning rate this config will follow "
                                                        f"({config.train.epochs} epochs × {steps} steps)"),
                        width="stretch", key="train.lr_plot")
        if config.schedule.name == "plateau":
            st.caption("ReduceLROnPlateau lowers the rate when the validation loss stalls; "
                       "that depends on the run, so the curve is drawn flat.")

if config_tab.open:
    with config_tab:
        st.caption("`python -m core train --config run.json` runs the same")
        st.code(forms.config_json(config.to_dict() if config is not None else form.config_dict()), language="json")
        if config is not None:
            save_preset_view("train", config)

seeds = int(st.session_state[ENSEMBLE_KEY])
with start_bar:
    summary_col.caption(run_summary(form.working, summary, steps)
                        + (f" · **ensemble of {seeds} seeds**" if seeds > 1 else ""))
    if config is not None and steps and not problems:  # how long Start will take, and what Monitor will get
        summary_col.caption(estimates.training_time(config.to_json(), summary) + (" per run" if seeds > 1 else "")
                            + " · " + estimates.probe_cadence(config, steps))
    marks = list_marks(engine().store, config.data) if config is not None else []
    if marks and summary_col.checkbox(f"Train with Explore's marks on this data ({marks_words(marks)})", value=True,
                                      key="train.marks", help="windows marked on the Explore page: excluded ones "
                                      "are left out of training and validation, relabelled ones train as the class "
                                      "chosen there; the run's config records them (data.exclude, data.relabel)"):
        config = with_marks(config, marks)
    queued = f"queue these {seeds} runs; they start" if seeds > 1 else "queue this run; it starts"
    if button_col.button("Start training", type="primary", disabled=bool(problems), key="train.submit",
                         width="stretch",
                         help="; ".join(problems) if problems else f"{queued} when a worker is free"):
        try:
            run_ids = submit_seeds(engine().jobs, config, seeds)
        except SigscopeError as e:  # e.g. a seed too large to count N seeds up from
            run_ids = []
            st.error(str(e))
        if run_ids:
            st.session_state["selected_run"] = run_ids[0]
            last = config.train.seed + seeds - 1
            st.success(f"Queued an ensemble of {seeds} runs (seeds {config.train.seed}–{last}): **{run_ids[0]}** … "
                       f"**{run_ids[-1]}**. Classify offers them as one model once two have completed."
                       if seeds > 1 else f"Queued run **{run_ids[0]}**.")
            st.page_link("pages/monitor.py", label="Watch it on Monitor", icon=":material/monitoring:",
                         query_params={"run": run_ids[0]})
    if problems:
        st.error("Fix first:\n" + "\n".join(f"- {p}" for p in problems))

st.subheader("Queue")
queue_view("train")
