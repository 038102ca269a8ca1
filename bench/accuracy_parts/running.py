"""Running protocols: each run through the engine's run_job path into a store, folds in
worker processes, seeds scored as ensembles, with timing, profile and machine facts."""
from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from core.config import RunConfig
from core.train.callbacks import Callback

from bench.accuracy_parts.protocols import ROOT, Protocol, base_config, protocol_configs

# ---------------------------------------------------------------------------- running
class _Capture(Callback):
    """A Trainer callback that keeps what the result needs from the live trainer."""

    name = "accuracy_capture"

    def __init__(self) -> None:
        self.model = None
        self.input_shape: tuple | None = None
        self.device = "cpu"
        self.info: dict = {}

    def on_fit_start(self, trainer) -> None:
        self.model = trainer.model
        self.input_shape = tuple(int(d) for d in trainer.bundle.input_shape)
        self.device = str(trainer.device)
        self.info = dict(trainer.bundle.info)


def _curves(store, run_id: str) -> dict[str, list]:
    """Per-epoch train/val loss and accuracy: {"epoch": [1, 2, ...], "train_loss": [...], ...}."""
    by_epoch: dict[int, dict[str, float]] = {}
    for point in store.metric_series(run_id, keys=["loss", "accuracy"]):
        if point["split"] in ("train", "val") and point["epoch"] is not None:
            by_epoch.setdefault(int(point["epoch"]), {})[f"{point['split']}_{point['key']}"] = point["value"]
    epochs = sorted(by_epoch)
    keys = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
    out: dict[str, list] = {"epoch": [e + 1 for e in epochs]}
    for key in keys:
        values = [by_epoch[e].get(key) for e in epochs]
        if any(v is not None for v in values):
            out[key] = values
    return out


def _last_report(store, run_id: str, key: str):
    rows = store.reports(run_id, key=key, split="test")
    return rows[-1]["value"] if rows else None


def execute_run(store, cfg: RunConfig, profile: bool = True) -> dict:
    """Run `cfg` to its end as an ordinary stored run (the CLI's `train` path) and collect
    its test metrics, confusion, per-class scores, curves, seconds per epoch, params, FLOPs."""
    from core.jobs import run_job
    from core.train import ProgressPrinter

    run_id = store.create_run(cfg.to_dict(), name=cfg.name)
    print(f"  run {run_id} ({cfg.model.name} on {cfg.data.source}, {cfg.train.epochs} epochs) in {store.runs_dir}",
          file=sys.stderr, flush=True)
    capture = _Capture()
    started = time.perf_counter()
    try:
        status = run_job(store, run_id, cfg, device=None if cfg.train.device == "auto" else cfg.train.device,
                         callbacks=[ProgressPrinter(), capture])
    except KeyboardInterrupt:
        store.update_run(run_id, status="cancelled", error="cancelled with Ctrl-C")
        raise
    run = store.get_run(run_id)
    out: dict[str, Any] = {"run_id": run_id, "status": status, "message": run.get("error") or "",
                           "wall_seconds": round(time.perf_counter() - started, 1)}
    if status != "completed":
        return out
    summary = run.get("summary") or {}
    test = summary.get("test_metrics") or {}
    epoch_seconds = [p["value"] for p in store.metric_series(run_id, keys=["epoch_seconds"], split="train")]
    info = capture.info
    out.update({
        "accuracy": test.get("test_accuracy"), "macro_f1": test.get("test_macro_f1"),
        "test_loss": test.get("test_loss"),
        "confusion": _last_report(store, run_id, "confusion_matrix"),
        "per_class": _last_report(store, run_id, "per_class"),
        "curves": _curves(store, run_id),
        "epochs": summary.get("epochs_completed"), "epochs_configured": cfg.train.epochs,
        "best_epoch": None if summary.get("best_epoch") is None else summary["best_epoch"] + 1,
        "seconds_per_epoch": round(statistics.median(epoch_seconds), 3) if epoch_seconds else None,
        "split_sizes": info.get("split_sizes"), "split_groups": _short_groups(info.get("split_groups")),
        "input_shape": list(capture.input_shape or ()),
    })
    if profile and capture.model is not None:
        out.update(_profile(capture))
    return out


