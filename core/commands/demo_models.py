"""`python -m core demo-models`: train the two demo models on the bundled data.

    python -m core demo-models                 # demo-audio (FSDD) and demo-imu (HAPT)
    python -m core demo-models --only demo-imu --json

demo-audio: audio_resnet_attention (small) on the bundled FSDD sample (log-mel/MFCC/delta
stack, standard split); demo-imu: har_transformer (small) on the bundled HAPT sample (six
activities). They are ordinary runs in the store. Idempotent: a demo whose current config
already has a completed run is not trained again (--force trains a fresh one). No weights
are downloaded. Each takes well under a minute single-threaded on a laptop CPU.
"""
from __future__ import annotations

import argparse
import sys

from core.commands import emit
from core.demo import DEMO_NAMES, demo_configs, demo_run


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo-models", help="train the demo audio and IMU models on the bundled data",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=DEMO_NAMES, action="append", help="train only this demo (repeatable)")
    p.add_argument("--force", action="store_true", help="train again even when a completed demo run exists")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (1: these small models train fastest single-threaded)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from core.jobs import run_job
    from core.store import Store
    from core.train import ProgressPrinter

    if args.threads and args.threads > 0:
        torch.set_num_threads(args.threads)
    store = Store()
    out, failed = [], False
    for name, cfg in demo_configs().items():
        if args.only and name not in args.only:
            continue
        existing = demo_run(store, name)
        if existing is not None and not args.force:
            out.append({"name": name, "run_id": existing["id"], "status": "completed", "trained": False,
                        "test_accuracy": store.final_metrics(existing["id"]).get("test_accuracy")})
            print(f"{name}: already trained as run {existing['id']}", file=sys.stderr)
            continue
        run_id = store.create_run(cfg.to_dict(), name=name)
        print(f"{name}: training run {run_id} ({cfg.model.name} on {cfg.data.source}, {cfg.train.epochs} epochs)",
              file=sys.stderr, flush=True)
        status = run_job(store, run_id, cfg, device="cpu", callbacks=[ProgressPrinter()])
        row = store.get_run(run_id)
        failed |= status != "completed"
        out.append({"name": name, "run_id": run_id, "status": status, "trained": True,
                    "error": row.get("error"), "test_accuracy": store.final_metrics(run_id).get("test_accuracy")})
    text = "\n".join(f"{o['name']}: run {o['run_id']} {o['status']}"
                     + (f", test accuracy {o['test_accuracy']:.3f}" if o.get("test_accuracy") is not None else "")
                     + (f" - {o['error']}" if o.get("error") else "") for o in out)
    emit(out, args.json, text)
    return 1 if failed else 0
