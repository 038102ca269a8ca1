"""`python -m core train`: train one run in the foreground, stored like a browser run.

    python -m core train --config run.json
    python -m core train --model har_transformer --dataset hapt --epochs 20 --set dim=64 --set optim.lr=3e-4
    python -m core train --preset hapt_har_transformer --set train.epochs=5   # a named preset (`python -m core presets`)
    python -m core train --resume RUN_ID          # continue a stopped run from its last checkpoint
    python -m core train --resume RUN_ID --epochs 60 --device cpu   # ... for longer, elsewhere
    python -m core train --preset hapt_resnet1d --nproc 2                 # PyTorch DDP: 2 processes under torchrun
    python -m core train --config run.json --nproc 1 --nnodes 2 --node-rank 0 --rdzv-endpoint 10.0.0.5:29500
    python -m core train --config run.json --nproc 1 --nnodes 2 --node-rank 1 --rdzv-endpoint 10.0.0.5:29500
    python -m core train --preset uea_basicmotions --model inception_time --ensemble 5   # 5 seeds, averaged

`--set key=value` takes dotted config keys (train.batch_size=32, data.options.classes=all12,
data.augment.jitter.p=0.3); a key without a dot is a model hyperparameter (depth=2 means
model.hparams.depth=2). `python -m core options` lists every key with its type, range and default.
The whole config is checked before anything runs: each problem is one `error:` line, exit 2,
and no run is stored. A resumed run takes only overrides that make sense mid-run (epochs,
device, processes, probe cadence, loader workers); any other is refused with the reason.

With --nproc N (train.processes) or --nnodes M the run trains under torchrun (PyTorch DDP, gloo
on CPU, NCCL on GPUs); node 0 stores the run, the other nodes join it through the c10d
rendezvous at --rdzv-endpoint (node 0's HOST:PORT). SIGTERM or Ctrl-C stops a run after its
current step, checkpoint kept. `--run-id ID` and `--join` are how the job manager and torchrun
start the processes of a stored run; people do not need them.

--ensemble N trains the config N times, one run after another, with seeds train.seed,
train.seed+1, ... (named "NAME · seed k/N", tagged as one ensemble, core.ensembles), then
prints the ensemble's accuracy on the runs' test split (the mean of their probabilities, as
`python -m core evaluate --ensemble TAG` and Classify's model picker use it).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from core.commands import emit
from core.compare import data_words
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
    p.add_argument("--nproc", type=int, metavar="N", help="processes per machine (train.processes): DDP under torchrun")
    p.add_argument("--nnodes", type=int, default=1, metavar="M", help="machines training this run together (default 1)")
    p.add_argument("--node-rank", type=int, default=0, metavar="R", help="this machine's rank, 0..M-1 (0 stores the run)")
    p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="node 0's address for the c10d rendezvous")
    p.add_argument("--rdzv-timeout", type=int, default=60, metavar="S", help="seconds every node has to join (60)")
    p.add_argument("--ensemble", type=int, default=1, metavar="N",
                   help="train N runs with seeds train.seed, +1, ... as one ensemble and print its test accuracy")
    p.add_argument("--marks", action="store_true",
                   help="train with the Explore marks on this data (excluded windows, relabels; "
                        "`python -m core explore marks`); the run's config records them")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    # how the job manager and torchrun start a stored run's processes
    p.add_argument("--run-id", help=argparse.SUPPRESS)
    p.add_argument("--join", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    p.add_argument("--resume-checkpoint", help=argparse.SUPPRESS)
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
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError(f"--config {path}: is not a text (UTF-8) JSON file") from None
        cfg = RunConfig.from_json(text)
    else:
        cfg = RunConfig()
    overrides = _overrides(args)
    cfg = cfg.with_overrides(overrides) if overrides else cfg.validated()
    if getattr(args, "marks", False):
        from core.explore.marks import list_marks, with_marks
        from core.store import Store
        cfg = with_marks(cfg, list_marks(Store(), cfg.data))
    return cfg


def _overrides(args: argparse.Namespace) -> dict:
    """Flags and --set as dotted overrides (a key without a dot is a model hyperparameter)."""
    overrides: dict = {}
    for flag, key in (("model", "model.name"), ("dataset", "data.source"), ("epochs", "train.epochs"),
                      ("device", "train.device"), ("name", "name"), ("nproc", "train.processes")):
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
    if args.run_id or args.join:
        from core.worker import run_worker
        return run_worker(args)
    from core.jobs import requeue_for_resume
    from core.store import Store

    if args.ensemble != 1:
        return _train_ensemble(args)
    resume_from = None
    if args.resume:
        overrides = resume_overrides(args)
        store = Store()
        cfg, resume_from = requeue_for_resume(store, args.resume, overrides)
        run_id = args.resume
    else:
        cfg = build_config(args)  # refused here, before the store or a run folder exists
        if args.nnodes > 1 or args.rdzv_endpoint or args.node_rank:
            from core.launch import check_rendezvous
            check_rendezvous(args.rdzv_endpoint, args.nnodes, args.node_rank)
        if args.node_rank != 0:
            return _join(args, cfg)
        store = Store()
        run_id = store.create_run(cfg.to_dict(), name=cfg.name)
    print(f"run {run_id} ({cfg.model.name} on {data_words(cfg.data.to_dict())}, {cfg.train.epochs} epochs"
          + (f", {cfg.train.processes} processes x {args.nnodes} machine(s)" if cfg.train.processes > 1 or
             args.nnodes > 1 else "") + f"); runs folder {store.runs_dir}", file=sys.stderr, flush=True)
    if cfg.train.processes > 1 or args.nnodes > 1:
        status = _launch(args, store, run_id, cfg, resume_from)
    else:
        status = _in_process(store, run_id, cfg, resume_from)
    return _report(args, store, run_id, status)


def _in_process(store, run_id: str, cfg: RunConfig, resume_from) -> str:
    """Train in this process (SIGTERM stops it after the current step, checkpoint kept)."""
    import threading

    from core.jobs import run_job
    from core.train import ProgressPrinter
    from core.worker import injected

    from core.threads import ADAPT_ENV

    cancel = threading.Event()
    _stop_on_sigterm(cancel)
    before = os.environ.get(ADAPT_ENV)
    os.environ.setdefault(ADAPT_ENV, "1")  # this process is the run's, as a run process is: its threads follow the load
    try:
        return run_job(store, run_id, cfg, device=None if cfg.train.device == "auto" else cfg.train.device,
                       cancel=cancel, callbacks=[ProgressPrinter(), *injected(cancel)], resume_from=resume_from)
    except KeyboardInterrupt:
        store.update_run(run_id, status="cancelled", error="cancelled with Ctrl-C")
        raise
    finally:
        if before is None:
            os.environ.pop(ADAPT_ENV, None)


def _launch(args, store, run_id: str, cfg: RunConfig, resume_from) -> str:
    """Train under torchrun in child processes, their output here and in the run's log."""
    from core import launch

    threads = launch.threads_per_process(cfg.train.processes)
    cmd = launch.worker_command(run_id, store.path, threads, cfg.train.processes, args.nnodes, args.node_rank,
                                args.rdzv_endpoint, args.rdzv_timeout, resume_from)
    return launch.run_foreground(store, run_id, cmd, threads, cfg.train.processes * args.nnodes)


