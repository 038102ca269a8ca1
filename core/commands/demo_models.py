"""`python -m core demo-models`: the two demo models, ready to classify with.

    python -m core demo-models                           # install the bundled demo weights (milliseconds)
    python -m core demo-models --only demo-imu --json
    python -m core demo-models --train                   # train them here instead (about 20 s each)
    python -m core demo-models --train --write-bundle    # and write them as the bundled weights

demo-audio: audio_resnet_attention (small) on the bundled FSDD sample (log-mel/MFCC/delta
stack, standard split); demo-imu: har_transformer (small) on the bundled HAPT sample (six
activities). They are ordinary runs in the store. Idempotent: a demo that already has a
completed run of its current config is left alone. Without --train a demo is installed
from the weights committed in data/demo-models/ (see core.demo), or trained when those are
missing or were made from another config. No weights are downloaded.
"""
from __future__ import annotations

import argparse
import sys

from core.commands import emit
from core.compare import data_words
from core.demo import DEMO_NAMES, demo_configs, demo_run


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo-models", help="install (or train) the demo audio and IMU models",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=DEMO_NAMES, action="append", help="only this demo (repeatable)")
    p.add_argument("--train", "--force", dest="train", action="store_true",
                   help="train a fresh run now, even when bundled weights or a completed demo run exist")
    p.add_argument("--write-bundle", action="store_true",
                   help="write each demo's completed run into data/demo-models/ (the committed weights)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (1: these small models train fastest single-threaded)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.demo import install_bundled, write_bundle
    from core.store import Store

    store = Store()
    out, failed = [], False
    for name, cfg in demo_configs().items():
        if args.only and name not in args.only:
            continue
        existing = None if args.train else demo_run(store, name)
        how = "existing"
        if existing is None and not args.train:
            run_id = install_bundled(store, name)
            existing = store.get_run(run_id) if run_id else None
            how = "bundled"
        if existing is not None:
            row = existing
            print(f"{name}: {'installed from the bundled weights' if how == 'bundled' else 'already in the store'} "
                  f"as run {row['id']}", file=sys.stderr)
        else:
            how = "trained"
            row = _train(store, name, cfg, args.threads)
        failed |= row["status"] != "completed"
        out.append({"name": name, "run_id": row["id"], "status": row["status"], "how": how,
                    "trained": how == "trained", "error": row.get("error"),
                    "test_accuracy": store.final_metrics(row["id"]).get("test_accuracy")})
        if args.write_bundle and row["status"] == "completed":
            out[-1]["bundle"] = str(write_bundle(store, name, row["id"]))
    text = "\n".join(f"{o['name']}: run {o['run_id']} {o['status']} ({o['how']})"
                     + (f", test accuracy {o['test_accuracy']:.3f}" if o.get("test_accuracy") is not None else "")
                     + (f" - {o['error']}" if o.get("error") else "")
                     + (f"; written to {o['bundle']}" if o.get("bundle") else "") for o in out)
    emit(out, args.json, text)
    return 1 if failed else 0


def _train(store, name: str, cfg, threads: int) -> dict:
    from core.jobs import run_job
    from core.train import ProgressPrinter

    from contextlib import nullcontext

    from core.threads import compute_threads

    run_id = store.create_run(cfg.to_dict(), name=name)
    print(f"{name}: training run {run_id} ({cfg.model.name} on {data_words(cfg.data.to_dict())}, {cfg.train.epochs} epochs)",
          file=sys.stderr, flush=True)
    with compute_threads(threads, purpose="demo model training") if threads and threads > 0 else nullcontext():
        run_job(store, run_id, cfg, device="cpu", callbacks=[ProgressPrinter()])
    return store.get_run(run_id)
