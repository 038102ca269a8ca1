"""The Monitor's live view of one run. Called as a fragment body (`st.fragment(live_view,
run_every=...)`): each tick reads the store by run id and draws small, downsampled
figures, so a long-lived page does not grow (streamlit issue 6510). Nothing here runs in
a worker thread; the store is the only channel from a job to this view."""
from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from core.profiling.mfu import describe, format_mfu, run_utilization
from dashboard import figures
from dashboard.engine import engine
from dashboard.parts import RESUMABLE, progress_bar, resume_view, status_banner
from dashboard.series import (downsample, ema, epoch_series, histograms_over_time, layer_grid, split_series)

EPOCH_KEYS = ("loss", "accuracy", "macro_f1")
# The per-step charts are rebuilt at most this often while a run trains (the numbers above
# them every tick). Between, the same figure is sent again, which Streamlit's frontend does not
# redraw: four charts changing every second cost Chromium 0.48 core-s/s, the same four sent
# unchanged 0.13 (docs/RESULTS.md), CPU the run beside them could have had.
CHART_SECONDS = 3.0
clock = time.monotonic  # (a test steps it)
LOG_LINES = 200
HISTOGRAM_NAMES = {"grad": "gradients", "weight": "weights", "activation": "activations"}


def live_view(run_id: str, smoothing: float, was_active: bool) -> None:
    """Everything the Monitor shows for `run_id`, read fresh from the store."""
    store = engine().store
    run = store.get_run(run_id)
    if run is None:
        st.warning(f"Run {run_id} no longer exists (deleted).")
        return
    if was_active and run["status"] not in ("queued", "running"):
        st.rerun()  # the run ended: redraw once as a static page and stop polling

    status_banner(run)
    progress_bar(run)
    step_rows = store.metric_series(run_id, keys=["loss", "lr"], split="step")
    steps = split_series(step_rows)
    loss_x, loss_y = steps.get("step/loss", ([], []))
    finals = store.final_metrics(run_id)
    m1, m2, m3, m4, m5, m6, m7 = st.columns(7)
    step = max(run.get("step") or 0, loss_x[-1] if loss_x else 0)  # the row's step is written every 0.5 s
    m1.metric("Step", f"{step} / {run.get('total_steps') or '?'}")
    m2.metric("Loss points", f"{len(loss_x)}", help="per-step training loss points stored so far")
    m3.metric("Latest loss", _fmt(loss_y[-1] if loss_y else None), help=f"at step {loss_x[-1]}" if loss_x else None)
    m4.metric("Val accuracy", _fmt(finals.get("val_accuracy"), ".3f"))
    m5.metric("Test accuracy", _fmt(finals.get("test_accuracy"), ".3f"))
    wait = finals.get("train_data_wait_share")
    m6.metric("Samples/s", _fmt(finals.get("train_samples_per_sec"), ",.0f"),
              help="training examples per second in the last epoch (every process's)"
                   + (f"; the steps waited {wait:.1%} of it for their next batch" if wait is not None else ""))
    utilization = run_utilization(run, finals)
    m7.metric("MFU", format_mfu(utilization["mfu"]),
              help="model-FLOPs utilisation of the last epoch: counted training FLOPs per second over the "
                   f"device's measured matmul peak. {describe(utilization)}")
    if run["status"] in ("queued", "running") and st.button("Cancel this run", key="monitor.cancel"):
        st.toast(engine().cancel(run_id))
    if run["status"] in RESUMABLE:
        resume_view(run, "monitor")

    # Tabs: the curves, then one per probe view the run's probes declare or its store holds
    # (core.train.probes: each probe states what it stores and how it is drawn), then events.
    # Keyed and bound to the URL (?tab=Gradients): the chosen tab survives every tick and the
    # full redraw when the run ends, and only the open tab's figures are computed.
    views = probe_views(store, run)
    parts = {"Curves": lambda: _curves(store, run_id, steps, smoothing, run["status"])}
    for tab, tab_views in views.items():
        parts[tab] = lambda tab_views=tab_views: _draw_views(store, run, tab_views)
    parts["Events"] = lambda: _events(store, run_id)
    if run.get("log_path"):
        parts["Log"] = lambda: _log(run)
    for tab, draw in zip(st.tabs(list(parts), key="tab", bind="query-params"), parts.values()):
        if tab.open is not False:
            with tab:
                draw()


