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
    """The heaviest layers by FLOPs."""
    rows = sorted((r for r in layers if r.get("flops")), key=lambda r: r["flops"], reverse=True)[:top]
    rows.reverse()
    fig = go.Figure(go.Bar(x=[r["flops"] for r in rows], y=[r["name"] for r in rows], orientation="h",
                           text=[human_count(r["flops"]) for r in rows], textposition="auto"))
    fig.update_layout(height=max(200, 28 * len(rows) + 60), margin=dict(l=10, r=10, t=30, b=10),
                      title=f"Heaviest {len(rows)} layers (FLOPs)")
    return fig


def block_diagram(tree: list[tuple[str, str, int]]) -> str:
    """Graphviz DOT for the model's top-level blocks: (name, type, params) rows in order."""
    lines = ['digraph G {', 'rankdir=LR; node [shape=box, style="rounded,filled", fillcolor="#eef3fa", fontsize=11];',
             'input [label="input", shape=ellipse, fillcolor="#ffffff"];']
    previous = "input"
    for i, (name, kind, params) in enumerate(tree):
        node = f"n{i}"
        lines.append(f'{node} [label="{name}\\n{kind}\\n{human_count(params)} params"];')
        lines.append(f"{previous} -> {node};")
        previous = node
    lines.append('output [label="logits", shape=ellipse, fillcolor="#ffffff"];')
    lines.append(f"{previous} -> output;")
    lines.append("}")
    return "\n".join(lines)


def layer_table(layers: list[dict]):
    """The profiler's per-layer rows as a DataFrame (sortable in the page)."""
    import pandas as pd

    frame = pd.DataFrame(layers)
    if frame.empty:
        return frame
    if "output_shape" in frame:
        frame["output_shape"] = frame["output_shape"].astype(str)
    return frame


def highlight_heaviest(frame, column: str = "flops", top: int = 3):
    """Style the `top` heaviest rows so they stand out in the table."""
    if frame.empty or column not in frame:
        return frame
    threshold = frame[column].nlargest(top).min()

    def shade(row):
        heavy = row[column] >= threshold and row[column] > 0
        return ["background-color: #ffe3c2" if heavy else ""] * len(row)

    return frame.style.apply(shade, axis=1)
