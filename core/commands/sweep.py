"""`python -m core sweep`: cost-aware Optuna sweeps whose space is the run spec.

    python -m core sweep --model resnet1d --dataset hapt --trials 20 --workers 2
    python -m core sweep --preset hapt_resnet1d --space space.json --objective val_accuracy:max \\
        --cost latency_ms --budget latency_ms=5 --epochs 10 --json
    python -m core sweep --sweep-preset hapt_cost_aware_1ms --trials 30      # a sweep preset
    python -m core sweep preview --sweep-preset hapt_har_transformer_seed     # invalid / over-budget share
    python -m core sweep worker --study NAME --storage postgresql://u:p@db:5432/sweeps   # join from elsewhere
    python -m core sweep status --study NAME [--json]    # trials by state, the best, the Pareto front
    python -m core sweep best --study NAME [--train --epochs 40]   # the best config (and train it)
    python -m core sweep stop --study NAME               # running trials stop; finished ones stay
    python -m core sweep list                            # studies in the storage

The base config comes from --config / --preset / --model / --dataset / --set as for `train`.
--space is a JSON object {key: {low, high, log} | {choices: [...]} | {}} over the keys of
`python -m core options` ({} takes a default range); without it the model's hyperparameters
and optim.lr vary. --objective METRIC[:max|min] (val_accuracy, val_macro_f1, val_loss);
--cost adds a cost known before training as an objective (params, flops, latency_ms,
memory_mb); --budget COST=LIMIT refuses configs over it before they train. --set-sweep
KEY=VALUE sets any sweep setting (sampler=nsga2, pruner=hyperband, startup_trials=5, ...).
Storage: the embedded default is a journal file in the runs folder; --storage takes
journal:PATH, sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import ConfigError

ACTIONS = ("run", "preview", "worker", "status", "best", "stop", "list")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="hyperparameter sweeps (Optuna) over the run spec",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="?", default="run", choices=ACTIONS, help="run (default): create a study and "
                   "work on it; preview; worker: join a study; status; best; stop; list")
    p.add_argument("--config", help="a RunConfig JSON file as the base")
    p.add_argument("--preset", help="a run preset as the base (see `python -m core presets`)")
    p.add_argument("--sweep-preset", help="a sweep preset (presets/sweeps/*.json): base, space and settings")
    p.add_argument("--model", help="zoo model of the base config")
    p.add_argument("--dataset", help="data source of the base config")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base config value; repeatable")
    p.add_argument("--space", help="the search space as a JSON file (or inline JSON)")
    p.add_argument("--objective", help="METRIC[:max|min], e.g. val_accuracy:max (default)")
    p.add_argument("--cost", action="append", default=[], help="a cost objective: params, flops, latency_ms, "
                   "memory_mb; repeatable")
    p.add_argument("--budget", action="append", default=[], metavar="COST=LIMIT",
                   help="refuse configs over it before training, e.g. latency_ms=5; repeatable")
    p.add_argument("--trials", type=int, help="trials in the study (worker: a new budget for an existing study)")
    p.add_argument("--workers", type=int, help="trials training at once on this machine")
    p.add_argument("--epochs", type=int, help="epochs per trial (sweep) or of the run (best --train)")
    p.add_argument("--set-sweep", dest="sweep_sets", action="append", default=[], metavar="KEY=VALUE",
                   help="any sweep setting (sampler, pruner, startup_trials, warmup_epochs, seed); repeatable")
    p.add_argument("--storage", help="journal:PATH, sqlite:///PATH or postgresql://... (default: the runs folder)")
    p.add_argument("--study", help="the study's name (new: default MODEL-DATA-TIME)")
    p.add_argument("--number", type=int, help="best: this trial instead of the best")
    p.add_argument("--train", action="store_true", help="best: train the config as a full run")
    p.add_argument("--samples", type=int, default=64, help="preview: configs to sample (64)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def build_spec(args: argparse.Namespace):
    """The SweepSpec the arguments describe (a sweep preset, then base flags, space and settings)."""
    from core import sweep
    from core.commands.train import _overrides
    from core.config import RunConfig, parse_sets

    if args.sweep_preset:
        spec = sweep.preset_spec(args.sweep_preset)
        base = RunConfig.from_dict(spec.base)
        overrides = _overrides(args)
        if args.config or args.preset:
            raise ConfigError("--sweep-preset brings its base config: change it with --set, not --config/--preset")
        base = base.with_overrides(overrides) if overrides else base
        space = spec.space
        settings = spec.settings.to_dict()
    else:
        from core.commands.train import build_config
        base = build_config(argparse.Namespace(**{**vars(args), "epochs": None, "device": None, "name": "",
                                                  "nproc": None}))
        space = None
        settings = {}
    if args.space:
        text = Path(args.space).read_text() if Path(args.space).is_file() else args.space
        try:
            space = sweep.parse_space(json.loads(text))
        except json.JSONDecodeError as e:
            raise ConfigError(f"--space {args.space}: not a file and not JSON ({e.msg} at line {e.lineno})") from None
    if space is None:
        space = default_space(base)
    if args.objective:
        metric, _, direction = args.objective.partition(":")
        settings["metric"] = metric
        settings["direction"] = direction or None
    if args.cost:
        settings["costs"] = list(args.cost)
    for text in args.budget:
        cost, sep, limit = text.partition("=")
        if not sep or cost not in sweep.COSTS:
            raise ConfigError(f"--budget {text!r}: give COST=LIMIT with COST one of {', '.join(sweep.COSTS)}")
        settings[sweep.COSTS[cost][2]] = limit
    for flag in ("trials", "workers", "epochs"):
        if getattr(args, flag) is not None:
            settings[flag] = getattr(args, flag)
    settings.update(parse_sets(args.sweep_sets))
    return sweep.SweepSpec(base=base.to_dict(), space=space, settings=sweep.parse_settings(settings))


def default_space(base) -> dict:
    """Without --space: the model's hyperparameters and the learning rate, at default ranges."""
    from core import sweep

    keys = [e.key for e in sweep.choosable(base) if e.key.startswith("model.hparams.")] + ["optim.lr"]
    return sweep.parse_space(keys)