def _join(args, cfg: RunConfig) -> int:
    """A node other than 0: its ranks join node 0's run (which stores it)."""
    from core import launch

    threads = launch.threads_per_process(cfg.train.processes)
    cmd = launch.worker_command(None, None, threads, cfg.train.processes, args.nnodes, args.node_rank,
                                args.rdzv_endpoint, args.rdzv_timeout)
    print(f"joining the run at {args.rdzv_endpoint} as node {args.node_rank} of {args.nnodes} "
          f"({cfg.train.processes} processes)", file=sys.stderr, flush=True)
    code = launch.run_and_wait(cmd)
    emit({"node_rank": args.node_rank, "exit_code": code}, args.json,
         f"node {args.node_rank}: {'done' if code == 0 else f'exited with status {code}'}")
    return 0 if code == 0 else 1


def _stop_on_sigterm(cancel) -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: cancel.set())


def _report(args, store, run_id: str, status: str) -> int:
    out, text = _outcome(store, run_id, status)
    emit(out, args.json, text)
    return 0 if status == "completed" else 1


def _cancel_rest(store, run_ids: list[str], why: str) -> None:
    for run_id in run_ids:
        store.update_run(run_id, status="cancelled", error=why, finished_at=time.time())


def _outcome(store, run_id: str, status: str) -> tuple[dict, str]:
    """How a run ended, as JSON and as one line."""
    from core.profiling.mfu import describe, run_utilization

    run = store.get_run(run_id)
    summary = run.get("summary") or {}
    out = {"run_id": run_id, "status": status, "message": run.get("error") or "", "run_dir": run["run_dir"],
           "epochs_completed": summary.get("epochs_completed"), "test_metrics": _headline(summary.get("test_metrics")),
           "final_metrics": _headline(summary.get("final_metrics")),
           "utilization": run_utilization(run, store.final_metrics(run_id))}
    text = f"{run_id}: {status}"
    if out["message"]:
        text += f" - {out['message']}"
    for key in ("test_accuracy", "test_macro_f1"):
        if key in (out["test_metrics"] or {}):
            text += f" {key}={out['test_metrics'][key]:.4f}"
    if out["utilization"].get("mfu") is not None:
        text += f" · {describe(out['utilization'])}"
    return out, text


