"""What does an open dashboard page cost the machine? CPU seconds per second of the Streamlit
server and of Chromium while one Monitor page watches a training run (its live view reruns
every second) and while Home sits idle (its engine status reruns every 2 s), with Streamlit's
full garbage collection after every script run (`runner.postScriptGC`, Streamlit's default:
the baseline) and without it (`.streamlit/config.toml`). The cases alternate, each on a fresh
server, and the medians are printed with their ratio.

    .venv/bin/python bench/watch_cost.py [--rounds 2] [--seconds 20]

The run is `resnet1d` on the bundled HAPT sample in its own process, started as the dashboard
starts one (`core.launch.worker_command`); its CPU per second is printed too (on a shared
machine every core-second the page takes is one the run cannot have). Targets, for the
server's CPU against the baseline's: at most 0.5 watching a run, at most 0.25 on an idle
Home. CPU is read from /proc, so a busy machine slows the cases alike but does not inflate it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.figures_png import CHROMIUM, CHROMIUM_ARGS  # noqa: E402 - after the path is set
from bench.live_latency import start_server  # noqa: E402
from bench.watched_training import cpu_seconds, run_config  # noqa: E402
from core import launch  # noqa: E402
from core.store import Store  # noqa: E402

SETTLE_SECONDS = 5.0  # after a page is drawn, before its CPU is counted


def chromium_cpu() -> float:
    """CPU seconds of every live Chromium process (this bench's browser is the only one it starts)."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:  # by executable: its utility processes are named /proc/self/exe on their command line
                if os.readlink(f"/proc/{pid}/exe").startswith("/usr/lib/chromium/"):
                    total += cpu_seconds(int(pid)) or 0.0
            except OSError:
                pass
    return total


def rates(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU seconds per second of each named process and of Chromium over `seconds`."""
    before = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()} | {"chromium": chromium_cpu()}
    start = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    after = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()} | {"chromium": chromium_cpu()}
    return {name: (after[name] - before[name]) / elapsed for name in before}


def one_case(browser, gc: bool, seconds: float) -> dict[str, dict[str, float]]:
    """A fresh server with post-script GC on or off: Monitor on a training run, then Home idle."""
    runs = Path(tempfile.mkdtemp(prefix="sigscope-watch-cost-"))
    server, url = start_server(runs, timeout=90, options=("--runner.postScriptGC", str(gc).lower()))
    store = Store(runs / "sigscope.db")
    run_id = store.create_run(run_config(10_000).to_dict(), name="watched")
    threads = launch.threads_per_process()
    proc = subprocess.Popen(launch.worker_command(run_id, store.path, threads), env=launch.child_env(threads),
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(f"{url}/monitor?run={run_id}", timeout=120_000)
        page.get_by_text("Loss points").first.wait_for(timeout=120_000)
        deadline = time.monotonic() + 120
        while store.get_run(run_id)["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(SETTLE_SECONDS)
        watching = rates({"server": server.pid, "run": proc.pid}, seconds)
        proc.kill()
        proc.wait()
        page.goto(url, timeout=120_000)
        page.get_by_text("Model zoo").first.wait_for(timeout=120_000)
        time.sleep(SETTLE_SECONDS + 2)  # Home's background imports start 2 s after it paints
        idle = rates({"server": server.pid}, seconds)
    finally:
        context.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.terminate()
        server.wait(10)
        shutil.rmtree(runs, ignore_errors=True)
    return {"monitor": watching, "home": idle}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="(GC on, GC off) pairs, interleaved")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each page's CPU is counted")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"watch_cost: skipped: needs Debian's chromium at {CHROMIUM}")
        return 0
    from playwright.sync_api import sync_playwright

    cases: dict[bool, list[dict]] = {True: [], False: []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        for _ in range(args.rounds):
            for gc in (True, False):
                cases[gc].append(one_case(browser, gc, args.seconds))
        browser.close()

    def med(gc: bool, page: str, who: str) -> float:
        return statistics.median(c[page][who] for c in cases[gc])

    print(f"watch_cost: CPU seconds per second, medians of {args.rounds} round(s) of {args.seconds:g} s, "
          f"{launch.cores()} core(s); post-script GC on (Streamlit's default) against off (this repo)")
    for page, who in (("monitor", "server"), ("monitor", "chromium"), ("monitor", "run"), ("home", "server"),
                      ("home", "chromium")):
        on, off = med(True, page, who), med(False, page, who)
        print(f"  {page:8s} {who:9s} GC on {on:6.3f}   GC off {off:6.3f}   off/on {off / on if on else float('nan'):.2f}")
    for page, target in (("monitor", 0.5), ("home", 0.25)):
        ratio = med(False, page, "server") / med(True, page, "server")
        print(f"  the server on {page}: {ratio:.2f} of the baseline's CPU (target <= {target:g}): "
              + ("met" if ratio <= target else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
