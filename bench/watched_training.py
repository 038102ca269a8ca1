"""Does watching a run slow it? The same run's time per training step with 0 and with 8
Monitor pages open on it in headless Chromium, and how long a Monitor page takes to reload
while a run trains, in two layouts of the machine's cores:

    split:  the run on its own cores (the first half), the server and Chromium on the others
            (as where the browsers run on other machines or cores);
    shared: everything on every core (a laptop with the browser on it).

The run trains in its own process, started exactly as the dashboard's JobManager starts one
(`core.launch.worker_command`: `python -m core train --run-id ID`), while a real `streamlit run`
server serves the Monitor pages, which poll the store every second. Cases are interleaved
(0, 8, 0, 8, ...) and medians printed: milliseconds per step of the training loop (the run's own
`epoch_seconds` over its steps; the first epoch is a warm-up), the training process's CPU
milliseconds per step (from /proc), and their ratios 8 pages / 0 pages (target <= 1.2 where the
browsers run on other cores: the split layout). The shared layout measures the contention of a
machine with everything on it, not the dashboard.

    python bench/watched_training.py                     # both layouts, 1 round, 8 pages
    python bench/watched_training.py --layout split --rounds 3 --pages 4 --epochs 8
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.figures_png import CHROMIUM, CHROMIUM_ARGS
from bench.live_latency import start_server
from core import launch
from core.config import RunConfig
from core.store import Store

ROOT = Path(__file__).resolve().parents[1]
RENDER_SECONDS = 90  # a page that has not drawn by then counts as not rendered


def run_config(epochs: int) -> RunConfig:
    return RunConfig().with_overrides({"data.source": "hapt", "model.name": "resnet1d", "train.epochs": epochs,
                                       "model.hparams.base_channels": 16, "model.hparams.num_stages": 2,
                                       "train.batch_size": 32})


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def train_watched(store: Store, cfg: RunConfig, url: str, browser, pages: int, cores: set[int]) -> dict:
    """Train one run in its own process on `cores` with `pages` Monitor pages open on it."""
    run_id = store.create_run(cfg.to_dict(), name=f"watched by {pages}")
    threads = len(cores)
    cmd = launch.worker_command(run_id, store.path, threads)
    contexts, reloads = [], []
    proc = sampler = None
    try:
        for _ in range(pages):  # every page open before the run starts
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(f"{url}/monitor?run={run_id}", wait_until="commit", timeout=300_000)
            contexts.append((context, page))
        rendered = 0
        deadline = time.monotonic() + RENDER_SECONDS
        for _, page in contexts:  # how many draw within the bound (the run starts either way)
            try:
                page.get_by_text("Loss points").first.wait_for(timeout=max(1, deadline - time.monotonic()) * 1000)
                rendered += 1
            except Exception:  # noqa: BLE001 - a page still loading is what is being counted
                pass
        proc = subprocess.Popen(cmd, env=launch.child_env(threads), stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: os.sched_setaffinity(0, cores))
        sampled: list[float] = [0.0]

        def sample(pid: int = proc.pid) -> None:  # the process's CPU time until just before it exits
            while proc.poll() is None:
                sampled[0] = cpu_seconds(pid) or sampled[0]
                time.sleep(0.05)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        while proc.poll() is None:
            if contexts and len(reloads) < 5 and store.get_run(run_id)["status"] == "running":
                page = contexts[0][1]
                start = time.perf_counter()
                try:
                    page.reload(wait_until="commit", timeout=RENDER_SECONDS * 1000)
                    page.get_by_text("Loss points").first.wait_for(timeout=RENDER_SECONDS * 1000)
                    reloads.append(time.perf_counter() - start)
                except Exception:  # noqa: BLE001 - counted as a reload that took longer than the bound
                    reloads.append(float("inf"))
            time.sleep(0.2)
    finally:
        for context, _ in contexts:
            context.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait()
    sampler.join(5)
    cpu = sampled[0]
    run = store.get_run(run_id)
    if run["status"] != "completed":
        raise SystemExit(f"watched_training: run {run_id} ended {run['status']}: {run.get('error')}")
    epochs = [r["value"] for r in store.metric_series(run_id, keys=["epoch_seconds"], split="train")][1:]
    steps_per_epoch = run["total_steps"] / run["total_epochs"]
    return {"step_s": statistics.median(epochs) / steps_per_epoch, "cpu_per_step": cpu / run["total_steps"],
            "reloads": reloads, "rendered": rendered if pages else 0}


def measure(layout: str, rounds: int, pages: int, epochs: int) -> dict[int, list[dict]]:
    """Interleaved rounds of 0 and `pages` Monitor pages in one core layout."""
    from playwright.sync_api import sync_playwright

    every = sorted(os.sched_getaffinity(0))
    if layout == "split" and len(every) > 1:
        run_cores, rest = set(every[:len(every) // 2]), set(every[len(every) // 2:])
    else:
        run_cores = rest = set(every)
    runs = Path(tempfile.mkdtemp(prefix="sigscope-watched-"))
    os.environ["SIGSCOPE_RUNS_DIR"] = str(runs)
    store = Store(runs / "sigscope.db")
    os.sched_setaffinity(0, rest)  # the server and Chromium inherit it
    server, url = start_server(runs, timeout=90)
    cases: dict[int, list[dict]] = {0: [], pages: []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            train_watched(store, run_config(2), url, browser, 0, run_cores)  # warm-up: the feature cache
            for _ in range(rounds):
                for n in (0, pages):
                    cases[n].append(train_watched(store, run_config(epochs), url, browser, n, run_cores))
            browser.close()
    finally:
        os.sched_setaffinity(0, set(every))
        server.terminate()
        server.wait(10)
        shutil.rmtree(runs, ignore_errors=True)
    print(f"  [{layout}] the run on core(s) {sorted(run_cores)} ({len(run_cores)} thread(s)), the server and "
          f"Chromium on {sorted(rest)}")
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", choices=("both", "split", "shared"), default="both")
    parser.add_argument("--rounds", type=int, default=1, help="(0 pages, N pages) pairs, interleaved")
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"watched_training: skipped: needs Debian's chromium at {CHROMIUM}")
        return 0
    print(f"watched_training: resnet1d on the bundled HAPT sample, {args.epochs} epochs per run, "
          f"{len(os.sched_getaffinity(0))} core(s), {args.pages} Monitor pages polling every second; medians of "
          f"{args.rounds} round(s)")
    for layout in (("split", "shared") if args.layout == "both" else (args.layout,)):
        cases = measure(layout, args.rounds, args.pages, args.epochs)

        def med(pages: int, key: str) -> float:
            return statistics.median(r[key] for r in cases[pages])

        n = args.pages
        reloads = [t for r in cases[n] for t in r["reloads"]]
        print(f"  [{layout}] ms/step (loop)  0 pages {med(0, 'step_s') * 1000:8.2f}   {n} pages "
              f"{med(n, 'step_s') * 1000:8.2f}   ratio {med(n, 'step_s') / med(0, 'step_s'):.2f}")
        print(f"  [{layout}] CPU ms/step     0 pages {med(0, 'cpu_per_step') * 1000:8.2f}   {n} pages "
              f"{med(n, 'cpu_per_step') * 1000:8.2f}   ratio {med(n, 'cpu_per_step') / med(0, 'cpu_per_step'):.2f}"
              " (the training process's own CPU, start-up included)")
        rendered = [r["rendered"] for r in cases[n]]
        print(f"  [{layout}] Monitor pages drawn within {RENDER_SECONDS} s of opening: {min(rendered)} to "
              f"{max(rendered)} of {n}")
        if reloads:
            slow = sum(1 for t in reloads if t == float("inf"))
            print(f"  [{layout}] Monitor reload while training: median {statistics.median(reloads):.2f} s over "
                  f"{len(reloads)} reloads (target <= 2 s)" + (f"; {slow} took over {RENDER_SECONDS} s" if slow else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
