"""The Sweep page's parts: the space editor drawn from the spec, the settings form, the
space check, the live trial table and the study's figures (Optuna's plotly ones where they
fit). Every choice comes from core.sweep / core.spec; nothing here lists options itself."""
from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from core import spec as typed
from core import sweep
from core.config import RunConfig
from dashboard.forms import param_widget

SECTIONS = (("model.", "Model"), ("optim.", "Optimizer"), ("train.", "Training"), ("schedule.", "Schedule"),
            ("data.", "Data and augmentation"))


# ---- defining a sweep ------------------------------------------------------------------------------
def base_choices() -> dict[str, tuple[str, Any]]:
    """label -> ("sweep", name) for sweep presets, ("run", name) for run presets as bases."""
    from core.presets import list_presets

    out: dict[str, tuple[str, Any]] = {}
    for name, data in sweep.sweep_presets().items():
        out[f"Sweep preset: {data.get('title', name)}"] = ("sweep", name)
    for p in list_presets():
        out[f"Run preset: {p.title}"] = ("run", p.name)
    return out


def start_spec(kind: str, name: str) -> sweep.SweepSpec:
    """The sweep a choice of base starts from: a sweep preset as it is, or a run preset with
    its model's hyperparameters and the learning rate at default ranges."""
    if kind == "sweep":
        return sweep.preset_spec(name)
    from core.presets import get
    base = get(name).config
    keys = [e.key for e in sweep.choosable(base) if e.key.startswith("model.hparams.")][:4] + ["optim.lr"]
    return sweep.SweepSpec(base.to_dict(), sweep.parse_space(keys), sweep.SweepSettings())


def space_editor(prefix: str, spec: sweep.SweepSpec) -> dict[str, sweep.Dim]:
    """A tick and a range (or the allowed choices) for every choice the base config has;
    returns the ticked ones as the space. Model hyperparameters scoped to one model (a
    preset varying model.name) are shown as given."""
    base = RunConfig.from_dict(spec.base)
    space: dict[str, sweep.Dim] = {}
    entries = sweep.choosable(base)
    scoped = {k: d for k, d in spec.space.items() if d.models}
    for start, title in SECTIONS:
        group = [e for e in entries if e.key.startswith(start)]
        if not group:
            continue
        ticked = sum(1 for e in group if e.key in spec.space)
        with st.expander(f"{title} · {ticked} of {len(group)} varied" if ticked else f"{title}",
                         expanded=bool(ticked) and start in ("model.", "optim.", "train.")):
            for entry in group:
                dim = _dim_row(prefix, entry, spec.space.get(entry.key), spec.base)
                if dim is not None:
                    space[entry.key] = dim
    drawn = {e.key for e in entries}
    for key, dim in scoped.items():
        if key not in drawn:  # another model's hyperparameter: no row for it on this base
            space[key] = dim
    if scoped:
        st.caption("Per-model ranges from the preset: " + ", ".join(
            f"`{k}` ({', '.join(d.models)})" for k, d in scoped.items()))
    return space


def _dim_row(prefix: str, entry: typed.Entry, given: sweep.Dim | None, base: dict) -> sweep.Dim | None:
    p = entry.param
    key = f"{prefix}:space:{entry.key}"
    default = sweep.default_dim(p)
    if entry.key == "model.name":
        default.choices = sweep.model_choices(base)
    cols = st.columns([3, 2, 2, 1])
    on = cols[0].checkbox(f"`{entry.key}`", value=given is not None, key=key + "#on", help=p.help)
    start = given or default
    if p.type in ("choice", "bool") or entry.key == "model.name":
        options = list(default.choices or [])
        chosen = cols[1].multiselect("choices", options, default=[c for c in (start.choices or options) if c in options],
                                     key=key + "#choices", label_visibility="collapsed", disabled=not on)
        return sweep.Dim(entry.key, choices=chosen, models=list(start.models)) if on else None
    is_int = p.type == "int"
    cast = int if is_int else float
    low_value = cast(start.low if start.low is not None else default.low)
    high_value = cast(start.high if start.high is not None else default.high)
    fmt = "%d" if is_int else ("%.2e" if p.log else "%.4g")
    low = cols[1].number_input("low", min_value=cast(p.low), max_value=cast(p.high), value=low_value, format=fmt,
                               key=key + "#low", label_visibility="collapsed", disabled=not on)
    high = cols[2].number_input("high", min_value=cast(p.low), max_value=cast(p.high), value=high_value, format=fmt,
                                key=key + "#high", label_visibility="collapsed", disabled=not on)
    log = cols[3].checkbox("log", value=bool(start.log if start.log is not None else default.log),
                           key=key + "#log", disabled=not on or not p.low or p.low <= 0 and low <= 0)
    return sweep.Dim(entry.key, low, high, log, models=list(start.models)) if on else None


