"""Plotly figures for the Explore page: the map of every window, importance bars and heat maps.
They take plain arrays and records from `core.explore`.

The map sends one compact trace per colour group: x, y, the window's index as customdata (what a
click reads back) and one short hover line per point. Up to SVG_POINTS points it is an SVG
scatter, whose points are DOM elements (a click lands on exactly one, and no WebGL context is
made: one cost about 0.5 s of each redraw in a Chromium without a GPU, see classify_figures);
above that, Scattergl, which stays responsive at 10,000 windows and more.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.explore.windows import group_key
from dashboard.classify_figures import PALETTE, class_colors
from dashboard.figures import _empty, _layout

SVG_POINTS = 3000  # above this many windows the map is drawn with WebGL
CORRECT_COLORS = {"correct": "#3a9d5d", "wrong": "#c0392b"}
SPLIT_COLORS = {"train": "#8fa8c8", "val": "#d4a017", "test": "#2a6fb0"}
SELECTED_COLOR = "#111111"

# What the map can be coloured by: the frame column it reads, and whether it needs a model's answers.
COLOR_BY = {"true": ("true class", "label", False),
            "predicted": ("predicted class", "predicted", True),
            "correct": ("correct / wrong", "correct", True),
            "split": ("split", "split", False),
            "group": ("subject / speaker", "group", False)}


def color_options(has_model: bool) -> list[str]:
    """The COLOR_BY keys that make sense for an embedding (with or without a model's answers)."""
    return [k for k, (_, _, needs_model) in COLOR_BY.items() if has_model or not needs_model]


def _group_colors(color_by: str, values: list[str], class_names: list[str]) -> dict[str, str]:
    if color_by in ("true", "predicted"):
        return class_colors(class_names)  # the same colour per class as Classify's bands
    if color_by == "correct":
        return CORRECT_COLORS
    if color_by == "split":
        return SPLIT_COLORS
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(values)}


def _group_order(color_by: str, present: list[str], class_names: list[str]) -> list[str]:
    if color_by in ("true", "predicted"):
        return [c for c in class_names if c in present]
    fixed = {"correct": list(CORRECT_COLORS), "split": list(SPLIT_COLORS)}.get(color_by)
    if fixed:
        return [v for v in fixed if v in present]
    return sorted(present, key=group_key)  # subject "2" before "10"


def hover_lines(frame: pd.DataFrame) -> np.ndarray:
    """One short hover text per window: id, split, subject/speaker, true label, the run's answer and
    confidence. (The recording and start time are in the id already: "subject:session:start" or
    the file name; at 10,000 windows every byte here is ~10 kB of each redraw.)"""
    text = (frame["id"].astype(str) + " (" + frame["split"].astype(str) + ", " + frame["group"].astype(str)
            + ")<br>true " + frame["label"].astype(str))
    if "predicted" in frame:
        text = text + ", predicted " + frame["predicted"].astype(str) + " (" + frame["confidence"].map(
            "{:.2f}".format) + ")"
    return text.to_numpy()


def projection_map(xy: np.ndarray, frame: pd.DataFrame, color_by: str, class_names: list[str],
                   selected: int | None = None, title: str = "", height: int = 560) -> go.Figure:
    """Every window as a point at its 2-D projection, coloured by `color_by` (a COLOR_BY key);
    frame: one row per window (id, split, label, group, source, start_s, and predicted, confidence,
    correct when a model answered); `selected`: the opened window, ringed."""
    fig = go.Figure()
    n = len(frame)
    if n == 0:
        _empty(fig, "no windows")
        return _layout(fig, title, height=height)
    column = COLOR_BY[color_by][1]
    values = frame[column].astype(str).to_numpy()
    order = _group_order(color_by, sorted(set(values.tolist())), class_names)
    colors = _group_colors(color_by, order, class_names)
    text = hover_lines(frame)
    scatter = go.Scatter if n <= SVG_POINTS else go.Scattergl
    size = 7 if n <= 2000 else 5 if n <= 8000 else 4
    index = np.arange(n)
    for value in order:
        mask = values == value
        fig.add_trace(scatter(x=xy[mask, 0], y=xy[mask, 1], mode="markers", name=value,
                              customdata=index[mask],
                              text=text[mask], hovertemplate="%{text}<extra></extra>",
                              marker=dict(size=size, color=colors.get(value, PALETTE[0]), opacity=0.8,
                                          line=dict(width=0))))
    if selected is not None and 0 <= selected < n:
        fig.add_trace(go.Scatter(x=[xy[selected, 0]], y=[xy[selected, 1]], mode="markers", name="opened window",
                                 customdata=[selected], text=[text[selected]], hovertemplate="%{text}<extra></extra>",
                                 # an open symbol is stroked in marker.color (marker.line.color is not used)
                                 marker=dict(size=20, color=SELECTED_COLOR, symbol="circle-open", line=dict(width=3))))
    # projection axes have no unit: no ticks, no zero lines, just the layout of the windows
    fig.update_xaxes(showticklabels=False, zeroline=False, showgrid=False, title=None)
    fig.update_yaxes(showticklabels=False, zeroline=False, showgrid=False, title=None)
    fig.update_layout(clickmode="event+select", dragmode="pan", hovermode="closest",
                      legend=dict(title=dict(text=COLOR_BY[color_by][0] + ":"), itemsizing="constant"))
    return _layout(fig, title, height=height)