def _train_ensemble(args: argparse.Namespace) -> int:
    """--ensemble N: the N seeds stored at once (queued), trained here one after another, then
    the ensemble scored on the runs' test split."""
    from core.ensembles import create_seed_runs, ensemble_score, list_ensembles, seed_configs
    from core.store import Store

    for flag, refused in (("resume", args.resume), ("run-id", args.run_id), ("join", args.join),
                          ("nnodes", args.nnodes > 1), ("node-rank", args.node_rank),
                          ("rdzv-endpoint", args.rdzv_endpoint)):
        if refused:
            raise ConfigError(f"--ensemble cannot be combined with --{flag}: an ensemble trains new runs on this "
                              "machine (use --nproc for several processes per run)")
    plan = seed_configs(build_config(args), args.ensemble)  # refused here, before anything is stored
    store = Store()
    run_ids = create_seed_runs(store, plan)
    cfg = plan.configs[0]
    print(f"ensemble {plan.tag}: {len(run_ids)} runs of {cfg.model.name} on {data_words(cfg.data.to_dict())}, seeds "
          f"{plan.seeds[0]}..{plan.seeds[-1]}, {cfg.train.epochs} epochs each; runs folder {store.runs_dir}",
          file=sys.stderr, flush=True)
    outcomes = []
    for i, (run_id, member) in enumerate(zip(run_ids, plan.configs)):
        print(f"run {run_id} ({member.name}, seed {member.train.seed})", file=sys.stderr, flush=True)
        try:
            if member.train.processes > 1:
                status = _launch(args, store, run_id, member, None)
            else:
                status = _in_process(store, run_id, member, None)
        except KeyboardInterrupt:
            _cancel_rest(store, run_ids[i + 1:], "cancelled with Ctrl-C before it started")
            raise
        out, text = _outcome(store, run_id, status)
        outcomes.append(out)
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)
        if status == "cancelled":  # SIGTERM stops the ensemble, not just the run it was training
            _cancel_rest(store, run_ids[i + 1:], f"cancelled before it started: run {run_id} was cancelled")
            break
    ensemble = next((e for e in list_ensembles(store) if e.tag == plan.tag), None)  # two or more completed
    result = {"ensemble": plan.tag, "runs": outcomes, "test": None}
    if ensemble is None:
        emit(result, args.json, f"ensemble {plan.tag}: fewer than two runs completed; no ensemble score")
        return 1
    score = ensemble_score(store, ensemble)
    result["test"] = score.to_dict()
    members = ", ".join(f"{a:.4f}" for a in score.member_accuracy.values())
    emit(result, args.json,
         f"ensemble {plan.tag} ({len(ensemble.run_ids)} of {len(run_ids)} runs): test_accuracy={score.accuracy:.4f} "
         f"test_macro_f1={score.macro_f1:.4f} on {score.n} examples (members: {members})\n"
         f"  python -m core evaluate --ensemble {plan.tag}   # the same score again")
    return 0 if all(o["status"] == "completed" for o in outcomes) else 1


def _headline(metrics: dict | None) -> dict:
    """Scalar metrics without the per-class ones (those stay in the store)."""
    return {k: v for k, v in (metrics or {}).items() if "/" not in k}