def run(args: argparse.Namespace) -> int:
    from core import sweep
    from core.store import Store

    store = Store(args.store) if args.store else Store()
    storage = args.storage
    if args.action in ("worker", "status", "best", "stop") and not args.study:
        raise ConfigError(f"sweep {args.action} needs --study NAME (`python -m core sweep list` shows them)")
    if args.action == "list":
        studies = sweep.list_studies(storage)
        if args.json:
            _out(studies, True, print)
        else:
            for s in studies:
                print(f"{s['name']:<48} {s['trials']:>5} trials  {', '.join(s['directions'])}")
        return 0
    if args.action == "preview":
        spec = build_spec(args)
        dims, problems = sweep.resolved_dims(spec)
        if problems:
            raise ConfigError("\n".join(problems))
        out = sweep.preview(spec, dims, n=args.samples)
        _out(out, args.json, _print_preview)
        return 0
    if args.action == "stop":
        sweep.request_stop(args.study, storage, store)
        print(f"asked every worker of {args.study} to stop: running trials are cancelled and queued again for "
              f"a resume; finished trials stay")
        return 0
    if args.action == "status":
        sweep.reap(sweep.load(args.study, storage)[0], store)
        _out(sweep.summary(args.study, storage), args.json, _print_summary)
        return 0
    if args.action == "best":
        config = sweep.best_config(args.study, storage, args.number, args.epochs)
        if not args.train:
            _out(config.to_dict(), True, print)
            return 0
        from core import launch
        run_id = store.create_run(config.to_dict(), name=config.name)
        cmd = launch.worker_command(run_id, store.path, launch.threads_per_process(config.train.processes),
                                    config.train.processes)
        status = launch.run_foreground(store, run_id, cmd, launch.threads_per_process(config.train.processes),
                                       config.train.processes)
        _out({"run_id": run_id, "status": status, **store.final_metrics(run_id)}, args.json,
             lambda d: print(f"run {d['run_id']}: {d['status']}"))
        return 0 if status == "completed" else 1
    if args.action == "worker":  # joining is asking to work: a stop asked for earlier is lifted
        name = args.study
        study, _ = sweep.load(name, storage)
        if sweep.stop_requested(study):
            sweep.clear_stop(study)
            print(f"study {name} was stopped; resuming it", file=sys.stderr)
        if args.trials is not None:
            before = sweep.set_trials(name, storage, args.trials)
            print(f"study {name}: budget {before} -> {args.trials} trials", file=sys.stderr)
    else:
        spec = build_spec(args)
        name = sweep.create_study(spec, args.study, storage)
        print(f"study {name} in {sweep.redact(storage or sweep.default_storage())}", file=sys.stderr)
    worker = sweep.SweepWorker(name, storage, store, workers=args.workers,
                               log=lambda line: print(line, file=sys.stderr, flush=True))
    _stop_on_sigterm(worker)
    result = worker.run()
    _out(result, args.json, _print_summary)
    return 0


def _out(obj, as_json: bool, printer) -> None:
    if as_json:
        print(json.dumps(obj, indent=2, default=str))
    else:
        printer(obj)


def _stop_on_sigterm(worker) -> None:
    import signal
    signal.signal(signal.SIGTERM, lambda *_: worker.stop_event.set())


def _print_preview(out: dict) -> None:
    print(f"sampled {out['tried']} configs (the smallest corner included): {out['valid']} valid, "
          f"{out['invalid']} invalid, {out['over_budget']} over budget, {out['fits']} would train")
    for reason, n in sorted(out["reasons"].items(), key=lambda kv: -kv[1]):
        print(f"  {n:>4}  {reason}")
    if out["cheapest_text"]:
        print(f"cheapest: {out['cheapest_text']}")


def _print_summary(s: dict) -> None:
    counts = ", ".join(f"{n} {state}" for state, n in s["trials"].items() if n)
    print(f"study {s['study']} ({', '.join(s['objectives'])}): {counts or 'no trials'} of {s['budget']}")
    if s["best"]:
        b = s["best"]
        print(f"best: trial {b['number']} value {b['value']:.4g} run {b['run_id']} {json.dumps(b['overrides'])}")
    for p in s["pareto"]:
        print(f"  pareto: trial {p['number']} values {[round(v, 4) for v in p['values']]}")
