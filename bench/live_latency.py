"""How live is the live view? Time from a metric point written to the store until the
browser shows it, and how long Home and Monitor take to paint.

    .venv/bin/python bench/live_latency.py [--points 20] [--refresh 1.0 0.5]

Starts `streamlit run Home.py` on a free localhost port over a fresh runs folder, drives
Debian's Chromium (/usr/bin/chromium) with Playwright, and:
- first paint: seconds from navigation until the page's content is on screen (Home: the
  engine's metrics; Monitor: the run's metrics), cold (first load after start) and warm
  (median of 5 loads);
- write-to-DOM latency: a run row owned by this process gets one loss point at a time
  through the store's writer (flushed at once); a MutationObserver in the page stamps the
  moment the Monitor's "Latest loss" shows that value. Median of N points per refresh
  interval; target <= 1 s. Points are written at random phases of the polling cycle.
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from core.config import RunConfig  # noqa: E402
from core.store import Store  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
TARGET_S = 1.0

OBSERVER = """() => {
  window.__seen = {};
  const read = () => {
    for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
      const label = m.querySelector('[data-testid="stMetricLabel"]');
      const value = m.querySelector('[data-testid="stMetricValue"]');
      if (label && value && label.innerText.trim().startsWith('Latest loss')) {
        const v = value.innerText.trim();
        if (!(v in window.__seen)) window.__seen[v] = Date.now();
      }
    }
  };
  new MutationObserver(read).observe(document.body, {subtree: true, childList: true, characterData: true});
  read();
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs: Path, timeout: float = 60, script: Path | str = "Home.py",
                 options: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """`streamlit run SCRIPT` (the dashboard by default) on a free localhost port over `runs`,
    with Streamlit `options` (`--runner.postScriptGC`, `true`) after the usual ones; (process,
    url) once it answers /_stcore/health. Its log is runs/server-<script>.log."""
    port = free_port()
    env = dict(os.environ, SIGSCOPE_RUNS_DIR=str(runs), SIGSCOPE_CACHE_DIR=str(runs / "cache"))
    log = runs / f"server-{Path(script).stem}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", "127.0.0.1", "--server.port",
         str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", *options],
        cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"{Path(script).name} did not start; see {log}")


def first_paint(page, url: str, ready_text: str) -> float:
    started = time.perf_counter()
    page.goto(url)
    page.get_by_text(ready_text).first.wait_for(timeout=120_000)
    return time.perf_counter() - started


def choose_refresh(page, seconds: float) -> None:
    page.locator("[data-testid='stSelectbox']").filter(has_text="Refresh").first.click()
    page.get_by_role("option", name=f"every {seconds:g} s").click()
    time.sleep(2.0)


def write_to_dom(page, store: Store, run_id: str, values: list[int]) -> list[float]:
    """Seconds from each point's commit until the page shows it."""
    page.evaluate(OBSERVER)
    writer = store.writer(run_id, flush_seconds=3600)  # flushed by hand, right away
    out = []
    for i, value in enumerate(values):
        time.sleep(random.uniform(0.3, 1.3))  # a random phase of the polling cycle
        writer.metric(step=value, epoch=0, split="step", key="loss", value=float(value))
        writer.flush()
        written_ms = time.time() * 1000
        page.wait_for_function(f"() => window.__seen && ('{value}' in window.__seen)", timeout=30_000)
        seen_ms = page.evaluate(f"() => window.__seen['{value}']")
        out.append((seen_ms - written_ms) / 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=20, help="metric points per refresh interval (20)")
    parser.add_argument("--refresh", type=float, nargs="+", default=[1.0, 0.5],
                        help="Monitor refresh intervals to measure, seconds (1.0 = the default, 0.5)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"skipped: needs Debian's chromium at {CHROMIUM} (apt-get install chromium; `make test` installs it)")
        return
    from playwright.sync_api import sync_playwright

    runs = Path(tempfile.mkdtemp(prefix="sigscope-bench-")) / "runs"
    runs.mkdir(parents=True)
    store = Store(runs / "sigscope.db")
    run_id = store.create_run(RunConfig(name="latency probe").to_dict(), status="running")
    store.update_run(run_id, started_at=time.time(), total_steps=100_000, total_epochs=1, device="cpu")
    proc, url = start_server(runs)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            home_cold = first_paint(page, url, "Running")
            monitor_cold = first_paint(page, f"{url}/monitor?run={run_id}", "Loss points")
            home_warm = statistics.median(first_paint(page, url, "Running") for _ in range(5))
            monitor_warm = statistics.median(first_paint(page, f"{url}/monitor?run={run_id}", "Loss points")
                                             for _ in range(5))
            print(f"first paint  Home: cold {home_cold:.2f} s, warm median {home_warm:.2f} s")
            print(f"first paint  Monitor: cold {monitor_cold:.2f} s, warm median {monitor_warm:.2f} s")
            next_value = 1000
            for refresh in args.refresh:
                page.goto(f"{url}/monitor?run={run_id}")
                page.get_by_text("Loss points").wait_for()
                if refresh != 1.0:
                    choose_refresh(page, refresh)
                values = list(range(next_value, next_value + args.points))
                next_value += args.points
                lat = write_to_dom(page, store, run_id, values)
                med = statistics.median(lat)
                print(f"write->DOM   refresh every {refresh:g} s: median {med:.3f} s over {len(lat)} points "
                      f"(min {min(lat):.3f}, max {max(lat):.3f}); median/target = {med / TARGET_S:.2f} "
                      f"[{'ok' if med <= TARGET_S else 'over'} target {TARGET_S:g} s]")
            browser.close()
    finally:
        store.update_run(run_id, status="cancelled", finished_at=time.time())
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
