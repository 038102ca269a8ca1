"""`python -m core explore`: a run's windows embedded and drawn in 2-D, and its label issues.

    python -m core explore embed --run demo-imu                       # counts, embedding size, PCA map
    python -m core explore embed --run RUN_ID --method umap --seed 1 --json   # every point: id, x, y, ...
    python -m core explore embed --run RUN_ID --split test --method tsne
    python -m core explore label-issues --run RUN_ID [--folds 5] [--top 20] [--json]
    python -m core explore marks --run RUN_ID                          # the marks on the run's data
    python -m core explore marks --run RUN_ID --exclude 2:0:320 --relabel 2:0:384=SITTING
    python -m core explore marks --run RUN_ID --remove 2:0:320
    python -m core train --config run.json --marks                    # a new run that uses them

`embed` runs the model's forward_features on every window of the run's splits (cached in the
run's folder until its checkpoint changes) and projects them to 2-D with one of the methods
below (seeded, cached too). With --json it prints every point: window id, split, true and
predicted label, confidence, subject/speaker, recording, start time and (x, y).
"""
from __future__ import annotations

import argparse

from core.commands import emit
from core.explore.project import PROJECTIONS
from core.explore.windows import SPLITS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("explore", help="embed a run's windows in 2-D; find likely mislabeled windows",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="explore_command", required=True)
    methods = "; ".join(f"{name}: {m.help}" for name, m in PROJECTIONS.items())
    embed = sub.add_parser("embed", help="the run's forward_features of every window, projected to 2-D",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    embed.add_argument("--run", required=True, help="run id or run name (see `python -m core runs list`)")
    embed.add_argument("--method", choices=list(PROJECTIONS), default="pca", help=f"the 2-D map ({methods})")
    embed.add_argument("--seed", type=int, default=0, help="seed of the projection (default 0)")
    embed.add_argument("--split", action="append", choices=list(SPLITS), default=None,
                       help="a split to embed; repeat it for several (default: train, val and test)")
    embed.add_argument("--json", action="store_true", help="print JSON, with every point")
    embed.set_defaults(func=run_embed)
    issues = sub.add_parser("label-issues", help="rank the windows most likely mislabeled (cleanlab)")
    issues.add_argument("--run", required=True, help="run id or run name (see `python -m core runs list`)")
    issues.add_argument("--folds", type=int, default=None,
                        help="K-fold cross-validation runs over the training subjects/speakers (default: the run "
                             "scores its own validation and test windows)")
    issues.add_argument("--top", type=int, default=20, help="how many of the ranked windows to print (default 20)")
    issues.add_argument("--json", action="store_true", help="print JSON")
    issues.set_defaults(func=run_label_issues)
    marks = sub.add_parser("marks", help="list, add or remove the marks on a run's data (exclude, relabel as)")
    marks.add_argument("--run", required=True, help="a run on the data (run id or name); marks belong to the data")
    marks.add_argument("--exclude", action="append", default=[], metavar="WINDOW_ID",
                       help="leave this window out of new runs' training and validation (repeatable)")
    marks.add_argument("--relabel", action="append", default=[], metavar="WINDOW_ID=CLASS",
                       help="train this window as CLASS in new runs (repeatable)")
    marks.add_argument("--remove", action="append", default=[], metavar="WINDOW_ID", help="remove a window's mark")
    marks.add_argument("--json", action="store_true", help="print JSON")
    marks.set_defaults(func=run_marks)


def run_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from core.commands.predict import resolve_run
    from core.explore import embed_run, project
    from core.store import Store

    store = Store()
    run_id = resolve_run(store, args.run)
    emb = embed_run(run_id, store, splits=tuple(args.split or SPLITS))
    proj = project(emb, args.method, seed=args.seed)
    table = emb.table
    counts = table.counts()
    method = PROJECTIONS[args.method].label
    out = {"run_id": run_id, "model": emb.info.get("model"), "kind": emb.kind, "n": len(emb), "dim": emb.dim,
           "class_names": table.class_names, "counts": counts,
           "accuracy": {split: float(emb.correct[table.split == split].mean()) for split in counts},
           "embed_seconds": round(emb.seconds, 3), "embedding_cached": emb.cached,
           "method": args.method, "seed": proj.seed, "projection_seconds": round(proj.seconds, 3),
           "projection_cached": proj.cached}
    if args.json:
        names, predicted, confidence, start = table.label_names, emb.predicted, emb.confidence, table.start_s
        out["points"] = [{"id": str(table.ids[i]), "split": str(table.split[i]), "label": str(names[i]),
                          "predicted": table.class_names[int(predicted[i])],
                          "confidence": round(float(confidence[i]), 4),
                          "group": str(table.groups[i]), "source": str(table.source[i]),
                          "start_s": None if np.isnan(start[i]) else round(float(start[i]), 3),
                          "x": round(float(proj.xy[i, 0]), 4), "y": round(float(proj.xy[i, 1]), 4)}
                         for i in range(len(emb))]
    width = max(len(c) for c in [*table.class_names, "accuracy"])
    lines = [f"run {run_id} ({out['model']}): {len(emb)} windows embedded in {emb.dim} dimensions "
             f"({'from the cache' if emb.cached else f'{emb.seconds:.1f} s'})",
             f"  {'class':>{width}s}  " + "  ".join(f"{s:>6s}" for s in counts)]
    lines += [f"  {c:>{width}s}  " + "  ".join(f"{counts[s][c]:6d}" for s in counts) for c in table.class_names]
    lines.append(f"  {'accuracy':>{width}s}  " + "  ".join(f"{out['accuracy'][s]:6.3f}" for s in counts))
    lines.append(f"{method} map (seed {proj.seed}): {proj.seconds:.2f} s" + (" (from the cache)" if proj.cached else "")
                 + "; --json prints every point")
    emit(out, args.json, "\n".join(lines))
    return 0


def run_label_issues(args: argparse.Namespace) -> int:
    from core.explore.label_issues import cli_label_issues  # helper module of its own; imported when used

    return cli_label_issues(args)


def run_marks(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.commands.predict import resolve_run
    from core.errors import ConfigError, SigscopeError
    from core.explore.marks import add_mark, list_marks, marks_words, remove_mark
    from core.store import Store
    from core.train.checkpoints import read_run_meta

    store = Store()
    run = store.get_run(resolve_run(store, args.run))
    data = run["config"]["data"]
    try:
        classes = read_run_meta(Path(run["run_dir"]))["class_names"]
    except (SigscopeError, TypeError, KeyError):  # a run without its classes.json: the data refuses a bad one
        classes = None
    for window in args.exclude:
        add_mark(store, data, window, "exclude")
    for item in args.relabel:
        window, _, label = item.rpartition("=")
        if not window or not label:
            raise ConfigError(f"--relabel {item!r}: give WINDOW_ID=CLASS, e.g. 2:0:384=SITTING")
        if classes and label not in classes:
            raise ConfigError(f"--relabel {item!r}: {label!r} is not one of the run's classes {classes}")
        add_mark(store, data, window, "relabel", label)
    missing = [w for w in args.remove if not remove_mark(store, data, w)]
    if missing:
        raise ConfigError(f"--remove: no mark on {', '.join(missing)}")
    marks = list_marks(store, data)
    out = {"run_id": run["id"], "marks": [m.__dict__ for m in marks], "summary": marks_words(marks)}
    lines = [f"marks on run {run['id']}'s data: {marks_words(marks)}"]
    lines += [f"  {m.window_id}  {m.action}" + (f" as {m.label}" if m.label else "") for m in marks]
    if marks:
        lines.append("a new run uses them with `python -m core train ... --marks` (or the Train page's check box)")
    emit(out, args.json, "\n".join(lines))
    return 0
