"""`python -m core runs ...`: list, show, compare, cancel and delete stored runs.

    python -m core runs list --json
    python -m core runs show RUN_ID --json     # config, status, final metrics, MFU, last probe values
    python -m core runs queue                  # queued and running runs, in the order they start
    python -m core runs cancel RUN_ID          # through the store: reaches a run the dashboard started
    python -m core runs compare A B [C ...] [--json]   # final metrics side by side, resolved config diff
    python -m core runs delete RUN_ID
"""
from __future__ import annotations

import argparse
import time

from core.commands import emit
from core.compare import dataset_key
from core.errors import ConfigError
from core.profiling.mfu import describe, run_utilization


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list, show, queue, cancel, compare or delete stored runs")
    sub = p.add_subparsers(dest="runs_command", required=True)
    ls = sub.add_parser("list", help="all runs, newest first")
    ls.add_argument("--status", help="only runs with this status")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)
    show = sub.add_parser("show", help="one run: config, status, final metrics, last probe values")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run_show)
    queue = sub.add_parser("queue", help="queued and running runs, in the order an engine starts them")
    queue.add_argument("--json", action="store_true")
    queue.set_defaults(func=run_queue)
    cancel = sub.add_parser("cancel", help="stop a queued or running run (it stops after its current step)")
    cancel.add_argument("run_id")
    cancel.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the run to stop (default 30)")
    cancel.add_argument("--json", action="store_true")
    cancel.set_defaults(func=run_cancel)
    compare = sub.add_parser("compare", help="two or more runs: final metrics side by side, resolved config diff")
    compare.add_argument("run_ids", nargs="+")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(func=run_compare)
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
            "mfu": run_utilization(run, final)["mfu"], "error": run["error"]}


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
    utilization = run_utilization(run, final)
    out = {**run, "final_metrics": final, "utilization": utilization, "last_probes": store.last_probes(args.run_id),
           "artifacts": store.artifacts(args.run_id), "events": store.events(args.run_id)[-20:]}
    text = "\n".join([f"{run['id']} {run['name']!r}: {run['status']}" + (f" - {run['error']}" if run["error"] else ""),
                      f"model {run['config']['model']['name']} on {dataset_key(run)}, "
                      f"epoch {run['epoch']}/{run['total_epochs']}, step {run['step']}/{run['total_steps']}",
                      *(f"  {k} = {v:.4f}" for k, v in final.items()
                        if v is not None and "/" not in k and k.split("_", 1)[0] in ("val", "test")),
                      f"  {describe(utilization)}"])
    emit(out, args.json, text)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from core.store import Store

    deleted = Store().delete_run(args.run_id)
    if not deleted:
        raise ConfigError(f"no run {args.run_id!r}; see `python -m core runs list`")
    emit({"deleted": args.run_id}, args.json, f"deleted {args.run_id}")
    return 0


def run_queue(args: argparse.Namespace) -> int:
    store = _checked_store()
    active = store.list_runs(("running", "queued"))
    # the order an engine starts them: running first, then by priority, oldest first
    active.sort(key=lambda r: (r["status"] != "running", -(r.get("priority") or 0), r["created_at"]))
    rows = [{**_row(r, {}), "priority": r.get("priority") or 0, "held": r.get("held"),
             "owner": f"pid {r['owner_pid']} on {r['owner_host']}" if r.get("owner_pid") else None,
             "cancel_requested": r.get("cancel_requested") is not None} for r in active]
    lines = [f"{r['id']}  {r['status']:<8} {r['model'] or '?':<22} {r['dataset'] or '?':<12} "
             f"epoch {r['epoch']}/{r['total_epochs'] or '?'}  priority {r['priority']}"
             + (f"  held: {r['held']}" if r["held"] else "") + ("  (cancel asked)" if r["cancel_requested"] else "")
             for r in rows]
    emit(rows, args.json, "\n".join(lines) if lines else "nothing queued or running")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    """Ask through the store; the run (or the engine holding it in its queue) acts on it within
    seconds. Waits, bounded by --wait, for the status to change and prints it."""
    from core.store import ACTIVE_STATUSES, process_alive

    store = _checked_store()
    run = store.get_run(args.run_id)
    if run is None:
        raise ConfigError(f"no run {args.run_id!r}; see `python -m core runs list`")
    if run["status"] not in ACTIVE_STATUSES:
        raise ConfigError(f"run {args.run_id} has already ended ({run['status']}); nothing to cancel")
    store.request_cancel(args.run_id)
    deadline = time.monotonic() + max(0.0, args.wait)
    while True:
        run = store.get_run(args.run_id)
        if run["status"] not in ACTIVE_STATUSES or time.monotonic() >= deadline:
            break
        if run["status"] == "queued" and not process_alive(run.get("owner_pid"), run.get("owner_host"),
                                                           run.get("owner_started")):
            # no engine holds it any more: nobody else will take the request
            store.update_run(args.run_id, status="cancelled", error="cancelled before it started",
                             finished_at=time.time())
            continue
        time.sleep(0.25)
    ended = run["status"] not in ACTIVE_STATUSES
    out = {"id": args.run_id, "status": run["status"], "error": run.get("error"), "stopped": ended}
    emit(out, args.json, f"{args.run_id}: {run['status']}" + (f" ({run['error']})" if ended and run.get("error")
                                                               else "; cancel asked, it stops after its current step"))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from core.compare import compare_runs

    result = compare_runs(_checked_store(), args.run_ids)
    ids = [r["id"] for r in result["runs"]]
    width = max(len(m["metric"]) for m in result["metrics"]) if result["metrics"] else 10
    lines = [" ".join([f"{'':<{width}}", *(f"{i[-6:]:>10}" for i in ids)]),
             " ".join([f"{'':<{width}}", *(f"{(r['model'] or '?')[:10]:>10}" for r in result["runs"])])]
    for m in result["metrics"]:
        lines.append(" ".join([f"{m['metric']:<{width}}",
                               *(f"{m[i]:>10.4f}" if m[i] is not None else f"{'—':>10}" for i in ids)]))
    if result["note"]:
        lines.append("note: " + result["note"])
    if result["config_diff"]:
        lines.append("config differences (resolved, defaults filled in):")
        lines += [f"  {row['setting']}: " + " | ".join(row[i] for i in ids) for row in result["config_diff"]]
    else:
        lines.append("configs are identical once resolved")
    emit(result, args.json, "\n".join(lines))
    return 0
