"""The Monitor's live view of one run. Called as a fragment body (`st.fragment(live_view,
run_every=...)`): each tick reads the store by run id and draws small, downsampled
figures, so a long-lived page does not grow (streamlit issue 6510). Nothing here runs in
a worker thread; the store is the only channel from a job to this view."""
from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dashboard import figures
from dashboard.engine import engine
from dashboard.parts import progress_bar, status_banner
from dashboard.series import (downsample, ema, epoch_series, histograms_over_time, layer_grid, split_series)

EPOCH_KEYS = ("loss", "accuracy", "macro_f1")
DEAD_KEYS = (("dead_fraction", "Dead units (ReLU: output exactly 0 for every sample of the probe batch)"),
             ("zero_fraction", "Zero outputs (ReLU: share of outputs that are exactly 0)"),
             ("near_zero_unit_fraction", "Near-dead units of smooth activations (GELU/SiLU: |y| < 1e-3 for every "
                                         "sample; these never output exactly 0)"))


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
    m1, m2, m3, m4, m5 = st.columns(5)
    step = max(run.get("step") or 0, loss_x[-1] if loss_x else 0)  # the row's step is written every 0.5 s
    m1.metric("Step", f"{step} / {run.get('total_steps') or '?'}")
    m2.metric("Loss points", f"{len(loss_x)}", help="per-step training loss points stored so far")
    m3.metric("Latest loss", _fmt(loss_y[-1] if loss_y else None), help=f"at step {loss_x[-1]}" if loss_x else None)
    m4.metric("Val accuracy", _fmt(finals.get("val_accuracy"), ".3f"))
    m5.metric("Test accuracy", _fmt(finals.get("test_accuracy"), ".3f"))
    if run["status"] in ("queued", "running") and st.button("Cancel this run", key="monitor.cancel"):
        st.toast(engine().cancel(run_id))

    # Keyed and bound to the URL (?tab=Gradients): the chosen tab survives every tick and the
    # full redraw when the run ends, and only the open tab's figures are computed.
    parts = {"Curves": lambda: _curves(store, run_id, steps, smoothing), "Gradients": lambda: _gradients(store, run),
             "Dead units": lambda: _dead_units(store, run_id), "Activations": lambda: _activations(store, run_id),
             "Histograms": lambda: _histograms(store, run_id), "Events": lambda: _events(store, run_id)}
    for tab, draw in zip(st.tabs(list(parts), key="tab", bind="query-params"), parts.values()):
        if tab.open is not False:
            with tab:
                draw()


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


def _curves(store, run_id: str, steps: dict, smoothing: float) -> None:
    left, right = st.columns(2)
    loss = {"train loss (per step)": steps["step/loss"]} if "step/loss" in steps else {}
    raw, smooth = _smoothed(loss, smoothing)
    left.plotly_chart(figures.curves(raw, "Training loss per step", smoothing, smoothed=smooth, y_title="loss"),
                      width="stretch", key="monitor.loss")
    lr = {"lr": downsample(*steps["step/lr"])} if "step/lr" in steps else {}
    right.plotly_chart(figures.curves(lr, "Learning rate", y_title="lr"), width="stretch", key="monitor.lr")
    epoch_rows = [r for r in store.metric_series(run_id, keys=list(EPOCH_KEYS)) if r["split"] in ("train", "val")]
    per_epoch = epoch_series(epoch_rows)
    left, right = st.columns(2)
    left.plotly_chart(figures.curves({k: v for k, v in per_epoch.items() if k.endswith("/loss")},
                                     "Loss per epoch", x_title="epoch", y_title="loss"),
                      width="stretch", key="monitor.epoch_loss")
    right.plotly_chart(figures.curves({k: v for k, v in per_epoch.items() if not k.endswith("/loss")},
                                      "Accuracy and macro-F1 per epoch", x_title="epoch"),
                       width="stretch", key="monitor.epoch_acc")


