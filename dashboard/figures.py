"""Plotly figure builders. Pages call these; they take plain dicts/lists from core."""
from __future__ import annotations

import plotly.graph_objects as go

MEMORY_PARTS = (("weights", "Weights"), ("grads", "Gradients"), ("optimizer", "Optimizer state"),
                ("activations", "Activations (saved for backward)"))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_count(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f}"


def memory_bar(memory: dict) -> go.Figure:
    """One horizontal stacked bar: where the training memory goes."""
    fig = go.Figure()
    for key, label in MEMORY_PARTS:
        value = float(memory.get(key, 0))
        fig.add_bar(y=["training memory"], x=[value / 2**20], name=label, orientation="h",
                    text=[human_bytes(value)], textposition="inside",
                    hovertemplate=f"{label}: %{{x:.1f}} MiB<extra></extra>")
    fig.update_layout(barmode="stack", height=180, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis_title="MiB", legend=dict(orientation="h", y=-0.5),
                      title=f"Estimated training memory: {human_bytes(memory.get('total', 0))}")
    return fig


def latency_bar(latency_ms: dict) -> go.Figure:
    """Estimated (from FLOPs and this machine's matmul speed) next to measured."""
    names, values = [], []
    for key, label in (("estimated", "estimated from FLOPs"), ("measured", "measured here")):
        if latency_ms.get(key) is not None:
            names.append(label)
            values.append(latency_ms[key])
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", text=[f"{v:.2f} ms" for v in values],
                           textposition="auto", marker_color=["#8fa8c8", "#2a6fb0"][: len(values)]))
    fig.update_layout(height=160, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="ms per batch",
                      title="Forward latency")
    return fig


def layer_flops_bar(layers: list[dict], top: int = 12) -> go.Figure:
    """The heaviest layers by their own FLOPs (leaf work, so containers do not crowd them out)."""
    key = "own_flops" if any(r.get("own_flops") for r in layers) else "flops"
    rows = sorted((r for r in layers if r.get(key)), key=lambda r: r[key], reverse=True)[:top]
    rows.reverse()
    fig = go.Figure(go.Bar(x=[r[key] for r in rows], y=[r["name"] for r in rows], orientation="h",
                           text=[human_count(r[key]) for r in rows], textposition="auto",
                           marker_color="#2a6fb0"))
    fig.update_layout(height=max(200, 28 * len(rows) + 60), margin=dict(l=10, r=10, t=30, b=10),
                      title=f"Heaviest {len(rows)} layers (own FLOPs)")
    return fig


BLOCK_FLOW_CSS = """<style>
.sig-flow {display: flex; flex-wrap: wrap; align-items: center; gap: 6px; font-size: 0.8rem;}
.sig-flow .node {border: 1px solid #9db4d3; background: #eef3fa; border-radius: 8px; padding: 4px 10px;
  text-align: center; line-height: 1.25; color: #1f2d3d;}
.sig-flow .end {background: #fff; border-radius: 999px;}
.sig-flow .arrow {color: #6b7f99;}
</style>"""


def block_flow(tree: list[tuple[str, str, int]]) -> str:
    """The model's top-level blocks, (name, type, params) rows in order, as a left-to-right
    chain in plain HTML: the chain is linear, so it needs no graph layout, and the browser
    draws it at once (a Graphviz chart is laid out in the page on every change)."""
    from html import escape

    nodes = ['<span class="node end">input</span>']
    nodes += [f'<span class="node"><b>{escape(name)}</b><br>{escape(kind)}<br>{human_count(params)} params</span>'
              for name, kind, params in tree]
    nodes.append('<span class="node end">logits</span>')
    return BLOCK_FLOW_CSS + '<div class="sig-flow">' + '<span class="arrow">→</span>'.join(nodes) + "</div>"


def layer_table(layers: list[dict]):
    """The profiler's per-layer rows as a DataFrame (sortable in the page)."""
    import pandas as pd

    frame = pd.DataFrame(layers)
    if frame.empty:
        return frame
    if "output_shape" in frame:
        frame["output_shape"] = frame["output_shape"].astype(str)
    return frame


