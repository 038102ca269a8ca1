"""Pure data shaping between the store's rows and the figures: downsampling, smoothing,
layer x step grids, histograms over time, ETA (config diffs: core.compare). No Streamlit here, so
each function is easy to test and cheap to call every poll."""
from __future__ import annotations

import math
import time
from typing import Iterable

import numpy as np

MAX_POINTS = 400  # per trace sent to the browser each poll (streamlit issue 6510)
MAX_STEPS = 120  # columns of a layer x step heat map


def downsample(xs: list, ys: list, max_points: int = MAX_POINTS) -> tuple[list, list]:
    """Keep at most `max_points` evenly spaced points, always including the last one."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return [xs[i] for i in idx], [ys[i] for i in idx]


def ema(values: Iterable[float | None], weight: float) -> list[float | None]:
    """Exponential moving average with TensorBoard's bias correction; weight 0 = raw.
    None (NaN/Inf stored as NULL) passes through without breaking the average."""
    out: list[float | None] = []
    avg, norm = 0.0, 0.0
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(None)
            continue
        avg = weight * avg + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(avg / norm if norm > 0 else v)
    return out


def split_series(rows: list[dict]) -> dict[str, tuple[list, list]]:
    """Metric rows -> {"split/key": ([step...], [value...])} in step order."""
    out: dict[str, tuple[list, list]] = {}
    for r in rows:
        xs, ys = out.setdefault(f"{r['split']}/{r['key']}", ([], []))
        xs.append(r["step"])
        ys.append(r["value"])
    return out


def epoch_series(rows: list[dict]) -> dict[str, tuple[list, list]]:
    """Per-epoch metric rows -> {"split/key": ([epoch (1-based)...], [value...])}."""
    out: dict[str, tuple[list, list]] = {}
    for r in rows:
        xs, ys = out.setdefault(f"{r['split']}/{r['key']}", ([], []))
        xs.append((r["epoch"] or 0) + 1)
        ys.append(r["value"])
    return out


def layer_grid(rows: list[dict], max_steps: int = MAX_STEPS) -> tuple[list[int], list[str], list[list[float | None]]]:
    """Probe rows of one key -> (steps, layers in first-seen order, z[layer][step]).
    At most `max_steps` columns (evenly spaced, the latest kept)."""
    steps = sorted({r["step"] for r in rows})
    if len(steps) > max_steps:
        keep = set(downsample(steps, steps, max_steps)[0])
        steps = [s for s in steps if s in keep]
        rows = [r for r in rows if r["step"] in keep]
    layers: list[str] = []
    seen = set()
    for r in rows:
        if r["layer"] not in seen:
            seen.add(r["layer"])
            layers.append(r["layer"])
    col = {s: i for i, s in enumerate(steps)}
    row = {name: i for i, name in enumerate(layers)}
    z: list[list[float | None]] = [[None] * len(steps) for _ in layers]
    for r in rows:
        z[row[r["layer"]]][col[r["step"]]] = r["value"]
    return steps, layers, z


def histograms_over_time(hists: list[dict], bins: int = 40, max_steps: int = 60) -> tuple[list[int], list[float], list[list[float]]]:
    """Histograms of one layer/kind at several steps (each with its own edges) -> one grid:
    (steps, bin centres, share[bin][step]) on common bins spanning every step's range.
    Counts are moved to the common bins in proportion to overlap (linear within a bin), so
    re-binning leaves no empty stripes."""
    if not hists:
        return [], [], []
    if len(hists) > max_steps:
        idx = np.unique(np.linspace(0, len(hists) - 1, max_steps).round().astype(int))
        hists = [hists[i] for i in idx]
    lo = min(h["edges"][0] for h in hists)
    hi = max(h["edges"][-1] for h in hists)
    if not hi > lo:
        hi = lo + 1e-12
    grid = np.linspace(lo, hi, bins + 1)
    centres = ((grid[:-1] + grid[1:]) / 2).tolist()
    z = np.zeros((bins, len(hists)))
    for j, h in enumerate(hists):
        edges = np.asarray(h["edges"], dtype=float)
        counts = np.asarray(h["counts"], dtype=float)
        total = counts.sum()
        if total <= 0:
            continue
        if not edges[-1] > edges[0]:  # every value equal: one spike
            z[min(bins - 1, int(np.searchsorted(grid, edges[0], side="right")) - 1), j] = 1.0
            continue
        cdf = np.concatenate([[0.0], np.cumsum(counts)]) / total
        z[:, j] = np.diff(np.interp(grid, edges, cdf))
    return [h["step"] for h in hists], centres, z.tolist()


def progress(run: dict, now: float | None = None) -> dict:
    """Fraction done, elapsed and ETA seconds of a run row (ETA None until it can be told)."""
    now = time.time() if now is None else now
    total = run.get("total_steps") or 0
    step = run.get("step") or 0
    started = run.get("started_at")
    end = run.get("finished_at") or now
    elapsed = max(0.0, end - started) if started else 0.0
    fraction = min(1.0, step / total) if total else 0.0
    eta = None
    if run.get("status") == "running" and total and step > 0 and elapsed > 0:
        eta = max(0.0, (total - step) * elapsed / step)
    return {"fraction": fraction, "step": step, "total_steps": total, "epoch": run.get("epoch") or 0,
            "total_epochs": run.get("total_epochs") or 0, "elapsed": elapsed, "eta": eta}


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"
