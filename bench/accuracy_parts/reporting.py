"""Reporting: figures (curves, confusion) as PNG, result JSON, the console table and
docs/RESULTS.md regenerated from every result JSON (its hand-written notes kept)."""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path


from bench.accuracy_parts.protocols import (COMMAND, NOTES_END, NOTES_PLACEHOLDER, NOTES_START, PROTOCOLS, RESULTS_DIR,
                                            RESULTS_MD)

# ---------------------------------------------------------------------------- figures
def curve_figures(result: dict) -> list:
    """[loss figure, accuracy figure] over epochs (every fold's lines for a fold protocol)."""
    from dashboard.figures import curves

    series_sets = ([(f"{f['fold']} ", f["curves"]) for f in result["folds"]] if result.get("folds")
                   else [("", result.get("curves") or {})])
    figures = []
    for metric, title in (("loss", "Loss per epoch"), ("accuracy", "Accuracy per epoch")):
        series = {}
        for prefix, c in series_sets:
            for split in ("train", "val"):
                values = c.get(f"{split}_{metric}")
                if values:
                    pairs = [(x, y) for x, y in zip(c["epoch"], values) if y is not None]
                    series[f"{prefix}{split}"] = ([x for x, _ in pairs], [y for _, y in pairs])
        fig = curves(series, f"{result['protocol']}: {title.lower()}", x_title="epoch", y_title=metric)
        fig.update_layout(width=560, height=360, legend=dict(y=-0.25))
        figures.append(fig)
    return figures


def confusion_png_figure(result: dict):
    from dashboard.figures import confusion_figure

    names = result["per_class"]["class_names"]
    what = "pooled over folds" if result.get("folds") else "test split"
    fig = confusion_figure(result["confusion"], names, normalize=True,
                           title=f"{result['protocol']}: confusion, {what} (row-normalized)")
    height = fig.layout.height or 420
    fig.update_layout(width=int(height) + 140)
    return fig


def write_figures(result: dict, out_dir: Path, renderer) -> dict:
    """Curves and confusion PNGs of one result; {} when it has no confusion (an ERROR)."""
    if result.get("confusion") is None:
        return {}
    name = result["protocol"]
    curves_path = renderer.render(curve_figures(result), out_dir / f"{name}-curves.png", columns=2)
    confusion_path = renderer.render(confusion_png_figure(result), out_dir / f"{name}-confusion.png")
    return {"curves": curves_path.name, "confusion": confusion_path.name}


# ---------------------------------------------------------------------------- output
def write_json(result: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result['protocol']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def human_count(n: float | None) -> str:
    if n is None:
        return "-"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f}"


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _epochs_text(result: dict) -> str:
    epochs = result.get("epochs")
    if isinstance(epochs, list):
        return "/".join(str(e) for e in epochs) if len(set(epochs)) > 1 else f"{epochs[0]} x{len(epochs)}"
    return "-" if epochs is None else str(epochs)


TABLE_HEADER = ("Protocol", "Data", "Split", "Model", "Params", "FLOPs", "s/epoch", "Epochs", "Accuracy",
                "Macro-F1", "Target", "Result")


def table_row(result: dict) -> list[str]:
    return [result["protocol"], result.get("data", ""), result.get("split", ""), result.get("model", "-"),
            human_count(result.get("params")), human_count(result.get("flops")),
            _fmt(result.get("seconds_per_epoch"), 2), _epochs_text(result), _fmt(result.get("accuracy")),
            _fmt(result.get("macro_f1")), "-" if result.get("target") is None else f">= {result['target']:.3g}",
            result.get("result", "-")]


def print_table(results: list[dict], stream=None) -> None:
    """A plain-text table of results (no Data/Split columns: those are in the JSON and report)."""
    stream = stream or sys.stdout
    keep = [0, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    rows = [[TABLE_HEADER[i] for i in keep]] + [[table_row(r)[i] for i in keep] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(keep))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)), file=stream)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=stream)
    for r in results:
        if r.get("error"):
            print(f"{r['protocol']}: {r['error']}", file=stream)


