"""Runs as processes and DDP, measured on this machine:

    (a) samples per second of the same run with 1 and with 2 processes (PyTorch DDP under
        torchrun, gloo on CPU, NCCL on GPUs), the same global batch, as a ratio 2p / 1p;
    (b) what running a run as a child process costs against training it in a thread of the
        manager's own process: wall seconds from submit to the end, start-up included, for
        the same config both ways, as a ratio process / thread, and the training loop's own
        seconds (the `epoch_seconds` metrics) both ways.

Each case runs `--repeats` times, interleaved; medians are printed. Samples per second come from
the runs' own `samples_per_sec` metric (the training loop only: every rank's examples over rank
0's loop time). On a 2-core machine two processes share the cores each run would have alone
(each gets one thread), so (a) says what DDP costs there in communication, not what it gains;
its gain needs more cores or devices than one process can use.

    python bench/ddp_scaling.py                                     # bundled HAPT sample, resnet1d
    python bench/ddp_scaling.py --epochs 3 --model har_transformer --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from core.config import RunConfig
from core.jobs import JobManager
from core.store import Store


def config(model: str, epochs: int, processes: int) -> RunConfig:
    overrides = {"data.source": "hapt", "model.name": model, "train.epochs": epochs, "train.processes": processes,
                 "train.batch_size": 64, "train.probes.enabled": False}
    if model == "resnet1d":
        overrides.update({"model.hparams.base_channels": 16, "model.hparams.num_stages": 2})
    return RunConfig().with_overrides(overrides)


def one_run(jobs: JobManager, cfg: RunConfig) -> dict:
    start = time.perf_counter()
    run_id = jobs.submit(cfg)
    status = jobs.wait(run_id, timeout=3600)
    wall = time.perf_counter() - start
    if status != "completed":
        raise SystemExit(f"ddp_scaling: run {run_id} ended {status}: {jobs.store.get_run(run_id).get('error')}")
    train = jobs.store.metric_series(run_id, keys=["samples_per_sec", "epoch_seconds"], split="train")
    rates = [r["value"] for r in train if r["key"] == "samples_per_sec"][1:]  # the first epoch warms up
    loop = sum(r["value"] for r in train if r["key"] == "epoch_seconds")
    return {"samples_per_sec": statistics.median(rates) if rates else float("nan"), "wall": wall, "loop": loop}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet1d")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="sigscope-ddp-bench-"))
    os.environ["SIGSCOPE_RUNS_DIR"] = str(folder)
    store = Store(folder / "sigscope.db")
    process_jobs = JobManager(store, max_workers=1, check_memory=False)
    thread_jobs = JobManager(store, max_workers=1, mode="thread", check_memory=False, recover=False)
    results: dict[str, list[dict]] = {"1p": [], "2p": [], "thread": []}
    try:
        for _ in range(args.repeats):  # interleaved, so a busier moment hits every case alike
            results["1p"].append(one_run(process_jobs, config(args.model, args.epochs, 1)))
            results["2p"].append(one_run(process_jobs, config(args.model, args.epochs, 2)))
            results["thread"].append(one_run(thread_jobs, config(args.model, args.epochs, 1)))
    finally:
        process_jobs.shutdown(cancel=True)
        thread_jobs.shutdown(cancel=True)

    def med(case: str, key: str) -> float:
        return statistics.median(r[key] for r in results[case])

    cores = len(os.sched_getaffinity(0))
    print(f"ddp_scaling: {args.model} on the bundled HAPT sample, {args.epochs} epochs, global batch 64, "
          f"{cores} core(s), {args.repeats} repeat(s), medians")
    print(f"  samples/s   1 process {med('1p', 'samples_per_sec'):9.1f}   2 processes {med('2p', 'samples_per_sec'):9.1f}"
          f"   ratio 2p/1p = {med('2p', 'samples_per_sec') / med('1p', 'samples_per_sec'):.2f}")
    print(f"  wall s      thread    {med('thread', 'wall'):9.2f}   process     {med('1p', 'wall'):9.2f}"
          f"   ratio process/thread = {med('1p', 'wall') / med('thread', 'wall'):.2f}"
          f" (+{med('1p', 'wall') - med('thread', 'wall'):.1f} s: interpreter, imports, data load, store)")
    print(f"  loop s      thread    {med('thread', 'loop'):9.2f}   process     {med('1p', 'loop'):9.2f}"
          f"   ratio process/thread = {med('1p', 'loop') / med('thread', 'loop'):.2f} (the training loop alone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
