"""Sweep: define a cost-aware Optuna search over the run spec, start it as a background
process, watch its trials live, stop or resume it, train any trial's config as a full run."""
import json

import streamlit as st

from core import sweep
from core.errors import ConfigError
from dashboard import sweep_parts as parts
from dashboard.engine import engine
from dashboard.forms import most_processes, param_widget
from dashboard.router import require_router

require_router()
st.title("Sweep")
st.caption("Search hyperparameters with Optuna. Every sampled config is checked and priced before it trains: "
           "invalid or over-budget configs are refused in milliseconds. Each trained trial is an ordinary run "
           "(watch it on Monitor); bad trials stop early.")
eng = engine()
known = [s["name"] for s in reversed(sweep.list_studies())]
asked = st.query_params.get("study")
if "sweep.goto" in st.session_state:  # set by Start before the rerun: a widget's state is set before it is drawn
    st.session_state["sweep.mode"] = st.session_state.pop("sweep.goto")
mode = st.segmented_control("View", ["Watch a sweep", "New sweep"], key="sweep.mode",
                            default="Watch a sweep" if known or asked else "New sweep", required=True,
                            label_visibility="collapsed")

if mode == "New sweep":
    choices = parts.base_choices()
    label = st.selectbox("Start from", list(choices), key="sweep.base",
                         help="a sweep preset (base config, space and settings) or a run preset as the base config")
    start = parts.start_spec(*choices[label])
    preset = sweep.sweep_presets().get(choices[label][1], {}) if choices[label][0] == "sweep" else {}
    if preset.get("description"):
        st.caption(preset["description"])
    prefix = f"sweep.{choices[label][1]}"
    with st.container(border=True):
        st.subheader("What varies")
        st.caption("Tick a value to vary it and set its range; everything else stays at the base config. "
                   "Epochs are fixed per trial (below).")
        space = parts.space_editor(prefix, start)
    with st.container(border=True):
        st.subheader("Objectives, budgets and search")
        values, problems = parts.settings_form(prefix, start.settings, max(1, most_processes()))
    spec = None
    if not problems:
        spec = sweep.SweepSpec(start.base, space, sweep.parse_settings(values))
        dims, space_problems = sweep.resolved_dims(spec)
        problems += space_problems
    if spec is not None and not problems:
        with st.container(border=True):
            st.subheader("The space before anything trains")
            check = parts.space_check(json.dumps(spec.to_dict(), sort_keys=True, default=str), 32)
            parts.show_space_check(check)
            if check.get("valid") and not check.get("fits"):
                problems.append("no sampled config meets the budget: raise it or narrow the space")
    name = st.text_input("Study name", value="", placeholder="default: MODEL-DATA-TIME", key="sweep.name")
    if problems:
        st.error("Fix first:\n" + "\n".join(f"- {p}" for p in problems))
    if st.button("Start sweep", type="primary", disabled=bool(problems), key="sweep.start"):
        try:
            study = sweep.create_study(spec, name or None)
            sweep.start_worker(eng.store, study, workers=spec.settings.workers)
        except ConfigError as e:
            st.error(str(e))
        else:
            st.query_params["study"] = study
            st.session_state["sweep.watch"] = study
            st.session_state["sweep.goto"] = "Watch a sweep"
            st.rerun()
    st.stop()

if not known:
    st.info("No sweep yet: choose **New sweep** above, or run `python -m core sweep --help`.")
    st.stop()
if asked in known and st.session_state.get("sweep.watch") != asked and "sweep.watch" not in st.session_state:
    st.session_state["sweep.watch"] = asked
if st.session_state.get("sweep.watch") not in known:
    st.session_state["sweep.watch"] = asked if asked in known else known[0]
name = st.selectbox("Study", known, key="sweep.watch")
st.query_params["study"] = name


@st.fragment(run_every=3)
def watch(name: str) -> None:
    study, spec = sweep.load(name)
    row = eng.store.get_sweep(name, sweep.default_storage())
    alive = sweep.worker_alive(row)
    rows = sweep.trials(name, study=study)
    info = sweep.summary(name, rows=rows, spec=spec)
    counts = info["trials"]
    done = counts["complete"] + counts["pruned"] + counts["failed"] - sum(1 for r in rows if r["retried"])
    s = spec.settings
    top = st.columns([3, 1, 1])
    state = ("stopping" if sweep.stop_requested(study) and alive else "running" if alive else
             (row or {}).get("status", "not started here"))
    top[0].progress(min(1.0, done / max(1, s.trials)),
                    text=f"{done} of {s.trials} trials · {state} · " + ", ".join(
                        f"{n} {k}" for k, n in counts.items() if n))
    if alive and top[1].button("Stop", key="sweep.stop", help="running trials stop (and are queued again for a "
                                                              "resume); finished trials stay"):
        sweep.request_stop(name, store=eng.store)
        st.rerun(scope="fragment")
    if not alive and sweep.wants_more(study, s) and top[1].button("Resume", key="sweep.resume", type="primary"):
        sweep.start_worker(eng.store, name, workers=s.workers)
        st.rerun(scope="fragment")
    with top[2].popover("Change trials", help="change the study's trial budget: more for a study that ran out, fewer to "
                                       "end it sooner; a running worker picks it up at its next heartbeat"):
        trials_param = next(p for p in sweep.settings_params() if p.name == "trials")
        wanted = param_widget(trials_param, f"sweep.budget.{name}", s.trials)
        if st.button("Set the budget", key="sweep.set_budget", disabled=wanted == s.trials):
            sweep.set_trials(name, None, int(wanted))
            st.rerun()
    objectives = ", ".join(f"{m} ({g})" for m, g in s.objectives())
    budgets = "; ".join(f"{sweep.COSTS[c][0]} ≤ {v:g}" for c, v in s.budgets().items()) or "none"
    st.caption(f"Objectives: {objectives} · budgets: {budgets} · sampler {s.sampler}, pruner {s.pruner}, "
               f"{s.epochs} epochs per trial, {s.workers} at once")
    best = info["best"]
    if best:
        st.success(f"Best so far: trial {best['number']}, {s.metric} = {best['value']:.4g}", icon=":material/star:")
    parts.trial_table(rows, spec, key=f"sweep.table.{name}")
    shown = parts.study_figures(study, spec, rows)
    tabs = st.tabs(list(shown))
    for tab, (title, fig) in zip(tabs, shown.items()):
        with tab:
            if isinstance(fig, str):
                st.caption(fig)
            else:
                st.plotly_chart(fig, width="stretch", key=f"sweep.fig.{title}")


watch(name)

with st.expander("Train this config: a full run from any trial"):
    study, spec = sweep.load(name)
    rows = sweep.trials(name, study=study)
    numbers = [r["number"] for r in rows if r["overrides"] and r["state"] != "waiting"]
    if not numbers:
        st.caption("No trial has a config yet.")
    else:
        best = sweep.summary(name, rows=rows, spec=spec)["best"]
        c = st.columns([2, 1, 1])
        number = c[0].selectbox("Trial", numbers, index=numbers.index(best["number"]) if best else 0,
                                key="sweep.train_trial")
        from core.config import RunConfig
        epochs = c[1].number_input("Epochs", 1, 100_000, RunConfig.from_dict(spec.base).train.epochs,
                                   key="sweep.train_epochs")
        if c[2].button("Train it", key="sweep.train", type="primary"):
            run_id = eng.submit(sweep.best_config(name, None, number, int(epochs)))
            st.success(f"Queued run **{run_id}**.")
            st.page_link("pages/monitor.py", label="Watch it on Monitor", icon=":material/monitoring:",
                         query_params={"run": run_id})
