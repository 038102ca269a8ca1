"""`python -m core importance`: which channel, moment or frequency band a run's accuracy rests on.

    python -m core importance --run demo-imu                          # each channel shuffled across windows
    python -m core importance --run demo-imu --method ablation        # each channel set to its training mean
    python -m core importance --run demo-imu --by time --blocks 8     # contiguous blocks of the window
    python -m core importance --run demo-audio --by band --json       # mel-band blocks, named by Hz

Each unit is perturbed in every window of the split and the run scores the split again: the
accuracy drop is the unit's importance, with a 95 % interval over --repeats permutations
(Student t; ablation is deterministic: one pass, no interval), and the recall drop per class.
"""
from __future__ import annotations

import argparse

from core.commands import emit
from core.explore.importance import DEFAULT_REPEATS, IMPORTANCE_METHODS, IMPORTANCE_UNITS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("importance", help="accuracy drop per channel, time block or frequency band",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run id or run name (demo-imu, demo-audio work out of the box)")
    p.add_argument("--by", choices=list(IMPORTANCE_UNITS), default="channel",
                   help=_help(IMPORTANCE_UNITS))
    p.add_argument("--method", choices=list(IMPORTANCE_METHODS), default="permutation",
                   help=_help(IMPORTANCE_METHODS))
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="permutations per unit (default %(default)s)")
    p.add_argument("--blocks", type=int, default=None,
                   help="time or band blocks (default 8, fewer when the axis is shorter)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations")
    p.add_argument("--json", action="store_true", help="print JSON (every number, per class and per repeat)")
    p.set_defaults(func=run)


def _help(choices: dict) -> str:
    return "; ".join(f"{c.name}: {c.help}" for c in choices.values()).replace("%", "%%")  # argparse formats %


def run(args: argparse.Namespace) -> int:
    from core.commands.predict import resolve_run
    from core.explore.importance import importance
    from core.store import Store

    store = Store()
    run_id = resolve_run(store, args.run)
    result = importance(run_id, by=args.by, method=args.method, repeats=args.repeats, split=args.split,
                        seed=args.seed, blocks=args.blocks, store=store)
    emit(result.to_dict(), args.json, table(result))
    return 0


def table(result) -> str:
    """The readable report: one row per unit (drop, interval, recall drop per class)."""
    unit = IMPORTANCE_UNITS[result.by].label.lower()
    lines = [f"run {result.run_id} on its {result.split} split ({result.n_windows} windows): baseline accuracy "
             f"{result.baseline_accuracy:.3f}",
             f"{unit} importance by {result.method}, {result.repeats} "
             f"{'permutation' if result.method == 'permutation' else 'pass'}{'s' if result.repeats != 1 else ''}; "
             f"interval: {result.interval}",
             "drop = baseline accuracy - accuracy with the unit perturbed; per class: recall drop"]
    width = max(len(unit), *(len(n) for n in result.names))
    short = [c[:10] for c in result.class_names]
    cols = [max(6, len(c)) for c in short]
    lines.append(f"  {unit:<{width}s}  {'drop':>6s}  {'95 % interval':>16s}  "
                 + "  ".join(f"{c:>{w}s}" for c, w in zip(short, cols)))
    for u, name in enumerate(result.names):
        recall = "  ".join(("" if v != v else f"{v:+.3f}").rjust(w) for v, w in zip(result.per_class[:, u], cols))
        lines.append(f"  {name:<{width}s}  {result.drop[u]:+.3f}  [{result.low[u]:+.3f}, {result.high[u]:+.3f}]  "
                     + recall)
    top = [f"{result.names[i]} ({result.drop[i]:+.3f})" for i in result.order[:3]]
    lines.append("most important: " + ", ".join(top))
    return "\n".join(lines)
