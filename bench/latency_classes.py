"""The latency estimate from per-operator-class rates (core.profiling.op_latency) against measured
latency, per zoo model at its defaults: issue 20's "within +-25 % of measured for every zoo model".

    .venv/bin/python bench/latency_classes.py [--batch 32,8] [--rounds 3] [--tables 2] [--json]

Each table is a fresh one (measured from nothing, as on a new machine; not the cache), so the
spread between tables is the calibration's own noise. For each table and batch, every model's
estimate is set against the median of `rounds` measurements (core.profiling.latency.
measure_latency_ms: the median wall time of 10 forwards after 3 warm-up ones), the models taken
in turn each round so that a machine whose speed drifts meets all of them alike. One torch
thread, malloc tuned as in every `python -m core` process. Prints estimate/measured per model
and how many are within +-25 %, beside the profile card's FLOPs / (peak x 0.25) estimate, and
the time of a fixed reference mix of kernels before and after calibrating and after each round:
on a shared host the machine's own speed moves by as much as the estimate's error.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core.models.registry import create, list_models, spec  # noqa: E402
from core.profiling.flops import count_flops  # noqa: E402
from core.profiling.latency import estimate_latency_ms, measure_latency_ms  # noqa: E402
from core.profiling.op_latency import Rates, estimate_trace_ms, trace_forward  # noqa: E402
from core.runtime import tune_malloc  # noqa: E402

TOLERANCE = 0.25


def reference_ms() -> float:
    """A fixed mix of kernels (conv, matmul, GELU): how fast the machine runs right now."""
    from core.profiling.op_latency import median_seconds

    conv, x = torch.nn.Conv1d(64, 64, 3, padding=1), torch.randn(8, 64, 128)
    a, b, c = torch.randn(256, 512), torch.randn(512, 512), torch.randn(1 << 20)
    with torch.no_grad():
        return statistics.median(median_seconds(lambda: (conv(x), a @ b, torch.nn.functional.gelu(c)))
                                 for _ in range(5)) * 1e3


def run(batches: list[int], rounds: int, tables: int, names: list[str]) -> dict:
    torch.set_num_threads(1)
    tune_malloc()
    models, flops = {}, {}
    for name in names:
        torch.manual_seed(0)
        models[name] = create(name, spec(name).default_input).eval()
        flops[name] = count_flops(models[name], torch.randn(1, *spec(name).default_input)).total
    # the same for every table: traced once, and the FLOPs estimate from the cached peak
    traces = {(name, batch): trace_forward(models[name], spec(name).default_input, batch)
              for batch in batches for name in names}
    flops_estimates = {(name, batch): estimate_latency_ms(flops[name] * batch) for name, batch in traces}
    results = {"batches": batches, "rounds": rounds, "tables": []}
    for table in range(tables):
        rates = Rates(threads=1)
        reference = [reference_ms()]
        start = time.perf_counter()
        estimates = {key: estimate_trace_ms(trace, rates) for key, trace in traces.items()}
        calibration_s = time.perf_counter() - start
        reference.append(reference_ms())
        measured: dict[tuple, list[float]] = {key: [] for key in estimates}
        while_measuring = []
        for _ in range(rounds):
            for (name, batch) in estimates:
                measured[(name, batch)].append(measure_latency_ms(models[name], spec(name).default_input, batch))
            while_measuring.append(reference_ms())
        rows = []
        for (name, batch), est in estimates.items():
            median = statistics.median(measured[(name, batch)])
            rows.append({"model": name, "batch": batch, "estimated_ms": round(est.total_ms, 3),
                         "measured_ms": round(median, 3), "measured_range_ms": [round(min(measured[(name, batch)]), 3),
                                                                               round(max(measured[(name, batch)]), 3)],
                         "ratio": round(est.total_ms / median, 3),
                         "flops_estimate_ratio": round(flops_estimates[(name, batch)] / median, 3),
                         "by_class_ms": {k: round(v, 3) for k, v in est.by_class.items()}})
        results["tables"].append({"calibration_s": round(calibration_s, 1), "points": sum(map(len, rates.tables.values())),
                                  "reference_ms": {"calibrating": [round(r, 2) for r in reference],
                                                   "measuring": [round(r, 2) for r in while_measuring]},
                                  "rows": rows})
    return results


def report(results: dict) -> bool:
    met = True
    for i, table in enumerate(results["tables"]):
        print(f"table {i + 1}: measured {table['points']} grid points and the element-wise operators in "
              f"{table['calibration_s']} s; the reference kernels took {table['reference_ms']['calibrating']} ms "
              f"around it and {table['reference_ms']['measuring']} ms while the models were measured")
        for batch in results["batches"]:
            rows = [r for r in table["rows"] if r["batch"] == batch]
            for r in rows:
                flag = "" if abs(r["ratio"] - 1) <= TOLERANCE else "   <- outside"
                lo, hi = r["measured_range_ms"]
                print(f"  batch {batch:3d} {r['model']:24s} estimated {r['estimated_ms']:9.2f} ms  measured "
                      f"{r['measured_ms']:9.2f} ms ({lo:.1f}-{hi:.1f})  ratio {r['ratio']:5.2f} "
                      f"(FLOPs estimate {r['flops_estimate_ratio']:5.2f}){flag}")
            ratios = [r["ratio"] for r in rows]
            within = sum(abs(x - 1) <= TOLERANCE for x in ratios)
            met = met and within == len(ratios)
            old = [r["flops_estimate_ratio"] for r in rows]
            print(f"  batch {batch}: estimate/measured median {statistics.median(ratios):.2f}, range "
                  f"{min(ratios):.2f}-{max(ratios):.2f}; {within} of {len(ratios)} within +-{TOLERANCE:.0%} "
                  f"(the FLOPs estimate: median {statistics.median(old):.2f}, range {min(old):.2f}-{max(old):.2f}, "
                  f"{sum(abs(x - 1) <= TOLERANCE for x in old)} within)")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="32,8", help="batch sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each model per table")
    parser.add_argument("--tables", type=int, default=2, help="fresh calibration tables")
    parser.add_argument("--models", default="", help="comma-separated zoo models (default: all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args(argv)
    names = args.models.split(",") if args.models else list_models()
    results = run([int(b) for b in args.batch.split(",")], args.rounds, args.tables, names)
    met = report(results)
    if args.json:
        print(json.dumps(results))
    print("all within the target" if met else "not all within the target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