def load_results(results_dir: Path, mode: str = "full") -> list[dict]:
    """Result JSONs of `mode` in `results_dir`, in protocol order (unknown names last)."""
    found = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            print(f"report: {path} is not readable JSON ({error}); left out", file=sys.stderr)
            continue
        if isinstance(data, dict) and data.get("protocol") and data.get("mode", "full") == mode:
            found.append(data)
    order = list(PROTOCOLS)
    return sorted(found, key=lambda r: (order.index(r["protocol"]) if r["protocol"] in order else len(order),
                                        r["protocol"]))


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _machine_text(m: dict) -> str:
    text = f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores (torch threads {m.get('torch_threads', '?')}), " \
           f"torch {m.get('torch', '?')}, Python {m.get('python', '?')}"
    return text + (f", GPU {m['gpu']}" if m.get("gpu") else "")


def kept_notes(existing: str | None) -> str:
    """The hand-written notes between the markers of an existing report (placeholder if none)."""
    if existing and NOTES_START in existing and NOTES_END in existing:
        return existing.split(NOTES_START, 1)[1].split(NOTES_END, 1)[0].strip("\n")
    return NOTES_PLACEHOLDER


def render_report(results: list[dict], notes: str, figures_dir: str = "results",
                  generated: str | None = None) -> str:
    """The markdown of docs/RESULTS.md for `results` (figure links relative to docs/)."""
    generated = generated or dt.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = ["# Sigscope on real data: accuracy results", "",
             f"Generated by `{COMMAND} --report` on {generated} from `docs/results/*.json`. Everything outside "
             "the notes section is regenerated; write discussion between the notes markers.", ""]
    machines = {json.dumps(r.get("machine", {}), sort_keys=True) for r in results}
    if results:
        lines += [f"**Machine:** {_machine_text(results[-1].get('machine', {}))}."
                  + (" (Some results come from other machines: see each section.)" if len(machines) > 1 else ""), ""]
    lines += ["Test split accuracy and macro-F1; FLOPs are one forward pass per example "
              "(2 FLOPs per multiply-add); s/epoch is the median training-loop time of an epoch on the "
              "machine's CPU; Epochs is epochs run (early stopping may stop before the configured count).", ""]
    lines += [_md_row(list(TABLE_HEADER)), _md_row(["---"] * len(TABLE_HEADER))]
    present = {r["protocol"] for r in results}
    for r in results:
        lines.append(_md_row(table_row(r)))
    for name, p in PROTOCOLS.items():
        if name not in present:
            lines.append(_md_row([name, p.data, p.split, "-", "-", "-", "-", "-", "not run yet", "-",
                                  "-" if p.target is None else f">= {p.target:.3g}", "-"]))
    counts = {v: sum(r.get("result") == v for r in results) for v in ("PASS", "FAIL", "ERROR")}
    lines += ["", f"{counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['ERROR']} ERROR, "
              f"{len(PROTOCOLS) - len(present & set(PROTOCOLS))} not run yet "
              "(a protocol without a target is reported only)."]
    lines += ["", "## Reproduce", "", "```"]
    lines += [r.get("command") or PROTOCOLS[r["protocol"]].command() for r in results]
    lines += [PROTOCOLS[n].command() for n in PROTOCOLS if n not in present]
    lines += [f"{COMMAND} --report   # regenerate this file", "```", "",
              "Full protocols read `../shared/data` (HAPT 25 subjects, FSDD 2,500 recordings); runs are stored in "
              "`runs/accuracy/` (open them on the dashboard with `SIGSCOPE_RUNS_DIR=runs/accuracy`).", "",
              "## Notes", "", NOTES_START, notes, NOTES_END, ""]
    for r in results:
        lines += _report_section(r, figures_dir)
    return "\n".join(lines).rstrip() + "\n"


