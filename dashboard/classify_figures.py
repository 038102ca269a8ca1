"""Plotly figures for the Classify page. They take plain arrays from `core.infer`.

Signals are downsampled to a min/max envelope before drawing, so a 10-minute recording is
a few thousand points in the browser, not millions; they are SVG lines, not WebGL, because a
WebGL context per chart cost about 0.5 s of each redraw in a Chromium without a GPU.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative, sequential
from plotly.subplots import make_subplots

PALETTE = qualitative.Plotly + qualitative.D3 + qualitative.Set3
OVERLAY_COLOR = "#d62728"
CHANNEL_COLOR = "#3a4f66"
# Magma with black for its first stop: Streamlit's plotly theme swaps the colours #000001-#000009
# for its own palette, so Magma's "#000004" drew the quietest bins (silence) pink.
MAGMA = [[i / (len(sequential.Magma) - 1), "#000000" if c == "#000004" else c] for i, c in enumerate(sequential.Magma)]


def class_colors(class_names: list[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(class_names)}


def envelope(times: np.ndarray, values: np.ndarray, max_points: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Min/max envelope of a long 1-D series: (times, values) with about max_points points."""
    n = len(values)
    if n <= max_points:
        return times, values
    per = int(np.ceil(n / (max_points // 2)))
    usable = (n // per) * per
    blocks = values[:usable].reshape(-1, per)
    t = times[:usable].reshape(-1, per)[:, 0]
    out_t = np.repeat(t, 2)
    out_v = np.stack([blocks.min(axis=1), blocks.max(axis=1)], axis=1).reshape(-1)
    return out_t, out_v


def _band(fig: go.Figure, row: int, track, class_names: list[str]) -> None:
    """A one-row heat map: the predicted class over time in the class colours (track: core.infer.ClassTrack)."""
    times, index, prob = track.times, track.classes, track.probabilities
    k = len(class_names)
    colors = class_colors(class_names)
    scale = []
    for i, name in enumerate(class_names):  # a stepped colour scale: one flat stop per class
        scale += [[i / k, colors[name]], [(i + 1) / k, colors[name]]]
    labels = np.array(class_names, dtype=object)[index]
    fig.add_trace(go.Heatmap(x=times, y=["predicted"], z=[index], zmin=-0.5, zmax=k - 0.5, colorscale=scale,
                             showscale=False, customdata=[np.stack([labels, np.round(prob, 3)], axis=1)],
                             hovertemplate="%{x:.2f} s: %{customdata[0]} (p=%{customdata[1]})<extra></extra>"),
                  row=row, col=1)
    # a legend entry per class that appears, drawn as invisible markers
    for i in sorted(set(index.tolist())):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", marker=dict(color=colors[class_names[i]],
                                 size=10, symbol="square"), name=class_names[i], legendgroup="classes"),
                      row=row, col=1)


def signal_with_classes(signal: np.ndarray, sample_rate: float, channel_names: list[str], track,
                        class_names: list[str], overlay: dict | None = None, title: str = "") -> go.Figure:
    """The waveform (T,) or IMU channels (T, C) over seconds, the predicted class as a colour
    band below, and optionally an overlay curve ({"name", "times", "values"}, 0..max) on a
    second axis (attention pooling weights, Grad-CAM)."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.82, 0.18], vertical_spacing=0.03,
                        specs=[[{"secondary_y": True}], [{}]])
    times = np.arange(len(signal)) / sample_rate
    channels = signal[:, None] if signal.ndim == 1 else signal
    names = channel_names if signal.ndim == 2 else ["waveform"]
    for c in range(channels.shape[1]):
        t, v = envelope(times, channels[:, c])
        fig.add_trace(go.Scatter(x=t, y=v, mode="lines", name=names[c] if c < len(names) else f"ch{c}",
                                   line=dict(width=1), opacity=0.85, legendgroup="signal"),
                      row=1, col=1, secondary_y=False)
    if overlay is not None and len(overlay["times"]):
        values = np.asarray(overlay["values"], dtype=float)
        fig.add_trace(go.Scatter(x=overlay["times"], y=values, mode="lines", name=overlay["name"],
                                 line=dict(color=OVERLAY_COLOR, width=2.5), fill="tozeroy",
                                 fillcolor="rgba(214,39,40,0.15)"), row=1, col=1, secondary_y=True)
        fig.update_yaxes(title_text=overlay.get("axis", overlay["name"]), secondary_y=True, row=1, col=1,
                         rangemode="tozero", showgrid=False)
    fig.update_yaxes(title_text="amplitude" if signal.ndim == 1 else "value", secondary_y=False, row=1, col=1)
    _band(fig, 2, track, class_names)
    fig.update_yaxes(showticklabels=False, row=2, col=1)
    fig.update_xaxes(title_text="seconds", row=2, col=1)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40 if title else 10, b=10), title=title or None,
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0))
    return fig


MAX_PANELS = 9  # channels drawn as panels at once; a page offers a picker beyond this
PANEL_PX = 64  # height of one channel's panel


def _panel_label(fig: go.Figure, row: int, text: str, color: str = "#444") -> None:
    """A panel's name at its right edge, outside the plot: readable at any panel count, never
    over the trace, unlike a rotated axis title squeezed into a 64 px row or a long legend."""
    axis = "y" if row == 1 else f"y{row}"
    fig.add_annotation(text=text, xref="paper", x=1.005, xanchor="left", yref=f"{axis} domain", y=0.5,
                       yanchor="middle", showarrow=False, align="left", font=dict(size=11, color=color))


def channel_panels(signal: np.ndarray, sample_rate: float, channel_names: list[str], track,
                   class_names: list[str], overlay: dict | None = None, shown: list[int] | None = None
                   ) -> go.Figure:
    """IMU channels (T, C) as one small panel each over shared seconds, the explanation
    (overlay: {"name", "times", "values"}) as its own panel below them and the predicted class
    as a colour band at the bottom; `shown` picks the channels (at most MAX_PANELS are drawn)."""
    shown = list(range(signal.shape[1]))[:MAX_PANELS] if shown is None else list(shown)[:MAX_PANELS]
    has_overlay = overlay is not None and len(overlay["times"]) > 0
    rows = len(shown) + int(has_overlay) + 1
    heights = [1.0] * (rows - 1) + [0.45]
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, row_heights=heights, vertical_spacing=0.012)
    times = np.arange(len(signal)) / sample_rate
    for row, c in enumerate(shown, start=1):
        name = channel_names[c] if c < len(channel_names) else f"ch{c}"
        t, v = envelope(times, signal[:, c], max_points=2000)
        # one neutral colour for every channel: the class colours of the band must not read as channels
        fig.add_trace(go.Scatter(x=t, y=v, mode="lines", name=name, line=dict(width=1, color=CHANNEL_COLOR),
                                 showlegend=False, hovertemplate=f"{name}: %{{y:.3g}} at %{{x:.2f}} s<extra></extra>"),
                      row=row, col=1)
        _panel_label(fig, row, name, CHANNEL_COLOR)
    if has_overlay:
        row = len(shown) + 1
        fig.add_trace(go.Scatter(x=overlay["times"], y=np.asarray(overlay["values"], dtype=float), mode="lines",
                                 name=overlay["name"], line=dict(color=OVERLAY_COLOR, width=2), fill="tozeroy",
                                 fillcolor="rgba(214,39,40,0.15)", showlegend=False,
                                 hovertemplate=f"{overlay['name']}: %{{y:.2f}} at %{{x:.2f}} s<extra></extra>"),
                      row=row, col=1)
        fig.update_yaxes(rangemode="tozero", row=row, col=1)
        _panel_label(fig, row, overlay["name"].replace(" ", "<br>", 1), OVERLAY_COLOR)
    _band(fig, rows, track, class_names)
    _panel_label(fig, rows, "predicted")
    fig.update_yaxes(nticks=3, tickfont=dict(size=9), zeroline=False)
    fig.update_yaxes(showticklabels=False, ticks="", row=rows, col=1)
    fig.update_xaxes(title_text="seconds", row=rows, col=1)
    fig.update_layout(height=70 + PANEL_PX * (rows - 1) + 30 + 40, margin=dict(l=10, r=90, t=30, b=10),
                      legend=dict(orientation="h", traceorder="normal", y=1.0, yanchor="bottom", x=0,
                                  font=dict(size=11),
                                  title=dict(text="predicted class:", side="left", font=dict(size=11))))
    return fig


def spectrogram_with_classes(logmel: np.ndarray, frame_seconds: float, track, class_names: list[str],
                             max_frames: int = 3000) -> go.Figure:
    """Log-mel spectrogram (n_mels, frames) over seconds with the predicted-class band below."""
    step = max(1, int(np.ceil(logmel.shape[1] / max_frames)))
    shown = logmel[:, ::step]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.82, 0.18], vertical_spacing=0.03)
    fig.add_trace(go.Heatmap(z=shown, x=np.arange(shown.shape[1]) * step * frame_seconds, colorscale=MAGMA,
                             colorbar=dict(title="ln power", len=0.8, y=0.6),
                             hovertemplate="%{x:.2f} s, mel %{y}: %{z:.1f}<extra></extra>"), row=1, col=1)
    fig.update_yaxes(title_text="mel bin", row=1, col=1)
    _band(fig, 2, track, class_names)
    fig.update_yaxes(showticklabels=False, row=2, col=1)
    fig.update_xaxes(title_text="seconds", row=2, col=1)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=10, b=10), showlegend=False)
    return fig


def topk_bar(top_k: list[tuple[str, float]], class_names: list[str]) -> go.Figure:
    """Horizontal bars of the top-k classes, best at the top."""
    colors = class_colors(class_names)
    labels = [k for k, _ in top_k][::-1]
    values = [v for _, v in top_k][::-1]
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=[colors[k] for k in labels],
                           text=[f"{v:.3f}" for v in values], textposition="auto"))
    fig.update_layout(height=60 + 34 * len(labels), margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(range=[0, 1], title="probability"), yaxis=dict(type="category"))
    return fig


def attention_over_time(times: np.ndarray, rows: np.ndarray, row_labels: list[str], title: str) -> go.Figure:
    """Heat map rows (heads, or one rollout row) x time: how much attention each second receives
    (1 = a uniform share)."""
    fig = go.Figure(go.Heatmap(z=rows, x=times, y=row_labels, colorscale="Viridis", zmin=0,
                               colorbar=dict(title="× uniform"),
                               hovertemplate="%{y} at %{x:.2f} s: %{z:.2f}× uniform<extra></extra>"))
    fig.update_layout(height=110 + 26 * len(row_labels), margin=dict(l=10, r=10, t=40, b=10), title=title,
                      xaxis_title="seconds", yaxis=dict(type="category", autorange="reversed"))
    return fig


def attention_matrix(matrix: np.ndarray, token_times: np.ndarray, title: str,
                     recording_end: float | None = None) -> go.Figure:
    """One head's (or the head mean's) query x key attention for one window over the
    recording's seconds; a dashed line marks where the recording ends inside a padded window."""
    fig = go.Figure(go.Heatmap(z=matrix, x=token_times, y=token_times, colorscale="Viridis", zmin=0,
                               colorbar=dict(title="weight"),
                               hovertemplate="query %{y:.2f} s → key %{x:.2f} s: %{z:.3f}<extra></extra>"))
    if recording_end is not None and token_times[0] < recording_end < token_times[-1]:
        fig.add_vline(x=recording_end, line=dict(color="white", dash="dash", width=2),
                      annotation_text="end of recording (zero padding after)", annotation_position="top right")
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=40, b=10), title=title,
                      xaxis_title="key (seconds)", yaxis_title="query (seconds)",
                      xaxis=dict(range=[token_times[0], token_times[-1]]), yaxis=dict(autorange="reversed"))
    fig.update_xaxes(constrain="domain")
    return fig