def highlight_heaviest(frame, column: str = "own_flops", top: int = 3):
    """Style the `top` heaviest rows (by their own FLOPs: leaf layers, not the containers
    that hold them) so they stand out in the table."""
    if frame.empty:
        return frame
    if column not in frame:
        column = "flops"
    if column not in frame:
        return frame
    threshold = frame[column].nlargest(top).min()

    def shade(row):
        heavy = row[column] >= threshold and row[column] > 0
        return ["background-color: #ffe3c2" if heavy else ""] * len(row)

    return frame.style.apply(shade, axis=1)


# ---- training: schedules and live curves -------------------------------------------------
PALETTE = ("#2a6fb0", "#e07b39", "#3a9d5d", "#c0392b", "#8e6bbf", "#7f8c8d", "#d4a017", "#17a2b8")
STATUS_COLORS = {"queued": "#7f8c8d", "running": "#2a6fb0", "completed": "#3a9d5d", "failed": "#c0392b",
                 "diverged": "#c0392b", "cancelled": "#d4a017", "interrupted": "#d4a017",
                 "pruned": "#8e7cc3"}


def _layout(fig: go.Figure, title: str, height: int = 300, **kw) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", font=dict(size=14)), height=height,
                      margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0), **kw)
    return fig


def lr_schedule(lrs: list[float], steps_per_epoch: int, title: str = "Learning rate this config will follow") -> go.Figure:
    """The per-step learning rate, x in epochs."""
    spe = max(1, steps_per_epoch)
    xs = [i / spe for i in range(len(lrs))]
    fig = go.Figure(go.Scatter(x=xs, y=lrs, mode="lines", line=dict(color=PALETTE[0], width=2),
                               hovertemplate="epoch %{x:.2f}<br>lr %{y:.3g}<extra></extra>"))
    return _layout(fig, title, height=260, xaxis_title="epoch", yaxis_title="learning rate",
                   yaxis=dict(exponentformat="e"))


def curves(series: dict[str, tuple[list, list]], title: str, smoothing: float = 0.0, x_title: str = "step",
           y_title: str = "", log_y: bool = False, smoothed: dict[str, list] | None = None) -> go.Figure:
    """Lines, one per series name. With `smoothed` values the raw line is drawn faint and the
    smoothed one on top (TensorBoard style)."""
    fig = go.Figure()
    for i, (name, (xs, ys)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        if smoothed and name in smoothed and smoothing > 0:
            fig.add_scatter(x=xs, y=ys, mode="lines", name=f"{name} (raw)", line=dict(color=color, width=1),
                            opacity=0.25, showlegend=False, hoverinfo="skip")
            fig.add_scatter(x=xs, y=smoothed[name], mode="lines", name=name, line=dict(color=color, width=2))
        else:
            mode = "lines+markers" if len(xs) <= 30 else "lines"
            fig.add_scatter(x=xs, y=ys, mode=mode, name=name, line=dict(color=color, width=2))
    if not series:
        _empty(fig, "no points yet")
    if x_title == "epoch":  # whole epochs only
        last = max((max(xs) for xs, _ in series.values() if xs), default=1)
        fig.update_xaxes(dtick=max(1, round(last / 10)))
    return _layout(fig, title, xaxis_title=x_title, yaxis_title=y_title, yaxis_type="log" if log_y else None)


def _empty(fig: go.Figure, text: str) -> None:
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(color="#888", size=13))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)


def layer_heatmap(steps: list[int], layers: list[str], z: list[list], title: str, colorbar: str,
                  log: bool = False, zmin: float | None = None, zmax: float | None = None,
                  colorscale: str = "Viridis") -> go.Figure:
    """Layers (rows, in model order top-down) x probe steps (columns)."""
    import numpy as np

    values = z
    if log:
        arr = np.array([[np.nan if v is None else v for v in row] for row in z], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(arr > 0, np.log10(arr), np.nan).tolist()
        colorbar = f"log10 {colorbar}"
    # steps as categories: probe steps are evenly spaced, and a single one stays one column wide
    fig = go.Figure(go.Heatmap(x=[str(s) for s in steps], y=layers, z=values, colorscale=colorscale, zmin=zmin, zmax=zmax,
                               colorbar=dict(title=dict(text=colorbar, side="right"), thickness=12),
                               hovertemplate="step %{x}<br>%{y}<br>%{z:.3g}<extra></extra>"))
    if not layers:
        _empty(fig, "no probe points yet")
    height = min(700, max(260, 16 * len(layers) + 90))
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=10))
    fig.update_xaxes(type="category", nticks=12)
    return _layout(fig, title, height=height, xaxis_title="step")