def ensemble_runs(store, runs: list[dict], seeds: int, adapt_bn: bool = False) -> list[dict]:
    """Each consecutive group of `seeds` runs (one fold, several seeds) as one run-like dict scored
    as their ensemble: the mean of their test probabilities (core.infer.evaluate_split). Timing,
    curves, params and FLOPs are the first member's; `members` keeps each run's own accuracy.
    adapt_bn: scored with every member's BatchNorm statistics re-estimated on the fold's unlabeled
    test inputs (core.infer.adapt_batchnorm); the unadapted scores are kept as `unadapted`."""
    from core.commands.predict import load_runs
    from core.infer import evaluate_split

    out = []
    for i in range(0, len(runs), seeds):
        group = runs[i:i + seeds]
        ensemble = load_runs(store, [r["run_id"] for r in group])  # one run alone when seeds == 1
        bundles: dict = {}  # the fold's data, loaded once for both scorings
        plain = evaluate_split(ensemble, "test", bundles=bundles)
        scores = evaluate_split(ensemble, "test", adapt_bn=True, bundles=bundles) if adapt_bn else plain
        members = [{"run_id": r["run_id"], "seed": r["config"]["train"]["seed"], "accuracy": r["accuracy"],
                    "macro_f1": r["macro_f1"]} for r in group]
        if adapt_bn:
            for m in members:
                m["adapted_accuracy"] = (scores.get("member_accuracy") or {}).get(m["run_id"], scores["accuracy"])
        out.append({**group[0], "run_id": "+".join(r["run_id"] for r in group),
                    "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "confusion": scores["confusion"],
                    "per_class": scores["per_class"], "members": members,
                    **({"unadapted": {"accuracy": plain["accuracy"], "macro_f1": plain["macro_f1"]}} if adapt_bn else {})})
        alone = ", ".join(f"{r['accuracy']:.4f}" for r in group)
        print(f"  {'ensemble of ' + str(len(group)) if len(group) > 1 else 'run'} ({group[0]['fold'] or 'one run'}): "
              f"accuracy {scores['accuracy']:.4f}" + (f" adapted, {plain['accuracy']:.4f} without" if adapt_bn else "")
              + f"; members {alone}", file=sys.stderr, flush=True)
    return out


def _short_groups(groups: dict | None) -> dict | None:
    """Split groups for the JSON; a split with many groups (UEA: one per case) is summarized."""
    if not groups:
        return groups
    return {k: (v if len(v) <= 30 else f"{len(v)} groups") for k, v in groups.items()}


def _profile(capture: _Capture) -> dict:
    """Params and forward FLOPs per example of the trained model (core.profile)."""
    from core.profile import profile_module

    report = profile_module(capture.model, capture.input_shape, batch_size=1, measure_latency=False,
                            cross_check=False, device=capture.device)
    return {"params": int(report.params["total"]), "flops": int(report.flops),
            "flops_convention": report.flops_convention + ", forward pass, per example"}


def pooled_per_class(confusion: list[list[int]], class_names: list[str]) -> dict:
    """Per-class precision/recall/F1/support from a (summed) confusion matrix."""
    import torch

    from core.train.metrics import precision_recall_f1

    matrix = torch.tensor(confusion)
    precision, recall, f1 = precision_recall_f1(matrix)
    return {"class_names": list(class_names), "precision": precision.tolist(), "recall": recall.tolist(),
            "f1": f1.tolist(), "support": matrix.sum(dim=1).tolist()}


def verdict(value: float | None, target: float | None) -> str:
    """PASS / FAIL against a target; '-' when there is no target."""
    if target is None:
        return "-"
    if value is None:
        return "FAIL"
    return "PASS" if value >= target else "FAIL"


def machine_info() -> dict:
    """CPU model, cores, torch and Python versions of this machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _repo_relative(path: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _load_average() -> float | None:
    """The 1-minute load average (other jobs on the cores slow every timing), None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


_BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _execute_all(store, configs: list, parallel: int) -> list[dict]:
    """Run (label, cfg) pairs, `parallel` at a time in worker processes (1: here, one by one,
    stopping at the first run that does not complete). Each worker gets cores // parallel threads."""
    runs = []
    if parallel <= 1 or len(configs) < 2:
        for label, cfg in configs:
            if label:
                print(f"fold {label}", file=sys.stderr, flush=True)
            runs.append(execute_run(store, cfg))
            if runs[-1]["status"] != "completed":
                break
        return runs
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from bench.accuracy_parts.worker import execute_in_process

    threads = max(1, (os.cpu_count() or 1) // parallel)
    # Workers inherit the environment: cap numpy's/librosa's BLAS threads too, or N workers x all cores
    # of BLAS threads fight over the cores (3x slower epochs measured on 2 cores).
    saved = {var: os.environ.get(var) for var in _BLAS_THREAD_VARS}
    os.environ.update({var: str(threads) for var in _BLAS_THREAD_VARS})
    try:
        with ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(execute_in_process, str(store.path), cfg.to_dict(), threads) for _, cfg in configs]
            return [f.result() for f in futures]
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def run_protocol(p: Protocol, store, quick: bool = False, epochs: int | None = None,
                 model: str | None = None, parallel: int = 1, sets: list[str] | tuple = (), seeds: int = 1,
                 adapt_bn: bool = False) -> dict:
    """Every run of protocol `p`, summarized into the result JSON (not yet written);
    parallel > 1 runs that many folds at once in worker processes."""
    _, preset = base_config(p, model)
    target = p.quick_target if quick else p.target
    result: dict[str, Any] = {
        "protocol": p.name, "title": p.title, "data": p.data + (" (bundled sample)" if quick and p.needs else ""),
        "split": p.quick_split if quick and p.quick_split else p.split, "mode": "quick" if quick else "full",
        "preset": preset, "target": target,
        "command": p.command(quick, epochs, model, sets, seeds, adapt_bn), "note": p.note, "sets": list(sets),
        "seeds": seeds, "adapt_bn": adapt_bn,
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine_info(),
        "load_average_before": _load_average(),
    }
    configs = list(protocol_configs(p, quick, epochs, model, sets, seeds))
    print(f"{p.name}: {len(configs)} run(s) of {configs[0][1].model.name} on {configs[0][1].data.source}",
          file=sys.stderr, flush=True)
    runs = _execute_all(store, configs, parallel)
    if parallel > 1 and len(configs) > 1:
        result["command"] += f" --parallel {parallel}"
    for run, (label, cfg) in zip(runs, configs):
        run.update({"fold": label, "model": cfg.model.name, "config": cfg.to_dict()})
    first = runs[0]["config"]
    result.update({"model": first["model"]["name"], "model_hparams": first["model"]["hparams"],
                   "runs_dir": _repo_relative(store.runs_dir), "run_ids": [r["run_id"] for r in runs],
                   "load_average_after": _load_average()})
    failed = [r for r in runs if r["status"] != "completed"]
    if failed or len(runs) < len(configs):
        r = failed[0] if failed else {"run_id": "-", "status": "not run", "message": "an earlier run failed"}
        result.update({"result": "ERROR", "error": f"run {r['run_id']} {r['status']}: {r['message']}",
                       "runs": runs})
        return result
    if seeds > 1 or adapt_bn:
        runs = ensemble_runs(store, runs, seeds, adapt_bn)
    for key in ("params", "flops", "flops_convention", "input_shape"):
        result[key] = runs[0].get(key)
    result["epochs"] = runs[0]["epochs"] if len(runs) == 1 else [r["epochs"] for r in runs]
    result["epochs_configured"] = runs[0]["epochs_configured"]
    result["seconds_per_epoch"] = (runs[0]["seconds_per_epoch"] if len(runs) == 1 else
                                   round(statistics.mean(r["seconds_per_epoch"] for r in runs), 3))
    if len(runs) == 1:
        r = runs[0]
        result.update({"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "confusion": r["confusion"],
                       "per_class": r["per_class"], "curves": r["curves"], "split_sizes": r["split_sizes"],
                       **{k: r[k] for k in ("members", "unadapted") if k in r},
                       "split_groups": r["split_groups"], "best_epoch": r["best_epoch"], "config": r["config"]})
    else:
        names = runs[0]["per_class"]["class_names"]
        size = len(names)
        pooled = [[sum(r["confusion"][i][j] for r in runs) for j in range(size)] for i in range(size)]
        total = sum(map(sum, pooled))
        result.update({
            "accuracy": statistics.mean(r["accuracy"] for r in runs),
            "macro_f1": statistics.mean(r["macro_f1"] for r in runs),
            "pooled_accuracy": sum(pooled[i][i] for i in range(size)) / max(total, 1),
            "confusion": pooled, "per_class": pooled_per_class(pooled, names),
            "folds": [{"fold": r["fold"], "run_id": r["run_id"], "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                       "epochs": r["epochs"], "seconds_per_epoch": r["seconds_per_epoch"],
                       "split_sizes": r["split_sizes"], "split_groups": r["split_groups"], "curves": r["curves"],
                       **{k: r[k] for k in ("members", "unadapted") if k in r}}
                      for r in runs],
            "config": runs[0]["config"]})
        if adapt_bn:
            result["unadapted"] = {k: statistics.mean(r["unadapted"][k] for r in runs) for k in ("accuracy", "macro_f1")}
    result["result"] = verdict(result["accuracy"], target)
    return result