def probe_views(store, run: dict) -> dict[str, list]:
    """{tab: [View, ...]} for the probes this run's config turns on, plus any view whose data
    the run stored (e.g. a probe configured when it started), in the registry's order."""
    from core.train.probes import all_views, views_of

    probes_cfg = (run["config"].get("train") or {}).get("probes") or {}
    configured = set(probes_cfg.get("probes") or []) if probes_cfg.get("enabled", True) else set()
    wanted = {id(v) for v in views_of(configured)}
    stored_keys = set(store.probe_keys(run["id"]))
    stored_kinds = set(store.histogram_kinds(run["id"]))
    out: dict[str, list] = {}
    for view in all_views():
        stored = (view.kind == "histogram" and view.key in stored_kinds) or \
                 (view.kind != "histogram" and any(k in stored_keys for k in view.keys))
        if id(view) in wanted or stored:
            out.setdefault(view.tab, []).append(view)
    return out


def _draw_views(store, run: dict, views: list) -> None:
    """Draw one tab's views; a view with no data yet says when it will have some."""
    histograms = [v for v in views if v.kind == "histogram"]
    for view in views:
        if view.kind == "histogram":
            continue
        DRAW[view.kind](store, run, view)
    if histograms:
        _histograms(store, run["id"], histograms)


def _fmt(value: float | None, spec: str = ".6g") -> str:
    return "—" if value is None else format(value, spec)


def _smoothed(series: dict[str, tuple[list, list]], smoothing: float) -> tuple[dict, dict]:
    """Smooth on every point, then downsample raw and smoothed alike."""
    raw, smooth = {}, {}
    for name, (xs, ys) in series.items():
        s = ema(ys, smoothing)
        _, s_down = downsample(xs, s)
        raw[name] = downsample(xs, ys)
        smooth[name] = s_down
    return raw, smooth


def _held(key: str, drawn_for: tuple, build):
    """What `build` made, held in the session under `key`: built again when `drawn_for` (the
    run, its status, the options) changed or CHART_SECONDS have passed since; else as it was."""
    now = clock()
    last = st.session_state.get(key)
    if last is None or last[0] != drawn_for or now - last[1] >= CHART_SECONDS:
        last = st.session_state[key] = (drawn_for, now, build())
    return last[2]


def _step_curves(steps: dict, smoothing: float):
    loss = {"train loss (per step)": steps["step/loss"]} if "step/loss" in steps else {}
    raw, smooth = _smoothed(loss, smoothing)
    lr = {"lr": downsample(*steps["step/lr"])} if "step/lr" in steps else {}
    return (figures.curves(raw, "Training loss per step", smoothing, smoothed=smooth, y_title="loss"),
            figures.curves(lr, "Learning rate", y_title="lr"))


def _curves(store, run_id: str, steps: dict, smoothing: float, status: str) -> None:
    left, right = st.columns(2)
    loss, lr = _held("monitor.step_curves", (run_id, status, smoothing), lambda: _step_curves(steps, smoothing))
    left.plotly_chart(loss, width="stretch", key="monitor.loss")
    right.plotly_chart(lr, width="stretch", key="monitor.lr")
    epoch_rows = [r for r in store.metric_series(run_id, keys=list(EPOCH_KEYS)) if r["split"] in ("train", "val")]
    per_epoch = epoch_series(epoch_rows)
    left, right = st.columns(2)
    left.plotly_chart(figures.curves({k: v for k, v in per_epoch.items() if k.endswith("/loss")},
                                     "Loss per epoch", x_title="epoch", y_title="loss"),
                      width="stretch", key="monitor.epoch_loss")
    right.plotly_chart(figures.curves({k: v for k, v in per_epoch.items() if not k.endswith("/loss")},
                                      "Accuracy and macro-F1 per epoch", x_title="epoch"),
                       width="stretch", key="monitor.epoch_acc")