def _report_section(r: dict, figures_dir: str) -> list[str]:
    lines = [f"## {r['protocol']}: {r.get('title', '')}", ""]
    lines += [f"- Data: {r.get('data', '-')}; split: {r.get('split', '-')}",
              f"- Model: `{r.get('model', '-')}` from preset `{r.get('preset', '-')}` (core/presets.py)"
              + (f"; each fold an ensemble of {r['seeds']} seeds (the mean of their probabilities)"
                 if (r.get("seeds") or 1) > 1 else ""),
              f"- Result: accuracy {_fmt(r.get('accuracy'))}, macro-F1 {_fmt(r.get('macro_f1'))}, "
              f"target {'-' if r.get('target') is None else '>= ' + format(r['target'], '.3g')}: **{r.get('result')}**"
              + (f" (with test-time BatchNorm adaptation to each held-out test set, `--adapt-bn`; without it accuracy "
                 f"{_fmt(r['unadapted']['accuracy'])}, macro-F1 {_fmt(r['unadapted']['macro_f1'])})"
                 if r.get("unadapted") else ""),
              f"- Command: `{r.get('command', '-')}`; date {r.get('date', '-')}; machine "
              f"{_machine_text(r.get('machine', {}))}",
              f"- Runs: {', '.join('`' + i + '`' for i in r.get('run_ids', []))} in `{r.get('runs_dir', '-')}`"]
    loads = [r.get("load_average_before"), r.get("load_average_after")]
    if any(v is not None for v in loads):
        lines.append(f"- Load average (1 min) before/after: {' / '.join('-' if v is None else f'{v:.1f}' for v in loads)} "
                     f"on {r.get('machine', {}).get('cores', '?')} cores (timings stretch when other jobs share them)")
    if r.get("split_sizes"):
        sizes = r["split_sizes"]
        lines.append(f"- Examples: train {sizes.get('train')}, val {sizes.get('val')}, test {sizes.get('test')}")
    if r.get("note"):
        lines.append(f"- Note: {r['note']}")
    if r.get("error"):
        lines.append(f"- Error: {r['error']}")
    lines.append("")
    if r.get("folds"):
        ensembles = any(len(f.get("members") or []) > 1 for f in r["folds"])
        adapted = any(f.get("unadapted") for f in r["folds"])
        header = (["Fold (test speaker)", "Accuracy", "Macro-F1"] + (["Without adaptation"] if adapted else [])
                  + (["Each seed alone"] if ensembles else []) + ["Epochs", "s/epoch", "Run"])
        lines += [_md_row(header), _md_row(["---"] * len(header))]
        for f in r["folds"]:
            plain = [_fmt(f["unadapted"]["accuracy"])] if adapted else []
            alone = [" / ".join(_fmt(m.get("adapted_accuracy", m["accuracy"]), 3) for m in f.get("members", []))
                     ] if ensembles else []
            lines.append(_md_row([f["fold"], _fmt(f["accuracy"]), _fmt(f["macro_f1"])] + plain + alone
                                 + [str(f["epochs"]), _fmt(f["seconds_per_epoch"], 2), f"`{f['run_id']}`"]))
        lines += ["", f"Mean accuracy {_fmt(r.get('accuracy'))}; pooled over all folds {_fmt(r.get('pooled_accuracy'))}.",
                  ""]
    figures = r.get("figures") or {}
    if figures.get("curves"):
        lines += [f"![{r['protocol']} learning curves]({figures_dir}/{figures['curves']})", ""]
    if figures.get("confusion"):
        lines += [f"![{r['protocol']} confusion matrix]({figures_dir}/{figures['confusion']})", ""]
    pc = r.get("per_class")
    if pc:
        lines += [_md_row(["Class", "Precision", "Recall", "F1", "Support"]), _md_row(["---"] * 5)]
        for i, name in enumerate(pc["class_names"]):
            lines.append(_md_row([name, _fmt(pc["precision"][i], 3), _fmt(pc["recall"][i], 3), _fmt(pc["f1"][i], 3),
                                  str(int(pc["support"][i]))]))
        lines.append("")
    return lines


def write_report(results_dir: Path = RESULTS_DIR, md_path: Path = RESULTS_MD) -> Path:
    """Regenerate the markdown report from every full-mode JSON in `results_dir`, keeping its notes."""
    md_path = Path(md_path)
    existing = md_path.read_text() if md_path.exists() else None
    figures_dir = os.path.relpath(Path(results_dir).resolve(), md_path.resolve().parent)
    text = render_report(load_results(results_dir), kept_notes(existing), figures_dir=figures_dir)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(text)
    return md_path