def settings_form(prefix: str, start: sweep.SweepSettings, workers_max: int) -> tuple[dict, list[str]]:
    """The sweep settings, each drawn from its typed Param; returns (values, problems)."""
    values, problems = {}, []
    params = {p.name: p for p in sweep.settings_params()}
    layout = [("Objectives", ("metric", "direction", "costs")),
              ("Budgets (checked before a trial trains)", ("max_params", "max_flops", "max_latency_ms",
                                                          "max_memory_mb")),
              ("Search", ("sampler", "pruner", "trials", "workers", "epochs")),
              ("Pruning and seed", ("startup_trials", "warmup_epochs", "seed"))]
    for title, names in layout:
        st.markdown(f"**{title}**")
        cols = st.columns(len(names))
        for col, name in zip(cols, names):
            with col:
                value = param_widget(params[name], f"{prefix}:settings:{name}", getattr(start, name),
                                     restrict=[1, workers_max] if name == "workers" else None)
                values[name] = value
    try:
        sweep.parse_settings(values)
    except Exception as e:  # noqa: BLE001 - ConfigError lines shown as they are
        problems += str(e).splitlines()
    return values, problems


@st.cache_data(show_spinner="Sampling the space…", max_entries=16)
def space_check(spec_json: str, samples: int) -> dict:
    """How much of the space is invalid or over budget (sampled; nothing trains)."""
    spec = sweep.SweepSpec.from_dict(json.loads(spec_json))
    dims, problems = sweep.resolved_dims(spec)
    if problems:
        return {"problems": problems}
    return sweep.preview(spec, dims, n=samples)


def show_space_check(result: dict) -> None:
    if "problems" in result:
        return
    tried = max(1, result["tried"])
    c = st.columns(4)
    c[0].metric("Sampled configs", result["tried"])
    c[1].metric("Would train", f"{result['fits'] / tried:.0%}")
    c[2].metric("Invalid", f"{result['invalid'] / tried:.0%}",
                help="refused by the spec or the registry (e.g. dim not divisible by heads) in milliseconds")
    c[3].metric("Over budget", f"{result['over_budget'] / tried:.0%}", help="refused before training, in milliseconds")
    if result["reasons"]:
        st.dataframe(pd.DataFrame([{"why refused": k, "configs": v} for k, v in
                                   sorted(result["reasons"].items(), key=lambda kv: -kv[1])]),
                     hide_index=True, width="stretch")
    if result.get("cheapest_text"):
        st.caption(f"The cheapest sampled config: {result['cheapest_text']}.")


# ---- watching a sweep --------------------------------------------------------------------------------
def trial_frame(rows: list[dict], spec: sweep.SweepSpec) -> pd.DataFrame:
    """The trial table: state, value, costs, the varied values, the reason, a Monitor link."""
    metric = spec.settings.metric
    out = []
    for r in rows:
        reason = (r["reason"] + (f" ({r['stage']})" if r["stage"] else "")).strip()
        if r["retry_of"] is not None:
            reason = f"retry of trial {r['retry_of']}. " + reason
        row = {"trial": r["number"], "state": r["state"], metric: r["value"], "epochs": len(r["curve"]),
               "monitor": f"/monitor?run={r['run_id']}" if r["run_id"] else None, "reason": reason}
        for cost in sweep.COSTS:
            if cost in r["costs"]:
                row[cost] = r["costs"][cost]
        for key, value in r["overrides"].items():
            row[key.removeprefix("model.hparams.")] = value if not isinstance(value, float) else float(f"{value:.4g}")
        out.append(row)
    return pd.DataFrame(out)


def trial_table(rows: list[dict], spec: sweep.SweepSpec, key: str) -> None:
    frame = trial_frame(rows, spec)
    if frame.empty:
        st.info("No trials yet: the worker is starting (a few seconds).")
        return
    st.dataframe(frame, hide_index=True, width="stretch", key=key,
                 column_config={"monitor": st.column_config.LinkColumn("Monitor", display_text="open"),
                                "reason": st.column_config.TextColumn("reason", width="large"),
                                "params": st.column_config.NumberColumn("params", format="compact"),
                                "flops": st.column_config.NumberColumn("flops", format="compact")})