def grad_norm_figure(before: tuple[list, list], after: tuple[list, list], clip: float | None) -> go.Figure:
    """Global gradient L2 norm before and after clipping, with the clip threshold."""
    fig = go.Figure()
    fig.add_scatter(x=before[0], y=before[1], mode="lines+markers", name="before clipping",
                    line=dict(color=PALETTE[0], width=2), marker=dict(size=4))
    if after[0]:
        fig.add_scatter(x=after[0], y=after[1], mode="lines", name="after clipping",
                        line=dict(color=PALETTE[1], width=1, dash="dot"))
    if clip:
        fig.add_hline(y=clip, line=dict(color=PALETTE[3], dash="dash"), annotation_text=f"clip at {clip:g}",
                      annotation_position="top left")
    if not before[0]:
        _empty(fig, "no gradient probes yet")
    return _layout(fig, "Global gradient norm", xaxis_title="step", yaxis_title="L2 norm")


def activation_stats_figure(last: dict[str, dict[str, float | None]]) -> go.Figure:
    """Latest mean ± std (bars with error) and max (markers) per layer."""
    layers = list(last)
    mean = [last[name].get("act_mean") for name in layers]
    std = [last[name].get("act_std") for name in layers]
    peak = [last[name].get("act_max") for name in layers]
    fig = go.Figure()
    fig.add_bar(y=layers, x=mean, orientation="h", name="mean ± std", marker_color=PALETTE[0],
                error_x=dict(type="data", array=[s or 0 for s in std], visible=True, thickness=1))
    fig.add_scatter(y=layers, x=peak, mode="markers", name="max", marker=dict(color=PALETTE[3], symbol="line-ns-open",
                                                                                size=10))
    if not layers:
        _empty(fig, "no activation probes yet")
    # every layer labelled: a categorical axis with one tick per layer and 18 px a row (plotly
    # thins crowded ticks to every other layer otherwise)
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=10), type="category", tickmode="array", tickvals=layers)
    return _layout(fig, "Activations at the latest probe step", height=max(260, 18 * len(layers) + 90),
                   xaxis_title="value")


def histogram_heatmap(steps: list[int], centres: list[float], z: list[list[float]], title: str) -> go.Figure:
    """Histograms over time: x = step, y = value, colour = share of entries in the bin."""
    # steps as categories: histograms are evenly spaced, and a single one stays one column wide
    fig = go.Figure(go.Heatmap(x=[str(s) for s in steps], y=centres, z=z, colorscale="Blues",
                               colorbar=dict(title=dict(text="share", side="right"), thickness=12),
                               hovertemplate="step %{x}<br>value %{y:.3g}<br>share %{z:.3f}<extra></extra>"))
    if not steps:
        _empty(fig, "no histograms yet")
    fig.update_xaxes(type="category")
    return _layout(fig, title, height=320, xaxis_title="step", yaxis_title="value")


def confusion_figure(matrix: list[list[int]], class_names: list[str], normalize: bool = True,
                     title: str = "Confusion matrix") -> go.Figure:
    """Rows = true class, columns = predicted; normalized per true class when asked."""
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    shown = m / np.maximum(m.sum(axis=1, keepdims=True), 1) if normalize else m
    text = [[f"{shown[i, j]:.2f}" if normalize else f"{int(m[i, j])}" for j in range(m.shape[1])]
            for i in range(m.shape[0])]
    fig = go.Figure(go.Heatmap(z=shown.tolist(), x=class_names, y=class_names, colorscale="Blues",
                               text=text, texttemplate="%{text}", showscale=False,
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{z:.3g}<extra></extra>"))
    # class names like "0".."9" would make a numeric axis whose ticks skip classes: categorical, every one
    ticks = dict(type="category", tickmode="array", tickvals=list(class_names))
    fig.update_yaxes(autorange="reversed", title="true", **ticks)
    fig.update_xaxes(title="predicted", tickangle=-30, **ticks)
    size = max(320, 40 * len(class_names) + 160)
    return _layout(fig, title, height=size)
