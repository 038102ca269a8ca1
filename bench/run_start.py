"""What starting a run process costs: exec'd (`python -m core train --run-id ID`, which imports
torch and the training code, then builds its first optimizer, which imports torch._dynamo) against
forked from the job manager's warm fork server (core.forkserver), interleaved, one small run each.

Each run is started as the JobManager starts one (core.launch.start_run_process with the
run's environment and log). Printed per mode, medians over the rounds: seconds from the start
until the run process claims the run ("start", what a person waits for before Monitor shows the
run training), seconds until it has ended ("whole run"), and the run process's CPU seconds (exec'd:
this process's reaped children; forked: the server's wait4 of the child). The fork server's own
start (its imports, once per job manager) is the first forked run's, printed on its own line.

    python bench/run_start.py                 # 4 rounds of 1-epoch synthetic IMU runs
    python bench/run_start.py --rounds 8 --model har_transformer
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from core import forkserver, launch
from core.config import RunConfig
from core.store import Store

SMALL = {"data.options.per_class": 16, "train.batch_size": 8, "train.epochs": 1}


def one_run(store: Store, config: RunConfig, forked: bool) -> dict:
    run_id = store.create_run(config.to_dict(), name="run-start bench", status="queued")
    run = store.get_run(run_id)
    log = Path(run["run_dir"]) / launch.LOG_NAME
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**launch.child_env(1), forkserver.ENV: "1" if forked else "0"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    wall_started = time.time()
    proc = launch.start_run_process(launch.worker_command(run_id, store.path, 1), env, log, "cpu")
    assert isinstance(proc, forkserver.Forked) == forked, "the mode asked for"
    code = proc.wait()
    whole = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = store.get_run(run_id)
    if code != 0 or run["status"] != "completed":
        raise SystemExit(f"run {run_id} ended {run['status']} (exit {code}): {run.get('error')}\n{log.read_text()[-2000:]}")
    cpu = proc.cpu_seconds if forked else (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"start": run["started_at"] - wall_started, "whole": whole, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--model", default="resnet1d")
    args = parser.parse_args()

    config = RunConfig().with_overrides({**SMALL, "model.name": args.model}).validated()
    with tempfile.TemporaryDirectory() as folder:
        store = Store(os.path.join(folder, "sigscope.db"))
        first = one_run(store, config, forked=True)  # starts the server: its imports, once per job manager
        results: dict[str, list[dict]] = {"exec": [], "fork": []}
        for _ in range(args.rounds):
            for mode in ("exec", "fork"):
                results[mode].append(one_run(store, config, forked=mode == "fork"))
        forkserver.shutdown()

    print(f"{args.model}, 1 epoch on synthetic IMU, 1 thread, {args.rounds} rounds interleaved (medians)")
    print(f"{'mode':<6} {'start s':>8} {'whole run s':>12} {'run CPU s':>10}")
    median = {mode: {key: statistics.median(r[key] for r in rows) for key in ("start", "whole", "cpu")}
              for mode, rows in results.items()}
    for mode, m in median.items():
        print(f"{mode:<6} {m['start']:>8.2f} {m['whole']:>12.2f} {m['cpu']:>10.2f}")
    ratio = {key: median["fork"][key] / median["exec"][key] for key in ("start", "whole", "cpu")}
    print(f"fork / exec: start {ratio['start']:.2f}, whole run {ratio['whole']:.2f}, run CPU {ratio['cpu']:.2f}")
    print(f"the first forked run, which started the server: start {first['start']:.2f} s, whole run "
          f"{first['whole']:.2f} s")


if __name__ == "__main__":
    main()
