"""End-to-end fixtures: a real Sigscope server on a free port and Debian's Chromium.

Playwright cannot download browsers here, so it drives /usr/bin/chromium (installed by
`make test` via apt when missing); the tests skip with that reason where it is absent.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(runs: Path):
    """`streamlit run Home.py` on a free localhost port with `runs` as its runs folder;
    yields {"url", "runs", "proc"} once /_stcore/health answers, stops it afterwards."""
    port = _free_port()
    env = dict(os.environ, SIGSCOPE_RUNS_DIR=str(runs), SIGSCOPE_CACHE_DIR=str(runs / "cache"))
    log = open(runs / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.3)
        if proc.poll() is not None:
            pytest.fail(f"dashboard exited early; log: {(runs / 'server.log').read_text()[-2000:]}")
    else:
        proc.kill()
        pytest.fail("dashboard did not answer /_stcore/health within 60 s")
    try:
        yield {"url": url, "runs": runs, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        stop_leftover_runs(runs)


def stop_leftover_runs(runs: Path) -> None:
    """Runs are processes of their own that outlive the dashboard (a restart loses nothing), so
    a test's server leaves behind whatever it started and a failed test did not end: kill them,
    or they train on for minutes beside the rest of the suite."""
    db = runs / "sigscope.db"
    if not db.exists():
        return
    from core.store import Store

    for run in Store(db).list_runs(status=("queued", "running")):
        if run.get("owner_pid"):
            try:
                group = os.getpgid(run["owner_pid"])
                if group != os.getpgrp():  # a run has a session of its own; never this test's group
                    os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def fresh_server(tmp_path):
    """A server of this test's own over an empty runs folder (what a fresh clone starts with)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    with running_server(runs) as srv:
        yield srv


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One Sigscope server for the session, with its own runs folder."""
    with running_server(tmp_path_factory.mktemp("e2e-runs")) as srv:
        yield srv


def demo_models(server, *names: str) -> str:
    """The named demo models in the server's runs folder, the way a user makes them
    (`python -m core demo-models`: the committed weights, installed in milliseconds; idempotent)."""
    env = dict(os.environ, SIGSCOPE_RUNS_DIR=str(server["runs"]), SIGSCOPE_CACHE_DIR=str(server["runs"] / "cache"))
    only = [arg for name in names for arg in ("--only", name)]
    done = subprocess.run([sys.executable, "-m", "core", "demo-models", *only, "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"end-to-end tests need Debian's chromium at {CHROMIUM} (`apt-get install chromium`; "
                    "`make test` installs it when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def outside_requests(page) -> list[str]:
    """The URLs the page asks of any host but this machine (the dashboards the tests start
    listen on 127.0.0.1), as the page goes on."""
    from urllib.parse import urlparse

    outside: list[str] = []

    def seen(request) -> None:
        url = urlparse(request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in ("127.0.0.1", "localhost"):
            outside.append(request.url)
    page.on("request", seen)
    return outside


@pytest.fixture(scope="session")
def browser_context(browser):
    """One browser context for the session's pages: the dashboard's scripts come from its HTTP
    cache after the first page, and Chromium keeps their compiled code (a page load measured
    2.0 CPU-s in a warm context against 3.4 in a fresh one). Each test still gets its own page,
    so its own Streamlit session."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context
    context.close()


@pytest.fixture
def page(browser_context):
    """A new page (its own Streamlit session) in the session's browser context. A local tool
    stays local: every end-to-end test fails if its page asked any host but this machine, where
    the dashboard runs (a favicon, a font or a script from the internet), on whichever page and
    after whatever the test clicked."""
    pg = browser_context.new_page()
    pg.set_default_timeout(30_000)
    outside = outside_requests(pg)
    yield pg
    pg.close()
    assert outside == [], f"requests to other hosts: {sorted(set(outside))[:10]}"


def assert_not_blank(path: Path) -> None:
    """A screenshot a person can read: not one flat colour."""
    from PIL import Image, ImageStat

    img = Image.open(path).convert("L")
    stddev = ImageStat.Stat(img).stddev[0]
    assert stddev > 10, f"{path} looks blank (pixel stddev {stddev:.1f})"


def wait_for_app(page, timeout: float = 60.0) -> None:
    """Wait until Streamlit has finished running the script: no running indicator, no loading
    skeleton and no stale element for a second. (Not for a page whose live fragment keeps rerunning:
    wait for what it shows instead.)"""
    page.wait_for_selector("[data-testid='stApp']")
    # a stale element is one the run in progress has not redrawn yet (a widget under a new key
    # leaves its old copy on the page until the run ends)
    busy = ("() => !!document.querySelector('[data-testid=\"stStatusWidget\"], [data-testid=\"stSkeleton\"], "
            "[data-stale=\"true\"]')")
    calm, deadline = 0, time.time() + timeout
    while calm < 4:
        if time.time() > deadline:
            raise AssertionError(f"the app at {page.url} was still running after {timeout:.0f} s")
        calm = 0 if page.evaluate(busy) else calm + 1
        time.sleep(0.25)


def screenshot(page, path: Path) -> Path:
    """A screenshot of the whole page, checked to be non-blank. Streamlit scrolls inside its
    main container, so the viewport is stretched to the content's height for the shot."""
    height = page.evaluate("""() => {
        let h = Math.max(document.body.scrollHeight, window.innerHeight);  // a page that fits keeps the viewport
        const main = document.querySelector('[data-testid="stMain"]');
        if (main) for (const e of [main, ...main.querySelectorAll('*')])
            if (e.scrollHeight > e.clientHeight + 5 && getComputedStyle(e).overflowY !== 'visible') h = Math.max(h, e.scrollHeight);
        return h; }""")
    size = page.viewport_size
    tall = min(int(height) + 40, 8000)
    if tall > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": tall})
        time.sleep(0.6)  # charts re-layout to the new size (a page that fits is shot as it is)
    page.screenshot(path=str(path), full_page=True)
    if tall > size["height"]:
        page.set_viewport_size(size)
    assert_not_blank(path)
    return path