def study_figures(study, spec: sweep.SweepSpec, rows: list[dict]) -> dict[str, Any]:
    """title -> plotly figure (or a sentence saying what is missing) for the study so far."""
    import optuna.visualization as vis

    s = spec.settings
    complete = [r for r in rows if r["state"] == "complete"]
    metric = s.metric
    target = (lambda t: t.values[0]) if s.costs else None
    kw = {"target": target, "target_name": metric} if s.costs else {"target_name": metric}
    out: dict[str, Any] = {}
    out["History"] = vis.plot_optimization_history(study, **kw) if complete else "no complete trial yet"
    out["Curves"] = curves_figure(rows, metric) if any(r["curve"] for r in rows) else "no epoch finished yet"
    if s.costs:
        out["Pareto front"] = pareto_figure(rows, spec) if complete else "no complete trial yet"
    varied = sorted({k for r in complete for k in r["params"]})
    if len(complete) >= 2 and varied:
        out["Parallel coordinates"] = vis.plot_parallel_coordinate(study, **kw)
        out["Slice"] = vis.plot_slice(study, **kw)
    else:
        out["Parallel coordinates"] = out["Slice"] = "needs two complete trials"
    if len(complete) >= 3 and len(varied) >= 2:
        from optuna.importance import PedAnovaImportanceEvaluator
        try:
            sign = -1.0 if s.goal == "max" else 1.0  # PED-ANOVA ranks what makes the target low
            out["Importance"] = vis.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator(),
                                                           target=lambda t: sign * t.values[0],
                                                           target_name=f"{metric} (importance)")
        except (RuntimeError, ValueError) as e:
            out["Importance"] = f"not computable yet: {e}"
        top = varied[:2]
        out["Contour"] = vis.plot_contour(study, params=top, **kw)
    else:
        out["Importance"] = out["Contour"] = "needs three complete trials and two varied values"
    for fig in out.values():
        if not isinstance(fig, str):
            fig.update_layout(height=max(380, fig.layout.height or 0), margin=dict(t=40, b=10))
    return out


def curves_figure(rows: list[dict], metric: str):
    """Each trial's metric per epoch, pruned ones dashed: where the pruner cut them."""
    import plotly.graph_objects as go

    fig = go.Figure()
    dash = {"pruned": "dot", "failed": "dash"}
    for r in rows:
        if not r["curve"]:
            continue
        fig.add_trace(go.Scatter(x=list(range(1, len(r["curve"]) + 1)), y=r["curve"], mode="lines+markers",
                                 name=f"#{r['number']} {r['state']}", line={"dash": dash.get(r["state"], "solid")},
                                 hovertemplate=f"trial {r['number']}<br>epoch %{{x}}<br>{metric} %{{y:.4g}}"
                                               f"<extra>{r['state']}</extra>"))
    fig.update_layout(title=f"{metric} per epoch (intermediate values)", xaxis_title="epoch", yaxis_title=metric,
                      height=380, margin=dict(t=40, b=10))
    return fig


def pareto_figure(rows: list[dict], spec: sweep.SweepSpec):
    """Metric against the first cost objective: every complete trial, the front joined, and
    trials refused before training (over budget) along the cost axis."""
    import plotly.graph_objects as go

    s = spec.settings
    cost = s.costs[0]
    label, unit, _ = sweep.COSTS[cost]
    complete = [r for r in rows if r["state"] == "complete" and r["values"]]
    front = sweep.pareto(complete, s)
    axis = f"{label} ({unit})" if unit else label
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[r["costs"].get(cost) for r in complete], y=[r["values"][0] for r in complete],
                             mode="markers", name="complete", marker={"size": 9, "color": "#9aa5b1"},
                             text=[f"trial {r['number']}" for r in complete],
                             hovertemplate="%{text}<br>" + axis + " %{x:.4g}<br>" + s.metric + " %{y:.4g}<extra></extra>"))
    front = sorted(front, key=lambda r: r["costs"].get(cost, 0))
    fig.add_trace(go.Scatter(x=[r["costs"].get(cost) for r in front], y=[r["values"][0] for r in front],
                             mode="lines+markers", name="Pareto front", marker={"size": 11, "color": "#c0392b"},
                             line={"shape": "hv"}, text=[f"trial {r['number']}" for r in front],
                             hovertemplate="%{text}<br>" + axis + " %{x:.4g}<br>" + s.metric + " %{y:.4g}<extra></extra>"))
    refused = [r for r in rows if r["state"] == "pruned" and not r["run_id"] and cost in r["costs"]]
    if refused:
        low = min([r["values"][0] for r in complete] or [0])
        fig.add_trace(go.Scatter(x=[r["costs"][cost] for r in refused], y=[low] * len(refused), mode="markers",
                                 name="refused: over budget", marker={"symbol": "x", "size": 9, "color": "#d4a017"},
                                 text=[r["reason"] for r in refused], hovertemplate="%{text}<extra></extra>"))
    limit = s.budgets().get(cost)
    if limit is not None:
        fig.add_vline(x=limit, line_dash="dash", annotation_text=f"budget {limit:g}")
    fig.update_layout(title=f"{s.metric} against {label} (Pareto front)", xaxis_title=axis, yaxis_title=s.metric,
                      height=420, margin=dict(t=40, b=10))
    if cost in ("params", "flops"):
        fig.update_xaxes(type="log")
    return fig