def window_probabilities(starts_s: np.ndarray, window_probs: np.ndarray, class_names: list[str]) -> go.Figure:
    """Class x window heat map of per-window probabilities."""
    fig = go.Figure(go.Heatmap(z=window_probs.T, x=starts_s, y=class_names, colorscale="Blues", zmin=0, zmax=1,
                               hovertemplate="window at %{x:.2f} s, %{y}: %{z:.3f}<extra></extra>"))
    fig.update_layout(height=120 + 18 * len(class_names), margin=dict(l=10, r=10, t=10, b=10),
                      xaxis_title="window start (seconds)", yaxis=dict(type="category"))
    return fig


def saliency_curves(curves: list[dict]) -> go.Figure:
    """Grad-CAM and input-gradient saliency over seconds (each 0..1)."""
    fig = go.Figure()
    for c in curves:
        label = "Grad-CAM (" + c["layer"] + ")" if c["method"] == "grad_cam" else "input-gradient saliency"
        fig.add_trace(go.Scatter(x=c["times"], y=c["values"], mode="lines", name=label))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="seconds",
                      yaxis=dict(title="relevance (max 1)", range=[0, 1.05]),
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0))
    return fig


def contribution_bars(labels: list[str], values: list[float], axis_title: str) -> go.Figure:
    """Signed contributions to a logit (for the class in red, against it in blue), one bar per label."""
    values = np.asarray(values, dtype=float)
    fig = go.Figure(go.Bar(x=[str(v) for v in labels], y=values,
                           marker_color=np.where(values >= 0, OVERLAY_COLOR, "#1f77b4").tolist(),
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=10, b=10), xaxis=dict(title=axis_title, type="category"),
                      yaxis_title="contribution to the logit")
    return fig
