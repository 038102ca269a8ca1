"""Accuracy on real data: the issue-8 protocols, run end to end through Sigscope's own engine.

    .venv/bin/python bench/accuracy.py --only hapt6_subject        # one protocol, full data
    .venv/bin/python bench/accuracy.py --all                       # every protocol (hours on 2 cores)
    .venv/bin/python bench/accuracy.py --quick                     # CI: bundled data, lower bars, minutes
    .venv/bin/python bench/accuracy.py --report                    # docs/RESULTS.md from docs/results/*.json
    .venv/bin/python bench/accuracy.py --list                      # the protocols and their targets
    .venv/bin/python bench/accuracy.py --only fsdd_loso --set train.mixup_alpha=0.4 --out runs/ablation
                                                                   # an ablation: dotted config keys on top
    .venv/bin/python bench/accuracy.py --only fsdd_loso --seeds 3  # each fold: an ensemble of 3 seeds

Without --only/--all/--report/--list it runs --quick (so `make bench` stays minutes long).

Every run is an ordinary run in a Sigscope store (`runs/accuracy/` or --runs-dir): the
same `core.jobs.run_job` path as `python -m core train`, so the dashboard's Runs and
Monitor pages show them. A protocol starts from a preset (`core.presets.get(name).config`,
so the presets are what is reported) and overrides only what the protocol fixes (data,
classes, windows, split). Full protocols need ../shared/data; each
writes docs/results/<protocol>.json plus -curves.png and -confusion.png, and the report
docs/RESULTS.md is regenerated from every JSON present (its notes section is kept).

With --seeds N every run is trained N times (train.seed, +1, ...), and each fold is scored
as the ensemble of its N runs: the mean of their test probabilities (core.infer.evaluate_split),
each member's own accuracy kept next to it. With --adapt-bn each fold is scored after its
models' BatchNorm statistics are re-estimated on the held-out speaker's unlabeled test clips
(test-time adaptation, core.infer.adapt_batchnorm); the unadapted scores are kept beside it.

Per protocol: test accuracy, macro-F1, per-class F1, confusion matrix, training seconds
per epoch (median of the epochs, training loop only), params and forward FLOPs per example
(core.profile), epochs run, the command that reproduces it and PASS/FAIL against its target.
--quick runs a subset on the bundled samples for a few epochs against lower bars and
exits 1 on any FAIL.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from bench.accuracy_parts.protocols import (DEFAULT_RUNS_DIR, PROTOCOLS, QUICK_PROTOCOLS, RESULTS_DIR, ROOT,
                                            Protocol, missing_data)
from bench.accuracy_parts.reporting import _fmt, load_results, print_table, write_figures, write_json, write_report
from bench.accuracy_parts.running import machine_info, run_protocol
from core.errors import ConfigError, SigscopeError

os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))


# ---------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated protocol names (see --list)")
    parser.add_argument("--all", action="store_true", help="run every protocol on the full data")
    parser.add_argument("--quick", action="store_true",
                        help=f"CI mode: {', '.join(QUICK_PROTOCOLS)} on bundled data, few epochs, lower bars")
    parser.add_argument("--epochs", type=int, help="override train.epochs of every run")
    parser.add_argument("--model", help="preset or zoo model for the model-selectable protocol(s): "
                        + ", ".join(n for n, p in PROTOCOLS.items() if p.model_selectable))
    parser.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR,
                        help="run store folder (default runs/accuracy)")
    parser.add_argument("--out", type=Path, help="where result JSON/PNGs go (default docs/results; "
                        "--quick: <runs-dir>/quick-results)")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.add_argument("--report", action="store_true", help="regenerate docs/RESULTS.md from docs/results/*.json")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="run N folds of a fold protocol (fsdd_loso) at once, in worker processes")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted config key on top of the preset and protocol (as `python -m core train "
                             "--set`), for ablations; repeatable. Give --out too, to keep docs/results as reported")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="train every run N times (seeds train.seed, +1, ...) and score each fold as the "
                             "ensemble of the N (the mean of their probabilities)")
    parser.add_argument("--adapt-bn", action="store_true",
                        help="score each run (or fold ensemble) with its BatchNorm statistics re-estimated on the "
                             "unlabeled test inputs (test-time adaptation to the held-out speaker/subject); the "
                             "unadapted scores are reported next to it")
    parser.add_argument("--list", action="store_true", help="list the protocols and exit")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: train at least one seed")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs {args.epochs}: train at least 1 epoch")
    return args


def selected(args: argparse.Namespace) -> list[Protocol]:
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in PROTOCOLS]
        if unknown:
            raise ConfigError(f"--only {','.join(unknown)}: not a protocol; protocols: {', '.join(PROTOCOLS)}")
        if args.quick:
            no_quick = [n for n in names if PROTOCOLS[n].quick is None]
            if no_quick:
                raise ConfigError(f"--quick --only {','.join(no_quick)}: no quick form; quick protocols: "
                                  f"{', '.join(QUICK_PROTOCOLS)}")
        return [PROTOCOLS[n] for n in names]
    if args.quick:
        return [PROTOCOLS[n] for n in QUICK_PROTOCOLS]
    return list(PROTOCOLS.values())


def list_protocols() -> None:
    for p in PROTOCOLS.values():
        target = "report only" if p.target is None else f"target >= {p.target}"
        quick = f"; --quick bar >= {p.quick_target}" if p.quick is not None else ""
        folds = f", {len(p.folds)} folds" if p.folds else ""
        print(f"{p.name:20s} {p.title} [{p.preset}{folds}; {target}{quick}]")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        list_protocols()
        return 0
    if args.report and not (args.only or args.all or args.quick):
        path = write_report()
        print(f"wrote {path.relative_to(ROOT)} from {len(load_results(RESULTS_DIR))} result(s) in docs/results/")
        return 0
    if not (args.only or args.all or args.quick):
        print("no --only/--all given: running the --quick CI subset (full protocols: --all or --only NAME; "
              "see --list)", file=sys.stderr)
        args.quick = True
    try:
        protocols = selected(args)
    except ConfigError as error:
        print(f"accuracy: {error}", file=sys.stderr)
        return 2
    if args.model and not any(p.model_selectable for p in protocols):
        print(f"accuracy: --model applies to "
              f"{', '.join(n for n, p in PROTOCOLS.items() if p.model_selectable)}, which is not selected",
              file=sys.stderr)
        return 2
    out_dir = args.out or (args.runs_dir / "quick-results" if args.quick else RESULTS_DIR)
    runnable, skipped = [], []
    for p in protocols:
        reason = missing_data(p, args.quick)
        (skipped if reason else runnable).append(reason or p)
    for line in skipped:
        print(line, file=sys.stderr)
    if not runnable:
        print("accuracy: nothing to run", file=sys.stderr)
        return 2

    from core.store import Store

    args.runs_dir.mkdir(parents=True, exist_ok=True)
    store = Store(args.runs_dir / "sigscope.db")
    renderer = None
    if not args.no_figures:
        from bench.figures_png import PngRenderer, why_unavailable
        reason = why_unavailable()
        if reason:
            print(f"accuracy: figures skipped: {reason}", file=sys.stderr)
        else:
            renderer = PngRenderer().__enter__()
    results = []
    try:
        for p in protocols:
            if p not in runnable:
                continue
            try:
                result = run_protocol(p, store, args.quick, args.epochs, args.model, args.parallel, args.sets,
                                      args.seeds, args.adapt_bn)
            except SigscopeError as error:
                result = {"protocol": p.name, "title": p.title, "data": p.data, "split": p.split,
                          "mode": "quick" if args.quick else "full", "result": "ERROR", "error": str(error),
                          "command": p.command(args.quick, args.epochs, args.model, args.sets, args.seeds,
                                               args.adapt_bn),
                          "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                          "machine": machine_info(), "target": p.quick_target if args.quick else p.target}
            if renderer is not None:
                result["figures"] = write_figures(result, out_dir, renderer)
            path = write_json(result, out_dir)
            print(f"{p.name}: {result['result']} accuracy {_fmt(result.get('accuracy'))} -> {path}", file=sys.stderr)
            results.append(result)
    finally:
        if renderer is not None:
            renderer.__exit__(None, None, None)
    print()
    print_table(results)
    if not args.quick and (args.report or out_dir.resolve() == RESULTS_DIR.resolve()):
        path = write_report()
        print(f"\nwrote {path.relative_to(ROOT)}")
    failed = [r["protocol"] for r in results if r["result"] in ("FAIL", "ERROR")]
    if failed:
        print(f"\nFAIL: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