def _gradients(store, run: dict) -> None:
    run_id = run["id"]
    before = store.probe_series(run_id, "grad_norm_before_clip")
    after = store.probe_series(run_id, "grad_norm_after_clip")
    clip = (run["config"].get("train") or {}).get("grad_clip")
    st.plotly_chart(figures.grad_norm_figure(downsample([r["step"] for r in before], [r["value"] for r in before]),
                                             downsample([r["step"] for r in after], [r["value"] for r in after]), clip),
                    width="stretch", key="monitor.global_grad")
    grid = layer_grid(store.probe_series(run_id, "grad_norm"))
    st.plotly_chart(figures.layer_heatmap(*grid, title="Gradient L2 norm per layer (before clipping)",
                                          colorbar="grad norm", log=True),
                    width="stretch", key="monitor.grad_heat")
    grid = layer_grid(store.probe_series(run_id, "update_ratio"))
    if grid[1]:
        st.plotly_chart(figures.layer_heatmap(*grid, title="Update / weight ratio per layer (healthy ≈ 1e-3)",
                                              colorbar="update ratio", log=True, colorscale="Cividis"),
                        width="stretch", key="monitor.update_heat")


def _dead_units(store, run_id: str) -> None:
    keys = set(store.probe_keys(run_id))
    shown = False
    for key, title in DEAD_KEYS:
        if key in keys:
            grid = layer_grid(store.probe_series(run_id, key))
            st.plotly_chart(figures.layer_heatmap(*grid, title=title, colorbar="fraction", zmin=0, zmax=1,
                                                  colorscale="Reds"), width="stretch", key=f"monitor.{key}")
            steps, layers, z = grid
            latest = [(row[-1], layer) for row, layer in zip(z, layers) if row and row[-1] is not None]
            if latest:
                value, layer = max(latest)
                st.caption(f"At step {steps[-1]}: highest {value:.1%} in `{layer}`.")
            shown = True
    if not shown:
        st.caption("No dead-unit probes yet (they appear at the first probe step; turn on the dead_relu probe on Train).")


def _model_order(store, run_id: str) -> list[str]:
    """Parameter-owning layers in model order (from the first weight histogram), else sorted."""
    first = store.histograms(run_id, kind="weight", step=1)
    if first:
        return [h["layer"] for h in first]
    return sorted(store.last_probes(run_id).get("weight_norm", {}))


def _activations(store, run_id: str) -> None:
    grid = layer_grid(store.probe_series(run_id, "act_std"))
    last = store.last_probes(run_id)
    per_layer: dict[str, dict[str, float | None]] = {layer: {} for layer in grid[1]}  # model order
    for key in ("act_mean", "act_std", "act_max"):
        for layer, value in last.get(key, {}).items():
            per_layer.setdefault(layer, {})[key] = value
    st.plotly_chart(figures.activation_stats_figure(per_layer), width="stretch", key="monitor.act_bars")
    if grid[1]:
        st.plotly_chart(figures.layer_heatmap(*grid, title="Activation std per layer over time", colorbar="std",
                                              log=True, colorscale="Viridis"), width="stretch", key="monitor.act_heat")


def _histograms(store, run_id: str) -> None:
    layers = _model_order(store, run_id)
    if not layers:
        st.caption("No histograms yet (recorded every `histogram every N steps` on probe-enabled runs).")
        return
    c1, c2 = st.columns([3, 1])
    layer = c1.selectbox("Layer", layers, key="monitor.hist_layer")
    kind = c2.radio("Of", ["grad", "weight"], horizontal=True, key="monitor.hist_kind",
                    format_func=lambda k: "gradients" if k == "grad" else "weights")
    hists = store.histograms(run_id, kind=kind, layer=layer)
    grid = histograms_over_time(hists)
    st.plotly_chart(figures.histogram_heatmap(*grid, title=f"{'Gradient' if kind == 'grad' else 'Weight'} "
                                                            f"histogram of {layer} over time"),
                    width="stretch", key="monitor.hist")
    if len(hists) == 1:
        st.caption("One histogram so far: they are recorded every `histogram every N steps` (set on Train).")


def _events(store, run_id: str) -> None:
    events = store.events(run_id)[-200:]
    if not events:
        st.caption("No events yet.")
        return
    frame = pd.DataFrame(reversed(events))
    frame["time"] = [time.strftime("%H:%M:%S", time.localtime(t)) for t in frame["time"]]
    st.dataframe(frame[["time", "level", "message"]], hide_index=True, width="stretch", height=300,
                 column_config={"message": st.column_config.TextColumn(width="large")})
