"""`python -m core evaluate`: score a run, or an ensemble of runs, on its own data split.

    python -m core evaluate --run RUN_ID                      # its test split: accuracy, macro-F1, per class
    python -m core evaluate --run A --run B --run C --json    # an ensemble: the mean of their probabilities
    python -m core evaluate --ensemble ens-20250101-120000-3fa9c2   # the seeds `train --ensemble N` trained

The run's data config is loaded again (features from the disk cache) and normalized with
its stored training statistics, so a single run reproduces its recorded test accuracy.
An ensemble's runs must have been tested on the same examples (e.g. the same held-out
speaker); each member's own accuracy is printed next to the ensemble's. --adapt-bn scores
it with each model's BatchNorm statistics re-estimated on the split's own (unlabeled) inputs:
test-time adaptation to a held-out speaker or subject, as `predict --adapt-bn` does for files.
"""
from __future__ import annotations

import argparse

from core.commands import emit


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="score a run or an ensemble of runs on its test split",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", default=[], help="run id or run name; repeat it for an ensemble")
    p.add_argument("--ensemble", metavar="TAG",
                   help="the completed runs of a seed ensemble (its tag, or the name its runs share)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--adapt-bn", action="store_true",
                   help="re-estimate BatchNorm statistics on the split's inputs first (test-time adaptation)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.commands.predict import load_runs
    from core.infer import evaluate_split
    from core.store import Store

    store = Store()
    refs = _runs(store, args)
    scores = evaluate_split(load_runs(store, refs, args.checkpoint), args.split, adapt_bn=args.adapt_bn)
    if args.ensemble:
        scores["ensemble"] = args.ensemble
    what = "run " + scores["run_ids"][0] if len(scores["run_ids"]) == 1 else f"ensemble of {len(scores['run_ids'])} runs"
    lines = [f"{what} on its {args.split} split ({scores['n']} examples"
             + (", BatchNorm adapted to them" if args.adapt_bn else "")
             + f"): accuracy {scores['accuracy']:.4f}, macro-F1 {scores['macro_f1']:.4f}"]
    for run_id, acc in (scores.get("member_accuracy") or {}).items():
        lines.append(f"  member {run_id}: accuracy {acc:.4f}")
    per = scores["per_class"]
    lines += [f"  {name:>12s}  F1 {f1:.3f}  recall {r:.3f}" for name, f1, r in zip(per["class_names"], per["f1"], per["recall"])]
    emit(scores, args.json, "\n".join(lines))
    return 0


def _runs(store, args: argparse.Namespace) -> list[str]:
    """The run ids or names to score: --run's, or the completed members of --ensemble."""
    from core.ensembles import get_ensemble
    from core.errors import ConfigError

    if bool(args.run) == bool(args.ensemble):
        raise ConfigError("give --run (once, or repeated for an ensemble) or --ensemble TAG, not both or neither")
    return args.run or get_ensemble(store, args.ensemble).run_ids
