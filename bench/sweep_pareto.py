"""A finished cost-aware sweep's Pareto front with measured latency beside the estimate: every
complete trial's model is rebuilt and timed on this machine (batch 1, one thread, the
profiler's measure_latency_ms), and the figure (accuracy against estimated and against
measured latency) is drawn with plotly and photographed in headless Chromium.

    python bench/sweep_pareto.py [--study NAME] [--storage URL] [--out docs/results/sweep_pareto.png]

Prints a markdown table (trial, model, parameters, FLOPs, estimated and measured ms, validation
accuracy, on the front or not) and the ratio measured / estimated per trial.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

def measure(rows: list[dict], spec) -> list[dict]:
    import torch

    from core import sweep
    from core.models import registry
    from core.profiling.latency import measure_latency_ms

    torch.set_num_threads(1)
    out = []
    for r in rows:
        config = sweep.trial_config(spec, r["overrides"])
        shape, classes = sweep.input_of(config)
        model = registry.create(config.model.name, shape, classes, **config.model.hparams).eval()
        measured = measure_latency_ms(model, shape, batch_size=1)
        out.append({**r, "model": config.model.name, "measured_ms": measured})
    return out


def figure(rows: list[dict], front: set[int], metric: str):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, shared_yaxes=True,
                        subplot_titles=("against estimated latency (before training)",
                                        "against measured latency (this CPU, batch 1, one thread)"))
    colors = {"resnet1d": "#2a6fb0", "tcn_dilated": "#e07b39", "cnn_cbam_1d": "#3a9d5d",
              "imu_se_convnext_lstm": "#8e6bbf"}
    for col, key in ((1, "latency_ms"), (2, "measured_ms")):
        for model in sorted({r["model"] for r in rows}):
            mine = [r for r in rows if r["model"] == model]
            fig.add_trace(go.Scatter(
                x=[r["costs"]["latency_ms"] if key == "latency_ms" else r["measured_ms"] for r in mine],
                y=[r["value"] for r in mine], mode="markers", name=model, showlegend=col == 1,
                marker={"size": [14 if r["number"] in front else 8 for r in mine], "color": colors.get(model, "#777"),
                        "line": {"width": [2 if r["number"] in front else 0 for r in mine], "color": "#c0392b"}},
                text=[f"trial {r['number']}" for r in mine]), row=1, col=col)
        line = sorted((r for r in rows if r["number"] in front),
                      key=lambda r: r["costs"]["latency_ms"] if key == "latency_ms" else r["measured_ms"])
        fig.add_trace(go.Scatter(x=[r["costs"]["latency_ms"] if key == "latency_ms" else r["measured_ms"] for r in line],
                                 y=[r["value"] for r in line], mode="lines", line={"color": "#c0392b", "shape": "hv"},
                                 name="Pareto front (estimated)", showlegend=col == 1), row=1, col=col)
        fig.update_xaxes(title_text="ms per window", type="log", row=1, col=col)
    fig.add_vline(x=1.0, line_dash="dash", annotation_text="1 ms budget", row=1, col=1)
    fig.update_yaxes(title_text=metric, row=1, col=1)
    fig.update_layout(width=1300, height=520, margin=dict(t=60, l=60, r=20, b=50), template="plotly_white",
                      title="HAPT, 6 activities: accuracy against latency per window (red ring: Pareto front)")
    return fig


def main() -> int:
    from core import sweep

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", help="default: the newest study with latency_ms as an objective")
    parser.add_argument("--storage")
    parser.add_argument("--out", default="docs/results/sweep_pareto.png")
    args = parser.parse_args()
    if not args.study:
        cost_aware = [s["name"] for s in sweep.list_studies(args.storage)
                      if "latency_ms" in sweep.load(s["name"], args.storage)[1].settings.costs]
        if not cost_aware:
            print("sweep_pareto: no cost-aware study in the storage yet (run "
                  "`python -m core sweep --sweep-preset hapt_cost_aware_1ms` first); nothing to measure")
            return 0
        args.study = cost_aware[-1]
    _, spec = sweep.load(args.study, args.storage)
    complete = [r for r in sweep.trials(args.study, args.storage) if r["state"] == "complete"]
    if not complete:
        print("no complete trial", file=sys.stderr)
        return 1
    rows = measure(complete, spec)
    front = {r["number"] for r in sweep.pareto(complete, spec.settings)}
    print("| trial | model | params | FLOPs | est. ms | measured ms | measured/est. | val accuracy | front |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: r["costs"]["latency_ms"]):
        c = {**sweep.costs_of(sweep.trial_config(spec, r["overrides"]), {"latency_ms"}), **r["costs"]}
        print(f"| {r['number']} | {r['model']} | {c['params']:,} | {c['flops'] / 1e6:.2f} M | {c['latency_ms']:.3f} | "
              f"{r['measured_ms']:.3f} | {r['measured_ms'] / c['latency_ms']:.2f} | {r['value']:.4f} | "
              f"{'yes' if r['number'] in front else ''} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from bench.figures_png import render_png
    render_png(figure(rows, front, spec.settings.metric), out)
    print(f"figure: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