def _global_norm(store, run: dict, view) -> None:
    before_key, after_key = view.keys
    before = store.probe_series(run["id"], before_key)
    after = store.probe_series(run["id"], after_key)
    if not before and not after:
        st.caption(f"{view.title}: no probe steps yet (the first comes at step 1).")
        return
    clip = (run["config"].get("train") or {}).get("grad_clip")
    st.plotly_chart(figures.grad_norm_figure(downsample([r["step"] for r in before], [r["value"] for r in before]),
                                             downsample([r["step"] for r in after], [r["value"] for r in after]), clip),
                    width="stretch", key=f"monitor.{before_key}")


def _layer_heatmap(store, run: dict, view) -> None:
    grid = layer_grid(store.probe_series(run["id"], view.key))
    if not grid[1]:
        st.caption(f"{view.title}: nothing stored yet (probes run every few steps).")
        return
    o = view.options
    st.plotly_chart(figures.layer_heatmap(*grid, title=view.title, colorbar=o.get("colorbar", view.key),
                                          log=o.get("log", False), zmin=o.get("zmin"), zmax=o.get("zmax"),
                                          colorscale=o.get("colorscale", "Viridis")),
                    width="stretch", key=f"monitor.{view.key}")
    if o.get("latest_max"):
        steps, layers, z = grid
        latest = [(row[-1], layer) for row, layer in zip(z, layers) if row and row[-1] is not None]
        if latest:
            value, layer = max(latest)
            st.caption(f"At step {steps[-1]}: highest {value:.1%} in `{layer}`.")


def _latest_bars(store, run: dict, view) -> None:
    last = store.last_probes(run["id"])
    order = layer_grid(store.probe_series(run["id"], view.keys[1] if len(view.keys) > 1 else view.keys[0]))[1]
    per_layer: dict[str, dict[str, float | None]] = {layer: {} for layer in order}  # model order
    for key in view.keys:
        for layer, value in last.get(key, {}).items():
            per_layer.setdefault(layer, {})[key] = value
    if not per_layer:
        st.caption(f"{view.title}: nothing stored yet.")
        return
    st.plotly_chart(figures.activation_stats_figure(per_layer), width="stretch", key=f"monitor.{view.keys[0]}_bars")


DRAW = {"global_norm": _global_norm, "layer_heatmap": _layer_heatmap, "latest_bars": _latest_bars}


def _histograms(store, run_id: str, views: list) -> None:
    kinds = [v.key for v in views if v.key in store.histogram_kinds(run_id)]
    if not kinds:
        st.caption("No histograms yet (recorded every `histograms every N steps` on probe-enabled runs).")
        return
    c1, c2 = st.columns([3, 2])
    kind = c2.radio("Of", kinds, horizontal=True, key="monitor.hist_kind",
                    format_func=lambda k: HISTOGRAM_NAMES.get(k, k))
    layers = store.histogram_layers(run_id, kind)
    layer = c1.selectbox("Layer", layers, key=f"monitor.hist_layer.{kind}")
    hists = store.histograms(run_id, kind=kind, layer=layer)
    grid = histograms_over_time(hists)
    title = next(v.title for v in views if v.key == kind)
    st.plotly_chart(figures.histogram_heatmap(*grid, title=f"{title} of {layer} over time"),
                    width="stretch", key="monitor.hist")
    if len(hists) == 1:
        st.caption("One histogram so far: they are recorded every `histograms every N steps` (set on Train).")


def _log(run: dict) -> None:
    """The tail of the run process's output (its train.log)."""
    from core.launch import log_tail

    text = log_tail(run.get("log_path"), lines=LOG_LINES)
    where = (f"{run.get('processes') or 1} process(es) × {run.get('threads') or '?'} thread(s) each"
             if run.get("threads") else "")
    st.caption(f"`{run['log_path']}`" + (f" · {where}" if where else "") + f" · the last {LOG_LINES} lines")
    st.code(text or "(nothing written yet)", language="text", wrap_lines=True)


def _events(store, run_id: str) -> None:
    events = store.events(run_id)[-200:]
    if not events:
        st.caption("No events yet.")
        return
    frame = pd.DataFrame(reversed(events))
    frame["time"] = [time.strftime("%H:%M:%S", time.localtime(t)) for t in frame["time"]]
    st.dataframe(frame[["time", "level", "message"]], hide_index=True, width="stretch", height=300,
                 column_config={"message": st.column_config.TextColumn(width="large")})
