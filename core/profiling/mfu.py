"""Model-FLOPs utilisation (MFU): the arithmetic and the one place that writes it for people.

    mfu = achieved FLOP/s / peak FLOP/s
    achieved FLOP/s = training FLOPs per example x training examples / training seconds

Training FLOPs per example are counted (forward + backward, `core.profiling.flops.
count_training_flops`), the peak is measured (`core.profiling.peak`). Under torchrun every
process trains on its shard: the examples are summed over the processes and so is the peak
(peak x processes). No torch import here: the CLI and the dashboard format runs with it.
"""
from __future__ import annotations

from typing import Any

# what a run's summary holds about it (core.train.trainer.FitResult), and the epoch metrics
SUMMARY_KEYS = ("flops_per_example", "peak_flops", "peak_dtype", "mfu", "mfu_mean")
EPOCH_KEYS = ("flops_per_sec", "mfu")  # split "train", beside samples_per_sec


def achieved_flops(flops_per_example: float | None, samples_per_sec: float | None) -> float | None:
    if flops_per_example is None or samples_per_sec is None:
        return None
    return float(flops_per_example) * float(samples_per_sec)


def mfu(flops_per_example: float | None, samples_per_sec: float | None, peak_flops: float | None,
        processes: int = 1) -> float | None:
    """Achieved over peak FLOP/s; samples_per_sec counts every process's examples, so the peak
    of one process is multiplied by the processes."""
    achieved = achieved_flops(flops_per_example, samples_per_sec)
    if achieved is None or not peak_flops or peak_flops <= 0:
        return None
    return achieved / (float(peak_flops) * max(1, int(processes)))


def mfu_percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * float(value)


def format_mfu(value: float | None) -> str:
    """0.267 -> "26.7 %"; None -> "—"."""
    return "—" if value is None else f"{mfu_percent(value):.1f} %"


def format_flops(value: float | None, per_second: bool = False) -> str:
    """1.7e11 -> "170 GFLOP" ("170 GFLOP/s" with per_second)."""
    if value is None:
        return "—"
    unit = "FLOP/s" if per_second else "FLOP"
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def run_utilization(run: dict[str, Any], finals: dict[str, float | None]) -> dict[str, Any]:
    """A run's MFU figures: the summary's (a finished run) over its latest epoch metrics (a
    running one): flops_per_example, peak_flops, peak_dtype, flops_per_sec, mfu (last epoch),
    mfu_mean. Missing figures are None."""
    summary = run.get("summary") or {}
    out: dict[str, Any] = {key: summary.get(key) for key in SUMMARY_KEYS}
    out["flops_per_sec"] = finals.get("train_flops_per_sec")
    if out["mfu"] is None:
        out["mfu"] = finals.get("train_mfu")
    if out["peak_flops"] is None and out["mfu"] and out["flops_per_sec"]:
        processes = int(run.get("processes") or 1)
        out["peak_flops"] = out["flops_per_sec"] / out["mfu"] / processes
    return out


def describe(utilization: dict[str, Any]) -> str:
    """One line: "MFU 26.7 % (45.3 GFLOP/s of a 170 GFLOP/s fp32 peak; 12.3 MFLOP per example)"."""
    if utilization.get("mfu") is None and utilization.get("flops_per_example") is None:
        return "MFU not measured"
    parts = []
    if utilization.get("flops_per_sec") is not None:
        peak = utilization.get("peak_flops")
        parts.append(f"{format_flops(utilization['flops_per_sec'], per_second=True)}"
                     + (f" of a {format_flops(peak, per_second=True)} {utilization.get('peak_dtype') or ''} peak"
                        .replace("  ", " ") if peak else ""))
    if utilization.get("flops_per_example") is not None:
        parts.append(f"{format_flops(utilization['flops_per_example'])} per training example")
    line = f"MFU {format_mfu(utilization.get('mfu'))}"
    if utilization.get("mfu_mean") is not None:
        line += f" (mean {format_mfu(utilization['mfu_mean'])})"
    return line + (f": {'; '.join(parts)}" if parts else "")
