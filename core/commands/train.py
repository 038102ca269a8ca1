"""`python -m core train`: train one run in the foreground, stored like a browser run.

    python -m core train --config run.json
    python -m core train --model har_transformer --dataset hapt --epochs 20 --set dim=64 --set optim.lr=3e-4
    python -m core train --preset hapt_har_transformer --set train.epochs=5   # a named preset (`python -m core presets`)
    python -m core train --resume RUN_ID          # continue a stopped run from its last checkpoint
    python -m core train --resume RUN_ID --epochs 60 --device cpu   # ... for longer, elsewhere

`--set key=value` takes dotted config keys (train.batch_size=32, data.options.classes=all12,
data.augment.jitter.p=0.3); a key without a dot is a model hyperparameter (depth=2 means
model.hparams.depth=2). `python -m core options` lists every key with its type, range and default.
The whole config is checked before anything runs: each problem is one `error:` line, exit 2,
and no run is stored. A resumed run takes only overrides that make sense mid-run (epochs,
device, probe cadence, loader workers); any other is refused with the reason.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.commands import emit
from core.config import RunConfig, parse_sets
from core.errors import ConfigError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train one run in the foreground (stored in the run store)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="a RunConfig JSON file")
    p.add_argument("--preset", help="start from a named preset (see `python -m core presets`); "
                                    "flags and --set apply on top")
    p.add_argument("--model", help="zoo model name (see `python -m core models list`)")
    p.add_argument("--dataset", help="data source, e.g. synthetic_imu, hapt, fsdd")
    p.add_argument("--epochs", type=int)
    p.add_argument("--name", default="", help="a name for the run")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: the config's, 'auto')")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value; repeatable")
    p.add_argument("--resume", metavar="RUN_ID", help="continue a stopped run from its last checkpoint")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> RunConfig:
    """The validated RunConfig the arguments describe (config file or preset, then flags, then --set)."""
    preset = getattr(args, "preset", None)
    if args.config and preset:
        raise ConfigError("give --config or --preset, not both (use --set to change a preset's values)")
    if preset:
        from core.presets import get
        cfg = get(preset).config
        cfg.name = preset  # the run is named after its preset unless --name says otherwise
    elif args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file")
        cfg = RunConfig.from_json(path.read_text())
    else:
        cfg = RunConfig()
    overrides = _overrides(args)
    return cfg.with_overrides(overrides) if overrides else cfg.validated()


def _overrides(args: argparse.Namespace) -> dict:
    """Flags and --set as dotted overrides (a key without a dot is a model hyperparameter)."""
    overrides: dict = {}
    for flag, key in (("model", "model.name"), ("dataset", "data.source"), ("epochs", "train.epochs"),
                      ("device", "train.device"), ("name", "name")):
        value = getattr(args, flag, None)
        if value not in (None, ""):
            overrides[key] = value
    for key, value in parse_sets(args.sets).items():
        overrides[key if "." in key or key == "name" else f"model.hparams.{key}"] = value
    return overrides


def resume_overrides(args: argparse.Namespace) -> dict:
    """The overrides a --resume may take, or ConfigError naming those it cannot."""
    for flag in ("config", "preset", "model", "dataset"):
        if getattr(args, flag, None):
            raise ConfigError(f"--{flag} cannot be combined with --resume: a resumed run keeps its config "
                              "(only epochs, device and probe cadence may change)")
    return _overrides(args)


def run(args: argparse.Namespace) -> int:
    from core.jobs import requeue_for_resume, run_job
    from core.store import Store
    from core.train import ProgressPrinter

    resume_from = None
    if args.resume:
        overrides = resume_overrides(args)
        store = Store()
        cfg, resume_from = requeue_for_resume(store, args.resume, overrides)
        run_id = args.resume
    else:
        cfg = build_config(args)  # refused here, before the store or a run folder exists
        store = Store()
        run_id = store.create_run(cfg.to_dict(), name=cfg.name)
    print(f"run {run_id} ({cfg.model.name} on {cfg.data.source}, {cfg.train.epochs} epochs); "
          f"runs folder {store.runs_dir}", file=sys.stderr, flush=True)
    try:
        status = run_job(store, run_id, cfg, device=None if cfg.train.device == "auto" else cfg.train.device,
                         callbacks=[ProgressPrinter()], resume_from=resume_from)
    except KeyboardInterrupt:
        store.update_run(run_id, status="cancelled", error="cancelled with Ctrl-C")
        raise
    run = store.get_run(run_id)
    summary = run.get("summary") or {}
    out = {"run_id": run_id, "status": status, "message": run.get("error") or "", "run_dir": run["run_dir"],
           "epochs_completed": summary.get("epochs_completed"), "test_metrics": _headline(summary.get("test_metrics")),
           "final_metrics": _headline(summary.get("final_metrics"))}
    text = f"{run_id}: {status}"
    if out["message"]:
        text += f" - {out['message']}"
    for key in ("test_accuracy", "test_macro_f1"):
        if key in (out["test_metrics"] or {}):
            text += f" {key}={out['test_metrics'][key]:.4f}"
    emit(out, args.json, text)
    return 0 if status == "completed" else 1


def _headline(metrics: dict | None) -> dict:
    """Scalar metrics without the per-class ones (those stay in the store)."""
    return {k: v for k, v in (metrics or {}).items() if "/" not in k}
