"""`python -m core runs ...`: list, show and delete stored runs.

    python -m core runs list --json
    python -m core runs show RUN_ID --json     # config, status, final metrics, last probe values
    python -m core runs delete RUN_ID
"""
from __future__ import annotations

import argparse

from core.commands import emit
from core.errors import ConfigError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list, show or delete stored runs")
    sub = p.add_subparsers(dest="runs_command", required=True)
    ls = sub.add_parser("list", help="all runs, newest first")
    ls.add_argument("--status", help="only runs with this status")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)
    show = sub.add_parser("show", help="one run: config, status, final metrics, last probe values")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run_show)
    delete = sub.add_parser("delete", help="delete a run's rows and folder")
    delete.add_argument("run_id")
    delete.add_argument("--json", action="store_true")
    delete.set_defaults(func=run_delete)


def _row(run: dict, final: dict) -> dict:
    cfg = run["config"]
    return {"id": run["id"], "name": run["name"], "status": run["status"],
            "model": cfg.get("model", {}).get("name"), "dataset": cfg.get("data", {}).get("source"),
            "epoch": run["epoch"], "total_epochs": run["total_epochs"], "step": run["step"],
            "total_steps": run["total_steps"], "created_at": run["created_at"], "finished_at": run["finished_at"],
            "val_accuracy": final.get("val_accuracy"), "test_accuracy": final.get("test_accuracy"),
            "error": run["error"]}


def _checked_store():
    """The run store, runs whose process on this machine has died marked `interrupted` first
    (the check an engine makes every few seconds: pid and start time), so a killed run is never
    printed as running. Runs owned by another machine are left as they are."""
    from core.store import Store

    store = Store()
    store.mark_interrupted()
    return store


def run_list(args: argparse.Namespace) -> int:
    store = _checked_store()
    rows = [_row(r, store.final_metrics(r["id"])) for r in store.list_runs(args.status)]
    lines = [f"{r['id']}  {r['status']:<11} {r['model'] or '?':<22} {r['dataset'] or '?':<14} "
             f"epoch {r['epoch']}/{r['total_epochs'] or '?'}"
             + (f"  test_acc {r['test_accuracy']:.4f}" if r["test_accuracy"] is not None else "") for r in rows]
    emit(rows, args.json, "\n".join(lines) if lines else "no runs yet")
    return 0


def run_show(args: argparse.Namespace) -> int:
    store = _checked_store()
    run = store.get_run(args.run_id)
    if run is None:
        raise ConfigError(f"no run {args.run_id!r}; see `python -m core runs list`")
    final = store.final_metrics(args.run_id)
    out = {**run, "final_metrics": final, "last_probes": store.last_probes(args.run_id),
           "artifacts": store.artifacts(args.run_id), "events": store.events(args.run_id)[-20:]}
    text = "\n".join([f"{run['id']} {run['name']!r}: {run['status']}" + (f" - {run['error']}" if run["error"] else ""),
                      f"model {run['config']['model']['name']} on {run['config']['data']['source']}, "
                      f"epoch {run['epoch']}/{run['total_epochs']}, step {run['step']}/{run['total_steps']}",
                      *(f"  {k} = {v:.4f}" for k, v in final.items()
                        if v is not None and "/" not in k and k.split("_", 1)[0] in ("val", "test"))])
    emit(out, args.json, text)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from core.store import Store

    deleted = Store().delete_run(args.run_id)
    if not deleted:
        raise ConfigError(f"no run {args.run_id!r}; see `python -m core runs list`")
    emit({"deleted": args.run_id}, args.json, f"deleted {args.run_id}")
    return 0
