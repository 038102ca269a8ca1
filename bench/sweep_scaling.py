"""Sweeps: trials per minute with 1, 2 and 4 workers on one study (ratios to 1 worker), and
what the sweep machinery costs per trial against training the same configs plainly.

    python bench/sweep_scaling.py                  # 8 trials per worker count, 3 epochs each
    python bench/sweep_scaling.py --trials 12 --epochs 5 --workers 1 2 4

Scaling: one study per worker count, the same sampler seed, small resnet1d trials on generated
IMU data; trials per minute from the study's first start to its last end (wall clock: that is
what parallel workers buy), printed as ratios to 1 worker. On a 2-core machine 2 workers can
at best double the rate and 4 cannot beat 2.

Overhead: the same 6 configs trained twice, interleaved, in one process: plainly (a
JobManager run each, one at a time) and as a 1-worker sweep whose trials are those configs
queued in order (ask, price, validate, the pruning callback in each run, tell). The machinery
costs the difference in CPU time (this process + every run process, user + system), per trial
and as a share of the plain runs' CPU (target <= 3 %). CPU time, because the machine may be
shared.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TINY = {"data.options.per_class": 48, "model.hparams.base_channels": 16, "model.hparams.num_stages": 2,
        "train.batch_size": 32}
SPACE = {"optim.lr": {"low": 1e-3, "high": 1e-2, "log": True}, "model.hparams.kernel_size": {}}


def cpu_seconds() -> float:
    """CPU of this process and of its finished children (user + system)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def make_spec(trials: int, epochs: int, workers: int):
    from core import sweep
    from core.config import RunConfig

    base = RunConfig().with_overrides(TINY)
    return sweep.SweepSpec(base.to_dict(), sweep.parse_space(SPACE),
                           sweep.parse_settings({"trials": trials, "epochs": epochs, "workers": workers,
                                                 "pruner": "none", "sampler": "random", "seed": 7}))


def scaling(trials: int, epochs: int, counts: list[int], store) -> dict[int, float]:
    from core import sweep

    rates = {}
    for workers in counts:
        name = sweep.create_study(make_spec(trials, epochs, workers), f"scaling-{workers}-{time.time_ns()}")
        sweep.SweepWorker(name, store=store, workers=workers).run()
        rows = sweep.trials(name)
        span = max(r["finished"] for r in rows) - min(r["started"] for r in rows)
        rates[workers] = len(rows) / span * 60
        print(f"  {workers} worker(s): {len(rows)} trials in {span:.1f} s = {rates[workers]:.2f} trials/min",
              flush=True)
    return rates


def overhead(epochs: int, store, rounds: int) -> tuple[list[float], list[float]]:
    from core import sweep
    from core.jobs import JobManager

    configs = []
    spec = make_spec(6, epochs, 1)
    import optuna
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=11))
    dims = sweep.check(spec)
    for _ in range(6):
        trial = probe.ask()
        configs.append(sweep.suggest(trial, dims, spec.base))
        probe.tell(trial, 0.0)
    def run_plain() -> float:
        start = cpu_seconds()
        jobs = JobManager(store, max_workers=1, check_memory=False)
        for overrides in configs:
            run_id = jobs.submit(sweep.trial_config(spec, overrides))
            assert jobs.wait(run_id, timeout=1800) == "completed"
        jobs.shutdown()
        return cpu_seconds() - start

    def run_sweep() -> float:
        start = cpu_seconds()
        name = sweep.create_study(spec, f"overhead-{time.time_ns()}")
        study, _ = sweep.load(name)
        for overrides in configs:
            study.enqueue_trial(dict(overrides))
        result = sweep.SweepWorker(name, store=store, check_memory=False).run()
        assert result["trials"]["complete"] == 6, result
        return cpu_seconds() - start

    jobs = JobManager(store, max_workers=1, check_memory=False)  # warm-up: the data cache, imports
    jobs.wait(jobs.submit(sweep.trial_config(spec, configs[0])), timeout=1800)
    jobs.shutdown()
    plain, swept = [], []
    for r in range(rounds):  # interleaved, the order alternating
        first, second = (run_plain, run_sweep) if r % 2 == 0 else (run_sweep, run_plain)
        a, b = first(), second()
        p, s = (a, b) if first is run_plain else (b, a)
        plain.append(p)
        swept.append(s)
        print(f"  round {r + 1}: plain {p:.1f} CPU-s, sweep {s:.1f} CPU-s", flush=True)
    return plain, swept


STORAGE_SCRIPT = """
import sys, time, optuna
from core import sweep
optuna.logging.set_verbosity(optuna.logging.ERROR)
s = optuna.load_study(study_name=sys.argv[2], storage=sweep.open_storage(sys.argv[1]))
errors = 0
for i in range(int(sys.argv[3])):
    try:
        t = s.ask(); t.suggest_float("x", 0, 1); t.set_user_attr("heartbeat", time.time()); s.tell(t, 0.5)
    except Exception as e:
        errors += 1
        print(type(e).__name__, str(e).splitlines()[0][:120], file=sys.stderr)
print(errors)
"""


def storages(runs: Path, writers: int = 4, each: int = 50) -> None:
    """4 processes asking and telling at once on the journal file and on SQLite: errors and time."""
    import subprocess

    import optuna

    from core import sweep

    for label, url in (("journal file", f"journal:{runs / 'bench.journal'}"), ("sqlite", f"sqlite:///{runs / 'bench.db'}")):
        name = f"storage-{time.time_ns()}"
        optuna.create_study(storage=sweep.open_storage(url), study_name=name)
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", STORAGE_SCRIPT, url, name, str(each)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(writers)]
        outs = [p.communicate(timeout=900) for p in procs]
        seconds = time.perf_counter() - start
        errors = sum(int(o.strip().splitlines()[-1]) if o.strip() else each for o, _ in outs)
        locked = sum(e.count("locked") for _, e in outs)
        n = len(optuna.load_study(study_name=name, storage=sweep.open_storage(url)).trials)
        print(f"  {label:<12} {writers} processes x {each} ask/tell: {n} trials recorded, {errors} errors "
              f"({locked} 'database is locked'), {seconds:.1f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved plain/sweep rounds for the overhead")
    args = parser.parse_args()
    runs = Path(tempfile.mkdtemp(prefix="sigscope-sweep-bench-"))
    os.environ["SIGSCOPE_RUNS_DIR"] = str(runs)
    from core.store import Store

    store = Store(runs / "sigscope.db")
    print(f"sweep_scaling: tiny resnet1d on generated IMU data, {args.epochs} epochs per trial, "
          f"{os.cpu_count()} core(s)")
    print("storage under 4 concurrent workers:")
    storages(runs)
    rates = scaling(args.trials, args.epochs, args.workers, store)
    base = rates[args.workers[0]]
    print("trials per minute, ratio to 1 worker: " + ", ".join(f"{w} workers {rates[w] / base:.2f}" for w in rates))
    plain, swept = overhead(args.epochs, store, args.rounds)
    p, s = statistics.median(plain), statistics.median(swept)
    print(f"sweep machinery: {(s - p) / 6:.2f} CPU-s per trial, {(s - p) / p * 100:+.1f} % of training the same "
          f"configs plainly (medians of {args.rounds} rounds; target <= 3 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
