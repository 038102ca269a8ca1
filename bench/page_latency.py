"""How long does a person wait? Each page's first paint and each widget interaction on
Build, Train, Runs and Classify, in Chromium, as a ratio to a bare Streamlit page measured in
the same run (so a busy machine slows both), plus absolute milliseconds.

    .venv/bin/python bench/page_latency.py [--repeats 3] [--only build,train] [--json]

Starts `streamlit run Home.py` on a free localhost port over a fresh runs folder holding two
tiny finished runs (for Runs and Classify), and a one-widget Streamlit app as the baseline,
then drives Debian's Chromium (/usr/bin/chromium) with Playwright. A time runs from the action
(navigation, Enter, a click) until the script run it asked for has finished and the browser
has painted the frames after it: the page stamps Streamlit's websocket messages, which are
decoded here with Streamlit's own protobufs (a live fragment's ticks are told apart by their
`is_auto_rerun`). A section switch on Train or Runs is a rerun too (only the open section is drawn).
The measured latency on Build runs in the background: its rerun and the moment the
measurement is shown are reported apart. Target: every interaction within 1 s on an idle
machine; the load average at start is printed with the table.
"""
from __future__ import annotations

import argparse
import base64
import json
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

from bench.live_latency import start_server  # noqa: E402 - after the path is set

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGET_MS = 1000.0
GROUPS = ("home", "build", "train", "runs", "classify", "monitor")

BARE_APP = '''import streamlit as st
n = st.number_input("n", 0, 1000, 0, key="n")
st.write(f"n is {n}")
'''

# stamps every websocket message in and out with the browser's wall clock (small ones kept, for
# decoding here), and each incoming one again once the page has painted the frames after it
RECORDER = """(() => {
  window.__ws = [];
  const keep = data => {
    if (!(data instanceof ArrayBuffer) && !ArrayBuffer.isView(data)) return null;
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data)
                                              : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.length > 20000) return null;
    let s = ''; for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s);
  };
  const Native = window.WebSocket;
  class Recorded extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', ev => {
        const rec = ['in', Date.now(), null, keep(ev.data)];
        window.__ws.push(rec);
        requestAnimationFrame(() => requestAnimationFrame(() => { rec[2] = Date.now(); }));
      });
    }
    send(data) { window.__ws.push(['out', Date.now(), null, keep(data)]); return super.send(data); }
  }
  window.WebSocket = Recorded;
})();"""


def seed_runs(runs: Path) -> None:
    """Two finished runs of a tiny model on generated IMU data (seconds), for Runs and Classify."""
    from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from core.jobs import JobManager
    from core.store import Store

    data = DataConfig.from_dict({"source": "synthetic_imu", "options": {"n_classes": 3, "per_class": 16},
                                 "window": 64, "stride": 32})
    jobs = JobManager(Store(runs / "sigscope.db"), max_workers=1)
    ids = [jobs.submit(RunConfig(name=f"bench tiny {i}", data=data, train=TrainConfig(epochs=2, batch_size=16),
                                 model=ModelConfig("resnet1d", {"base_channels": 8 * (i + 1), "num_stages": 1,
                                                                "blocks_per_stage": 1})))
           for i in range(2)]
    for run_id in ids:
        if jobs.wait(run_id, timeout=300) is None:
            raise SystemExit(f"seeding run {run_id} did not finish in 300 s")
    jobs.shutdown()


