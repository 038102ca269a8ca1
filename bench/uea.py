"""Small UEA/UCR sets: Sigscope's models against aeon's MiniRocket, on the same TRAIN/TEST split.

    .venv/bin/python bench/uea.py                                   # 7 datasets x 3 seeds x every method
    .venv/bin/python bench/uea.py --datasets GunPoint,ArrowHead --seeds 1 --methods uea_small,aeon_minirocket
    .venv/bin/python bench/uea.py --json results.json --figure docs/results/uea.png
    .venv/bin/python bench/uea.py --merge a.json b.json --figure uea.png   # tables from runs split over processes

For each dataset (all shipped offline inside aeon) and seed, every method is fitted on the
TRAIN file and scored on the TEST file: test accuracy and seconds to fit (wall clock and this
process's CPU time; the machine may be shared, so CPU seconds are the fairer figure). The
methods:

- `uea_small`: the preset of that name, as a user would pick it for any dataset, untouched;
- `inception_time`, `resnet1d`: the zoo models at their defaults under the small-data regime
  (`data.validation=auto`: every training series trains, the lowest-training-loss epoch is kept);
- `minirocket_gradient`, `minirocket_ridge`: Sigscope's MiniRocket with its head trained by
  the Trainer, or fitted in closed form (ridge, alpha chosen by cross-validation);
- `aeon_minirocket`: aeon's `MiniRocketClassifier` (MiniRocket + StandardScaler + RidgeClassifierCV),
  fed the very arrays Sigscope trains on (series of unequal length zero-padded alike).

Every Sigscope method runs through `core.jobs.run_job` into a temporary store, exactly as a run
started from Train does. The table gives per dataset the mean (and range) over seeds; the last
rows give each method's mean accuracy over the datasets and its mean rank (1 = best; ties share
the average rank). Epochs of the gradient-trained models: --epochs (printed; a fixed budget, not
tuned per dataset). Everything runs on --threads torch threads (1, as aeon's n_jobs=1): on a
shared 2-core machine two threads made a small conv net's epoch 13x slower than one (OpenMP
barriers waiting on busy cores), so datasets are better split over processes (--datasets, then
--merge).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

DATASETS = ("BasicMotions", "JapaneseVowels", "GunPoint", "ArrowHead", "OSULeaf", "ItalyPowerDemand", "ACSF1")
METHODS = ("uea_small", "inception_time", "minirocket_gradient", "minirocket_ridge", "resnet1d", "aeon_minirocket")
SMALL_REGIME = {"data.source": "uea", "data.split": "fixed", "data.validation": "auto", "train.probes.enabled": False}
DEFAULT_EPOCHS = 100


@dataclass
class Result:
    dataset: str
    method: str
    seed: int
    accuracy: float
    wall_s: float
    cpu_s: float
    note: str = ""


def config_for(method: str, dataset: str, seed: int, epochs: int):
    """The run config of a Sigscope method (the preset's own choices, untouched, for uea_small)."""
    from core import presets
    from core.config import RunConfig

    if method == "uea_small":
        return presets.get("uea_small").config.with_overrides({"data.options.name": dataset, "train.seed": seed},
                                                               explicit=False)
    choices = {"inception_time": {"model.name": "inception_time"}, "resnet1d": {"model.name": "resnet1d"},
               "minirocket_gradient": {"model.name": "minirocket", "train.fit": "gradient"},
               "minirocket_ridge": {"model.name": "minirocket", "train.fit": "ridge"}}[method]
    return RunConfig().with_overrides({**SMALL_REGIME, "data.options.name": dataset, "train.seed": seed,
                                       "train.epochs": epochs, "train.batch_size": 16, **choices}, explicit=False)


def run_sigscope(method: str, dataset: str, seed: int, epochs: int, store) -> Result:
    from core.jobs import run_job

    cfg = config_for(method, dataset, seed, epochs)
    run_id = store.create_run(cfg.to_dict(), name=f"{method} {dataset} seed {seed}")
    wall, cpu = time.perf_counter(), time.process_time()
    status = run_job(store, run_id, cfg, device="cpu")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    run = store.get_run(run_id)
    if status != "completed":
        return Result(dataset, method, seed, float("nan"), wall, cpu, f"{status}: {run.get('error')}")
    summary = run["summary"] or {}
    return Result(dataset, method, seed, float(summary["test_metrics"]["test_accuracy"]), wall, cpu,
                  summary.get("epochs_rule", ""))


def run_aeon(dataset: str, seed: int) -> Result:
    """aeon's MiniRocketClassifier on the arrays Sigscope loads (the same padding)."""
    import numpy as np
    from aeon.classification.convolution_based import MiniRocketClassifier

    from core.config import DataConfig
    from core.data.uea import load_uea

    ex = load_uea(DataConfig(source="uea", options={"name": dataset}))
    test = ex.fixed_test
    wall, cpu = time.perf_counter(), time.process_time()
    clf = MiniRocketClassifier(random_state=seed, n_jobs=1).fit(ex.x[~test], ex.y[~test])
    accuracy = float(np.mean(clf.predict(ex.x[test]) == ex.y[test]))
    return Result(dataset, "aeon_minirocket", seed, accuracy, time.perf_counter() - wall,
                  time.process_time() - cpu)


def ranks(means: dict[str, float]) -> dict[str, float]:
    """Rank 1 = the highest accuracy; ties share their average rank."""
    order = sorted(means, key=lambda m: -means[m])
    out: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and abs(means[order[j + 1]] - means[order[i]]) < 1e-9:
            j += 1
        for m in order[i:j + 1]:
            out[m] = (i + j) / 2 + 1
        i = j + 1
    return out


def summarize(results: list[Result], methods: list[str], datasets: list[str]) -> dict:
    table: dict[str, dict[str, dict]] = {}
    for d in datasets:
        table[d] = {}
        for m in methods:
            rows = [r for r in results if r.dataset == d and r.method == m and r.accuracy == r.accuracy]
            if rows:
                accs = [r.accuracy for r in rows]
                table[d][m] = {"mean": statistics.fmean(accs), "min": min(accs), "max": max(accs),
                               "cpu_s": statistics.fmean(r.cpu_s for r in rows), "n": len(rows)}
    complete = [d for d in datasets if all(m in table[d] for m in methods)]
    per_rank = {m: [] for m in methods}
    for d in complete:
        for m, r in ranks({m: table[d][m]["mean"] for m in methods}).items():
            per_rank[m].append(r)
    overall = {m: {"mean_accuracy": statistics.fmean(table[d][m]["mean"] for d in complete) if complete else None,
                   "mean_rank": statistics.fmean(per_rank[m]) if complete else None} for m in methods}
    return {"table": table, "overall": overall, "datasets_ranked": complete}


def markdown(summary: dict, methods: list[str], datasets: list[str]) -> str:
    head = "| dataset | " + " | ".join(methods) + " |\n|---|" + "---|" * len(methods)
    lines = [head]
    for d in datasets:
        cells = []
        for m in methods:
            c = summary["table"][d].get(m)
            cells.append(f"{c['mean']:.3f} ({c['min']:.3f}-{c['max']:.3f}), {c['cpu_s']:.1f} s" if c else "—")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    o = summary["overall"]
    lines.append("| **mean accuracy** | " + " | ".join(
        f"**{o[m]['mean_accuracy']:.3f}**" if o[m]["mean_accuracy"] is not None else "—" for m in methods) + " |")
    lines.append("| **mean rank** | " + " | ".join(
        f"**{o[m]['mean_rank']:.2f}**" if o[m]["mean_rank"] is not None else "—" for m in methods) + " |")
    return "\n".join(lines)


def figure(summary: dict, methods: list[str], datasets: list[str]):
    import plotly.graph_objects as go

    fig = go.Figure()
    for m in methods:
        cells = [summary["table"][d].get(m) for d in datasets]
        fig.add_bar(name=m, x=list(datasets), y=[c["mean"] if c else None for c in cells],
                    error_y=dict(type="data", symmetric=False,
                                 array=[c["max"] - c["mean"] if c else 0 for c in cells],
                                 arrayminus=[c["mean"] - c["min"] if c else 0 for c in cells]))
    lowest = min((c["min"] for d in datasets for c in summary["table"][d].values()), default=0.0)
    fig.update_layout(barmode="group", title="Test accuracy per UEA/UCR dataset (mean over seeds, range as bars)",
                      yaxis=dict(title="test accuracy", range=[max(0.0, lowest - 0.05), 1.01]), width=1100, height=480,
                      legend=dict(orientation="h", y=-0.15))
    return fig


def run_all(datasets: list[str], methods: list[str], seeds: int, epochs: int, threads: int,
            first_seed: int = 0) -> list[Result]:
    import torch

    from core.store import Store

    torch.set_num_threads(threads)
    load = os.getloadavg()
    print(f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; "
          f"epochs {epochs}; seeds {seeds}; {threads} torch thread(s)", flush=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="uea-bench-") as tmp:
        os.environ["SIGSCOPE_RUNS_DIR"] = tmp
        store = Store(Path(tmp) / "sigscope.db")
        for d in datasets:
            for seed in range(first_seed, first_seed + seeds):
                for m in methods:
                    r = run_aeon(d, seed) if m == "aeon_minirocket" else run_sigscope(m, d, seed, epochs, store)
                    results.append(r)
                    print(f"{d:18s} seed {seed} {m:20s} acc {r.accuracy:.3f}  {r.wall_s:7.1f} s wall "
                          f"{r.cpu_s:7.1f} s CPU  {r.note[:80]}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds per dataset and method (3)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first seed (0); with --merge, more seeds of an earlier run can be added later")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"epochs of the gradient-trained methods but uea_small ({DEFAULT_EPOCHS})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--merge", type=Path, nargs="+", help="summarize the --json files of earlier runs instead")
    parser.add_argument("--json", type=Path, help="write every result and the summary here")
    parser.add_argument("--figure", type=Path, help="write the accuracy figure here as PNG")
    args = parser.parse_args()
    datasets = [d for d in args.datasets.split(",") if d]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")

    if args.merge:
        results = [Result(**r) for f in args.merge for r in json.loads(f.read_text())["results"]]
        datasets = [d for d in datasets if any(r.dataset == d for r in results)]
        methods = [m for m in methods if any(r.method == m for r in results)]
    else:
        results = run_all(datasets, methods, args.seeds, args.epochs, args.threads, args.first_seed)
    summary = summarize(results, methods, datasets)
    print(markdown(summary, methods, datasets))
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"results": [asdict(r) for r in results], "summary": summary,
                                         "epochs": args.epochs, "seeds": args.seeds, "threads": args.threads},
                                        indent=2))
    if args.figure:
        from bench.figures_png import PngRenderer
        with PngRenderer() as png:
            png.render(figure(summary, methods, datasets), str(args.figure))


if __name__ == "__main__":
    main()