def importance_bars(names: list[str], drop: np.ndarray, low: np.ndarray | None = None,
                    high: np.ndarray | None = None, title: str = "", axis: str = "accuracy drop") -> go.Figure:
    """Horizontal bars, most important at the top, with the confidence interval as error bars
    (low/high are the interval's ends, not offsets)."""
    drop = np.asarray(drop, dtype=float)
    order = np.argsort(drop)  # plotly draws the first bar at the bottom
    labels = [str(names[i]) for i in order]
    error = None
    if low is not None and high is not None:
        low, high = np.asarray(low, dtype=float)[order], np.asarray(high, dtype=float)[order]
        error = dict(type="data", symmetric=False, array=np.maximum(high - drop[order], 0).tolist(),
                     arrayminus=np.maximum(drop[order] - low, 0).tolist(), thickness=1.5, color="#444")
    fig = go.Figure(go.Bar(x=drop[order], y=labels, orientation="h", error_x=error,
                           marker_color=np.where(drop[order] >= 0, "#2a6fb0", "#9aa5b1").tolist(),
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.add_vline(x=0, line=dict(color="#888", width=1))
    fig.update_yaxes(type="category", tickmode="array", tickvals=labels)
    return _layout(fig, title, height=max(240, 26 * len(labels) + 110), xaxis_title=axis, showlegend=False)


def importance_heatmap(names: list[str], per_class: np.ndarray, class_names: list[str],
                       overall: np.ndarray | None = None, title: str = "",
                       colorbar: str = "recall drop") -> go.Figure:
    """Classes (rows) x units (columns, e.g. time blocks): how much each class's recall drops
    when that unit is shuffled; the overall accuracy drop as the first row when given."""
    z = np.asarray(per_class, dtype=float)
    rows = list(class_names)
    if overall is not None:
        z = np.vstack([np.asarray(overall, dtype=float)[None, :], z])
        rows = ["all classes (accuracy)"] + rows
    peak = float(np.nanmax(np.abs(z))) if z.size and np.isfinite(z).any() else 1.0
    fig = go.Figure(go.Heatmap(z=z, x=[str(n) for n in names], y=rows, colorscale="RdBu", reversescale=True,
                               zmid=0, zmin=-peak, zmax=peak,
                               colorbar=dict(title=dict(text=colorbar, side="right"), thickness=12),
                               hovertemplate="%{y}, %{x}: %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return _layout(fig, title, height=max(260, 26 * len(rows) + 120))


def window_signal_figure(x: np.ndarray, channel_names: list[str], rate: float, title: str = "") -> go.Figure:
    """One window as the data gives it, before any model: an IMU window (C, T) or a waveform (T,)
    as lines over seconds; features (F, T) or planes (P, F, T) as a heat map of the first plane."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim == 3:
        x = x[0]
    fig = go.Figure()
    if x.shape[0] <= 12:  # sensor axes or one waveform: lines, offset so they do not overlap
        t = np.arange(x.shape[1]) / float(rate or 1.0)
        for c in range(x.shape[0]):
            name = channel_names[c] if c < len(channel_names) else f"ch{c}"
            fig.add_trace(go.Scatter(x=t, y=x[c], mode="lines", name=name, line={"width": 1}))
        fig.update_layout(xaxis_title="seconds", legend={"orientation": "h"})
    else:  # feature rows over frames
        fig.add_trace(go.Heatmap(z=x, colorscale="Viridis", colorbar={"title": "value"}))
        fig.update_layout(xaxis_title="frame", yaxis_title="feature row")
    return _layout(fig, title, height=320)
