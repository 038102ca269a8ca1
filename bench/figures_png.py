"""Plotly figures -> PNG files without kaleido: Debian's Chromium screenshots the figure's HTML.

    from figures_png import PngRenderer, chromium_available
    with PngRenderer() as png:                       # one browser for many figures
        png.render([loss_fig, acc_fig], "curves.png", columns=2)
        png.render(confusion_fig, "confusion.png")

Each figure is written with `fig.to_html(include_plotlyjs=True)` (plotly.js ships inside the
plotly package, so nothing is fetched) into a temporary page, laid out in a grid of
`columns`, and the grid is screenshotted once every plot has drawn its SVG. Playwright
cannot download browsers here, so it drives /usr/bin/chromium, as tests/e2e does.

    .venv/bin/python bench/figures_png.py      # renders a sample figure, prints the seconds
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEFAULT_WIDTH = 640  # px per figure when the figure sets no width
DEFAULT_HEIGHT = 420


def chromium_available() -> bool:
    """True when Debian's Chromium and Playwright's Python package are both installed."""
    if not CHROMIUM.exists():
        return False
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def why_unavailable() -> str:
    """One line saying what is missing for PNG export ('' when nothing is)."""
    if not CHROMIUM.exists():
        return f"PNG export needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "PNG export needs the playwright Python package (pip install -r requirements.txt)"
    return ""


def figures_html(figures: Sequence, columns: int = 1) -> str:
    """One HTML page holding `figures` in a grid; plotly.js is inlined once, with the first."""
    parts = []
    for i, fig in enumerate(figures):
        width = fig.layout.width or DEFAULT_WIDTH
        height = fig.layout.height or DEFAULT_HEIGHT
        fig = fig.__class__(fig)  # a copy: the caller's figure keeps its own size
        fig.update_layout(width=width, height=height, paper_bgcolor="white")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0),
                                 config={"staticPlot": True, "displayModeBar": False}))
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><style>"
            "body{margin:0;background:white;font-family:sans-serif}"
            f"#grid{{display:inline-grid;grid-template-columns:repeat({max(1, columns)},auto);gap:4px;"
            "background:white;padding:4px}</style></head><body><div id='grid'>"
            + "".join(f"<div class='cell'>{p}</div>" for p in parts)
            + "</div></body></html>")


class PngRenderer:
    """A headless Chromium kept open while figures are rendered (a context manager)."""

    def __init__(self, device_scale: float = 1.5, timeout_s: float = 60.0) -> None:
        """device_scale: pixels per CSS pixel in the PNG (1.5 keeps text sharp in docs);
        timeout_s: how long one figure may take to draw before the render fails."""
        reason = why_unavailable()
        if reason:
            raise RuntimeError(reason)
        self.device_scale = device_scale
        self.timeout_ms = int(timeout_s * 1000)
        self._playwright = None
        self._browser = None

    def __enter__(self) -> "PngRenderer":
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                                          headless=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()
        self._browser = self._playwright = None

    def render(self, figures, path: str | Path, columns: int = 1) -> Path:
        """Write one PNG of `figures` (a figure or a list) laid out `columns` wide; returns the path."""
        if self._browser is None:
            raise RuntimeError("PngRenderer.render: use the renderer inside `with PngRenderer() as png:`")
        figures = list(figures) if isinstance(figures, (list, tuple)) else [figures]
        if not figures:
            raise ValueError("render: no figures given")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="sigscope-png-") as tmp:
            page_file = Path(tmp) / "figure.html"
            page_file.write_text(figures_html(figures, columns), encoding="utf-8")
            context = self._browser.new_context(viewport={"width": 800, "height": 600},
                                                device_scale_factor=self.device_scale)
            try:
                page = context.new_page()
                page.set_default_timeout(self.timeout_ms)
                page.goto(page_file.as_uri())
                page.wait_for_function(
                    f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {len(figures)}")
                page.locator("#grid").screenshot(path=str(path))
            finally:
                context.close()
        return path


def render_png(figures, path: str | Path, columns: int = 1) -> Path:
    """One-shot: start Chromium, render `figures` to `path`, stop it."""
    with PngRenderer() as png:
        return png.render(figures, path, columns)


def main() -> int:
    reason = why_unavailable()
    if reason:
        print(f"figures_png: skipped: {reason}")
        return 0
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[1, 2, 3, 4], y=[1.0, 0.6, 0.4, 0.35], mode="lines+markers", name="loss"))
    fig.update_layout(title="sample curve", width=480, height=320)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        out = render_png([fig, fig], Path(tmp) / "sample.png", columns=2)
        seconds = time.perf_counter() - started
        print(f"figures_png: rendered 2 figures to a {out.stat().st_size:,}-byte PNG in {seconds:.2f} s "
              "(Chromium start included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