class Driver:
    """One Chromium page and the clock of its Streamlit runs."""

    def __init__(self, browser) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.add_init_script(RECORDER)
        self.page = self.context.new_page()
        self.page.set_default_timeout(120_000)

    def now(self) -> float:
        return self.page.evaluate("() => Date.now()")

    def until_idle(self, t0: float, timeout: float = 120.0) -> float:
        """Milliseconds from t0 (the browser's clock) until the script run the action asked for
        has finished and the page has painted it: the first rerun request a person's action sent
        at or after t0 (a live fragment's own ticks are left out), then the first run that
        started after it and finished (not cut short for a newer rerun)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            done = self._finished_after(t0)
            if done is not None:
                return done - t0
            time.sleep(0.05)
        raise TimeoutError(f"no script run finished within {timeout:.0f} s of the action")

    def _finished_after(self, t0: float) -> float | None:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        asked = started = None
        for direction, at, painted, data in self.page.evaluate("t0 => window.__ws.filter(r => r[1] >= t0)", t0):
            if data is None:
                continue
            raw = base64.b64decode(data)
            if direction == "out" and asked is None:
                msg = BackMsg.FromString(raw)
                if msg.WhichOneof("type") == "rerun_script" and not msg.rerun_script.is_auto_rerun:
                    asked = at
            elif direction == "in" and asked is not None:
                msg = ForwardMsg.FromString(raw)
                kind = msg.WhichOneof("type")
                if kind == "new_session":
                    started = at
                elif kind == "script_finished" and started is not None and \
                        msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    return painted  # None until the frames after it are painted
        return None

    def goto(self, url: str) -> float:
        t0 = time.time() * 1000  # the page's clock is gone while it navigates; same machine, same wall clock
        self.page.goto(url)
        return self.until_idle(t0)

    def press(self, locator, key: str = "Enter") -> float:
        t0 = self.now()
        locator.press(key)
        return self.until_idle(t0)

    def click(self, locator) -> float:
        t0 = self.now()
        locator.click()
        return self.until_idle(t0)

    def selectbox(self, label: str):
        return self.page.locator("[data-testid='stSelectbox']").filter(
            has=self.page.locator("[data-testid='stWidgetLabel']").get_by_text(label, exact=True)).first

    def choose_other(self, label: str) -> float:
        """Open a selectbox and click the first option it does not show now."""
        self.selectbox(label).click()
        self.page.keyboard.press("ArrowDown")  # opens the list
        other = self.page.locator("[role='option'][aria-selected='false']").first
        t0 = self.now()
        other.click()
        return self.until_idle(t0)

    def choose(self, label: str, option: str) -> float:
        """Pick an option by typing it, as a keyboard user does."""
        self.selectbox(label).click()
        self.page.keyboard.type(option)
        t0 = self.now()
        self.page.keyboard.press("Enter")
        return self.until_idle(t0)

    def switch_tab(self, name: str) -> float:
        """A section switch: Train and Runs draw only the open section, so a click reruns the page."""
        return self.click(self.page.get_by_role("tab", name=name, exact=True))


def step_up(page, label: str):
    return page.locator("[data-testid='stNumberInput']").filter(has_text=label).first \
        .locator("[data-testid='stNumberInputStepUp']")


def measure(driver: Driver, url: str, bare_url: str, groups: tuple[str, ...], repeats: int) -> dict[str, list[float]]:
    page, out = driver.page, {}

    def record(name: str, ms: float) -> None:
        out.setdefault(name, []).append(ms)

    for _ in range(repeats):  # the baseline: a bare page's first paint and one widget's rerun
        record("bare page: first paint", driver.goto(bare_url))
        for _ in range(3):
            record("bare page: rerun (baseline)", driver.click(step_up(page, "n")))
    paths = {"home": "", "build": "/build", "train": "/train", "runs": "/runs", "classify": "/classify",
             "monitor": "/monitor"}
    for group in groups:
        for _ in range(repeats):
            record(f"{group.title()}: first paint", driver.goto(url + paths[group]))
        if group == "build":
            for _ in range(repeats):  # a new value each time: the profile is not cached yet
                record("Build: change a hyperparameter", driver.click(step_up(page, "Hidden ch")))
            toggle = page.locator("[data-testid='stCheckbox']").filter(has_text="Measure latency").first
            for _ in range(repeats):
                driver.click(step_up(page, "Depth"))  # a config not measured yet
                t0 = driver.now()
                toggle.click()
                record("Build: request measured latency", driver.until_idle(t0))
                page.get_by_text("Measured / estimated").first.wait_for(timeout=120_000)
                record("Build: measured latency shown", driver.now() - t0)
                driver.click(toggle)
        elif group == "train":
            presets = ("HAPT – ResNet1D", "HAPT – HAR Transformer")
            for i in range(repeats):
                record("Train: apply a preset", driver.choose("Start from a preset", presets[i % 2]))
            for i in range(repeats):
                record("Train: switch a section", driver.switch_tab("Optimizer and schedule" if i % 2 == 0
                                                                    else "Data"))
        elif group == "runs":
            record("Runs: open One run", driver.switch_tab("One run"))
            for _ in range(repeats):
                record("Runs: change selection", driver.choose_other("Run"))
        elif group == "classify":
            for _ in range(repeats):
                record("Classify: choose a model", driver.choose_other("Model"))
    return out


def table(samples: dict[str, list[float]], load: tuple[float, float, float]) -> dict:
    """Medians, each as a ratio to the bare page's rerun; a first paint also to the bare page's
    first paint (loading Streamlit's own scripts is in both)."""
    baseline = statistics.median(samples["bare page: rerun (baseline)"])
    bare_paint = statistics.median(samples["bare page: first paint"])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append({"interaction": name, "median_ms": round(median, 1),
                     "ratio_to_bare_rerun": round(median / baseline, 2),
                     "ratio_to_bare_first_paint": round(median / bare_paint, 2) if "first paint" in name else None,
                     "n": len(values), "within_1s": median <= TARGET_MS})
    return {"load_average": [round(v, 2) for v in load], "cpus": os.cpu_count(), "bare_rerun_ms": round(baseline, 1),
            "bare_first_paint_ms": round(bare_paint, 1), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="samples per interaction, median shown (3)")
    parser.add_argument("--only", default=",".join(GROUPS),
                        help=f"comma-separated pages to drive (default all: {','.join(GROUPS)})")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    args = parser.parse_args()
    groups = tuple(g.strip() for g in args.only.split(",") if g.strip())
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"--only: unknown page(s) {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    if not Path(CHROMIUM).exists():
        print(f"skipped: needs Debian's chromium at {CHROMIUM} (apt-get install chromium; `make test` installs it)")
        return
    from playwright.sync_api import sync_playwright

    load = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="sigscope-page-latency-"))
    runs = folder / "runs"
    runs.mkdir()
    if {"runs", "classify"} & set(groups):
        seed_runs(runs)
    bare = folder / "bare_app.py"
    bare.write_text(BARE_APP)
    servers = [start_server(runs, 90, ROOT / "Home.py"), start_server(runs, 90, bare)]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            samples = measure(Driver(browser), servers[0][1], servers[1][1], groups, args.repeats)
            browser.close()
    finally:
        for proc, _ in servers:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    shutil.rmtree(folder, ignore_errors=True)  # kept when a step failed: its server logs say why
    result = table(samples, load)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; "
          f"bare page rerun {result['bare_rerun_ms']:.0f} ms (median)")
    print(f"{'interaction':36s} {'median ms':>10s} {'× bare rerun':>13s} {'× bare paint':>13s} {'n':>3s}  target 1 s")
    for row in result["rows"]:
        paint = row["ratio_to_bare_first_paint"]
        print(f"{row['interaction']:36s} {row['median_ms']:10.0f} {row['ratio_to_bare_rerun']:13.2f} "
              f"{'' if paint is None else f'{paint:.2f}':>13s} {row['n']:3d}  {'ok' if row['within_1s'] else 'over'}")


if __name__ == "__main__":
    main()
