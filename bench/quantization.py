"""int8 against fp32, per zoo model: file size and latency ratios int8/fp32 and the accuracy
change, each model's variants measured in one run on the same threads.

    .venv/bin/python bench/quantization.py                               # HAPT/FSDD presets + the 2 demos
    .venv/bin/python bench/quantization.py --only demo-imu,demo-audio    # the committed demo models only (no training)
    .venv/bin/python bench/quantization.py --qat --qat-epochs 3 --json   # QAT int8 too; the figures as JSON
    .venv/bin/python bench/quantization.py --runs-dir runs/qbench        # keep the trained runs; reruns reuse them

The models: one trained run per HAPT and FSDD preset (`python -m core presets`; a preset that
only `extends` another with more data, e.g. fsdd_unseen_speakers, is left out: same model)
and the two committed demo runs (demo-imu: har_transformer on HAPT; demo-audio:
audio_resnet_attention on FSDD), which are real trained models at no cost. Each preset is
trained with `python -m core train --preset NAME --set train.epochs=N` on the bundled data
sample, into a temporary runs folder (or --runs-dir, where a completed run of the same preset
and epochs is reused instead). The epochs are kept low (DEFAULT_EPOCHS, or --epochs for all;
printed per model): the whole bench took 7.4 minutes on 2 lightly loaded cores; --qat adds a
3-epoch fine-tune per model, and load from other work can make either several times longer.

Each run is exported with `core.deploy.export_run` (ONNX only; Conv+BN folded, parity-checked)
with int8 variants: ORT dynamic, ORT static (QDQ, per-channel, MinMax on 256 training windows)
and with --qat the QAT fine-tuned copy quantized the static way. Per variant: file size,
test accuracy (the run's whole test split), top-1 agreement with the fp32 PyTorch model and the
number of operators that run in int8. Latency: the fp32 ONNX model and every int8 variant are
timed here again, interleaved (each repeat times every variant once, in a rotating order) at
batch 1 and batch 32 on --threads ONNX Runtime threads, median of --repeats; so a burst of load
from other work on this shared machine hits all of them alike. Ratios within one run are what
count; the load average is printed at the start and the end. The engine's own sequential
figures (export_run's, 5 repeats) are kept in --json as `export_latency_ms`.

A ratio over 1 + NOISE is flagged SLOWER: int8 is often slower on a CPU for small models,
where quantize/dequantize steps and int8 kernel overheads cost more than the arithmetic saves.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

DEMOS = ("demo-imu", "demo-audio")
SOURCES = ("hapt", "fsdd")
# epochs per preset on the bundled sample: enough to learn something, few enough for minutes in all
DEFAULT_EPOCHS = {"hapt_resnet1d": 15, "hapt_har_transformer": 12, "hapt_all12_se_convnext": 20,
                  "fsdd_audio_resnet_attention": 30, "fsdd_resnet1d_mfcc": 30}
EXPORT_REPEATS = 5  # export_run's own sequential timing (kept in --json only; the table's is interleaved here)
FALLBACK_EPOCHS = 5
BATCHES = (1, 32)
NOISE = 0.05  # a latency ratio within 1 +- NOISE is reported as "same"
RUN_PREFIX = "qbench"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- results
@dataclass
class Int8Row:
    """One int8 variant against the fp32 ONNX model of the same run."""

    variant: str  # int8-dynamic, int8-static, int8-qat
    size_bytes: int
    size_ratio: float  # int8 / fp32 ONNX file size
    latency_ms: dict[str, float]  # batch -> median ms (interleaved timing)
    latency_ratio: dict[str, float]  # batch -> int8 / fp32 ONNX (medians)
    fastest_ms: dict[str, float]  # batch -> fastest call (contention only adds time: a check on the medians)
    fastest_ratio: dict[str, float]
    accuracy: float
    accuracy_change_pts: float  # (int8 - fp32 ONNX) accuracy, in percentage points
    macro_f1: float
    agreement: float  # top-1 agreement with the fp32 PyTorch model on the test split
    int8_ops: int  # operators that run in int8
    int8_op_kinds: dict[str, int]
    fp32_compute_ops: dict[str, int]  # compute operators left in fp32
    slower_at: list[str]  # batches where int8 is slower than fp32 beyond NOISE
    export_latency_ms: dict[str, float]  # export_run's own (sequential) figures
    notes: list[str] = field(default_factory=list)


@dataclass
class ModelResult:
    key: str  # preset name or demo name
    source: str  # "preset" or "demo"
    model: str  # zoo model name
    data: str  # data source
    epochs: int | None  # epochs trained (None: the demo's own)
    train_seconds: float | None
    run_id: str | None
    reused: bool = False  # the run was found in --runs-dir, not trained now
    input_shape: list[int] = field(default_factory=list)
    n_test: int = 0
    fp32: dict = field(default_factory=dict)  # fp32 ONNX: size_bytes, latency_ms, accuracy, macro_f1
    int8: list[Int8Row] = field(default_factory=list)
    time_axis: str = ""
    qat: dict | None = None  # with --qat: epochs, seconds, per-epoch train loss and fake-quant val accuracy
    error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- which models
@dataclass
class Subject:
    key: str
    source: str  # "preset" or "demo"
    model: str
    data: str
    epochs: int | None = None


def subjects(only: list[str] | None, epochs: int | None) -> list[Subject]:
    """Every shipped HAPT/FSDD preset (not one that only extends another) and the demos."""
    from core.demo import demo_configs
    from core.presets import list_presets

    found = [Subject(p.name, "preset", p.config.model.name, p.config.data.source,
                     epochs or DEFAULT_EPOCHS.get(p.name, FALLBACK_EPOCHS))
             for p in list_presets()
             if not p.saved and p.extends is None and p.config.data.source in SOURCES]
    configs = demo_configs()
    found += [Subject(name, "demo", configs[name].model.name, configs[name].data.source) for name in DEMOS]
    if only:
        known = {s.key: s for s in found}
        unknown = [k for k in only if k not in known]
        if unknown:
            raise SystemExit(f"error: --only {','.join(unknown)}: not one of {', '.join(known)}")
        found = [known[k] for k in only]
    return found


# ---------------------------------------------------------------- runs
def train_preset(subject: Subject, store) -> tuple[str, float | None]:
    """A completed run of the preset at these epochs: reused from the store, else trained now
    with `python -m core train` (run id, training wall seconds or None when reused)."""
    name = f"{RUN_PREFIX}-{subject.key}-{subject.epochs}ep"
    for run in store.list_runs("completed"):
        if run["name"] == name and (Path(run["run_dir"] or "") / "checkpoints").is_dir():
            log(f"  reusing run {run['id']} ({name})")
            return run["id"], None
    cmd = [sys.executable, "-m", "core", "train", "--preset", subject.key, "--set", f"train.epochs={subject.epochs}",
           "--name", name, "--json"]
    log(f"  training: {' '.join(cmd[1:])}")
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    seconds = time.perf_counter() - start
    text = done.stdout
    try:
        result = json.loads(text[text.index("\n{") + 1:] if not text.startswith("{") else text)
    except ValueError:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"training {subject.key} failed (exit {done.returncode}): {tail}") from None
    if result.get("status") != "completed":
        raise RuntimeError(f"training {subject.key} ended {result.get('status')}: {result.get('message')}")
    test = (result.get("test_metrics") or {}).get("test_accuracy")
    log(f"  trained {result['run_id']} in {seconds:.0f} s ({subject.epochs} epochs, test accuracy "
        f"{'-' if test is None else f'{test:.3f}'})")
    return result["run_id"], seconds


def demo_run_id(name: str, store) -> str:
    from core.demo import demo_run, install_bundled

    found = demo_run(store, name)
    run_id = found["id"] if found else install_bundled(store, name)
    if run_id is None:
        raise RuntimeError(f"{name}: no bundled demo weights in data/demo-models (run `python -m core demo-models`)")
    return run_id


# ---------------------------------------------------------------- timing
def interleaved_latency(paths: dict[str, Path], x, threads: int, repeats: int,
                        warmup: int) -> tuple[dict[str, dict], dict[str, dict]]:
    """({variant: {batch: median ms}}, {variant: {batch: fastest ms}}): every variant timed once
    per repeat, in a rotating order."""
    import statistics

    from core.deploy.measure import OrtRunner, batch_of

    runners = {name: OrtRunner(path, threads) for name, path in paths.items()}
    names = list(runners)
    out: dict[str, dict] = {name: {} for name in names}
    fastest: dict[str, dict] = {name: {} for name in names}
    for batch in BATCHES:
        xb = batch_of(x, batch)
        for name in names:
            for _ in range(warmup):
                runners[name](xb)
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                start = time.perf_counter()
                runners[name](xb)
                times[name].append(time.perf_counter() - start)
        for name in names:
            out[name][str(batch)] = statistics.median(times[name]) * 1e3
            fastest[name][str(batch)] = min(times[name]) * 1e3
    return out, fastest


# ---------------------------------------------------------------- one model
def measure_subject(subject: Subject, store, args, scratch: Path) -> ModelResult:
    from core.deploy.export import export_run, resolve_predictor, run_windows
    from core.deploy.measure import MeasureSettings

    result = ModelResult(subject.key, subject.source, subject.model, subject.data, subject.epochs, None, None)
    if subject.source == "demo":
        result.run_id = demo_run_id(subject.key, store)
        result.epochs = None
    else:
        result.run_id, result.train_seconds = train_preset(subject, store)
        result.reused = result.train_seconds is None
    predictor = resolve_predictor(result.run_id, store)
    modes = ["dynamic", "static"] + (["qat"] if args.qat else [])
    log(f"  exporting with {', '.join(modes)} int8")
    settings = MeasureSettings(threads=args.threads, repeats=min(EXPORT_REPEATS, args.repeats), warmup=1,
                               memory=False)
    report = export_run(predictor, formats=["onnx"], quantize=modes, qat_epochs=args.qat_epochs, settings=settings,
                        store=store, out=scratch / subject.key)
    data = run_windows(predictor)
    result.input_shape = list(report.input_shape)
    result.n_test = int(len(data.test_y))
    axis = report.export.time_axis
    result.time_axis = "dynamic" if axis.dynamic else f"fixed at {axis.length}"

    fp32 = report.variant("fp32-onnx")
    int8 = [v for v in report.variants if v.name.startswith("int8-")]
    log(f"  timing fp32-onnx and {len(int8)} int8 variants, interleaved ({args.repeats} repeats, "
        f"{args.threads} thread{'s' if args.threads > 1 else ''})")
    paths = {v.name: Path(report.folder) / v.file for v in [fp32, *int8]}
    latency, fastest = interleaved_latency(paths, data.test_x, args.threads, args.repeats, args.warmup)
    result.fp32 = {"size_bytes": fp32.size_bytes, "latency_ms": latency["fp32-onnx"],
                   "fastest_ms": fastest["fp32-onnx"], "accuracy": fp32.accuracy,
                   "macro_f1": fp32.macro_f1, "agreement": fp32.agreement, "export_latency_ms": fp32.latency_ms,
                   "reference_accuracy": report.reference.get("accuracy")}
    if report.qat:
        history = report.qat.get("history") or []
        result.qat = {"epochs": report.qat.get("epochs"), "seconds": sum(h.get("seconds", 0.0) for h in history),
                      "history": history}
    for v in int8:
        ops = v.quantized_ops or {}
        ratio = {b: latency[v.name][b] / latency["fp32-onnx"][b] for b in latency[v.name]}
        result.int8.append(Int8Row(
            variant=v.name, size_bytes=v.size_bytes, size_ratio=v.size_bytes / fp32.size_bytes,
            latency_ms=latency[v.name], latency_ratio=ratio, fastest_ms=fastest[v.name],
            fastest_ratio={b: fastest[v.name][b] / fastest["fp32-onnx"][b] for b in fastest[v.name]},
            accuracy=v.accuracy,
            accuracy_change_pts=100.0 * (v.accuracy - fp32.accuracy), macro_f1=v.macro_f1, agreement=v.agreement,
            int8_ops=int(sum(ops.get("quantized", {}).values())), int8_op_kinds=dict(ops.get("quantized", {})),
            fp32_compute_ops=dict(ops.get("float_compute", {})),
            slower_at=[f"b{b}" for b, r in ratio.items() if r > 1 + NOISE],
            export_latency_ms=v.latency_ms, notes=[n for n in v.notes if "SLOWER" not in n]))
    shutil.rmtree(scratch / subject.key, ignore_errors=True)
    return result


# ---------------------------------------------------------------- printing
def _mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _verdict(ratio: dict[str, float]) -> str:
    words = []
    for b, r in ratio.items():
        words.append(f"SLOWER b{b}" if r > 1 + NOISE else f"faster b{b}" if r < 1 - NOISE else f"same b{b}")
    return ", ".join(words)


def _epochs(r: ModelResult) -> str:
    return "demo" if r.source == "demo" else f"{r.epochs} ep"


def print_model(r: ModelResult) -> None:
    head = f"{r.key}: {r.model} on {r.data} ({_epochs(r)}"
    if r.train_seconds is not None:
        head += f", trained in {r.train_seconds:.0f} s"
    elif r.reused:
        head += f", reused run {r.run_id}"
    print(head + (f"; input {tuple(r.input_shape)}, {r.n_test} test examples, time axis {r.time_axis})"
                  if not r.error else ")"))
    if r.error:
        print(f"  ERROR: {r.error}")
        return
    f = r.fp32
    print(f"  fp32 ONNX     {_mib(f['size_bytes']):>10}   b1 {f['latency_ms']['1']:8.3f} ms   "
          f"b32 {f['latency_ms']['32']:8.2f} ms   accuracy {f['accuracy']:.4f}")
    print(f"  {'variant':<13} {'size x':>7} {'b1 x':>6} {'b32 x':>6} {'acc pts':>8} {'agree':>6} {'int8 ops':>8}  "
          "b1 ms / b32 ms, verdict [fastest-call ratios b1 / b32]")
    for row in r.int8:
        print(f"  {row.variant:<13} {row.size_ratio:7.2f} {row.latency_ratio['1']:6.2f} {row.latency_ratio['32']:6.2f} "
              f"{row.accuracy_change_pts:+8.1f} {row.agreement:6.3f} {row.int8_ops:8d}  "
              f"{row.latency_ms['1']:.3f} / {row.latency_ms['32']:.2f}, {_verdict(row.latency_ratio)} "
              f"[{row.fastest_ratio['1']:.2f} / {row.fastest_ratio['32']:.2f}]")
    if r.qat:
        accs = [h.get("val_accuracy") for h in r.qat["history"]]
        print(f"  QAT: {r.qat['epochs']} fine-tuning epoch(s) in {r.qat['seconds']:.0f} s; validation accuracy with "
              f"fake quant by epoch: {', '.join('-' if a is None else f'{a:.3f}' for a in accs)}")
    print()


def markdown_table(results: list[ModelResult]) -> str:
    lines = ["| Model (run) | Variant | Size | Size x | b1 ms | b1 x | b32 ms | b32 x | Accuracy | Δ pts | "
             "Agreement | int8 ops | Slower? |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        name = f"{r.key} ({r.model}, {_epochs(r)})"
        if r.error:
            lines.append(f"| {name} | error: {r.error} | | | | | | | | | | | |")
            continue
        f = r.fp32
        lines.append(f"| {name} | fp32 ONNX | {_mib(f['size_bytes'])} | 1 | {f['latency_ms']['1']:.3f} | 1 | "
                     f"{f['latency_ms']['32']:.2f} | 1 | {f['accuracy']:.3f} | | | | |")
        for row in r.int8:
            slower = ", ".join(row.slower_at) if row.slower_at else "no"
            lines.append(f"| | {row.variant} | {_mib(row.size_bytes)} | {row.size_ratio:.2f} | "
                         f"{row.latency_ms['1']:.3f} | {row.latency_ratio['1']:.2f} | {row.latency_ms['32']:.2f} | "
                         f"{row.latency_ratio['32']:.2f} | {row.accuracy:.3f} | {row.accuracy_change_pts:+.1f} | "
                         f"{row.agreement:.3f} | {row.int8_ops} | {slower} |")
    return "\n".join(lines)


def machine() -> dict:
    import onnxruntime
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


# ---------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated preset and/or demo names (default: every HAPT/FSDD preset "
                   "and demo-imu, demo-audio)")
    p.add_argument("--epochs", type=int, help="train.epochs for every preset (default: DEFAULT_EPOCHS per preset)")
    p.add_argument("--repeats", type=int, default=30, help="timed calls per variant and batch (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per variant and batch first (default 3)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime (and torch) threads while measuring (1)")
    p.add_argument("--qat", action="store_true", help="add the QAT int8 variant (fine-tunes each run first)")
    p.add_argument("--qat-epochs", type=int, default=3, help="fine-tuning epochs for --qat (3)")
    p.add_argument("--runs-dir", type=Path, help="a runs folder to train into and reuse runs from (default: a "
                   "temporary one, deleted at the end)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (the text goes to stderr)")
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        p.error("--epochs must be >= 1")
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1 or args.qat_epochs < 1:
        p.error("give --repeats >= 1, --warmup >= 0, --threads >= 1, --qat-epochs >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    temporary = args.runs_dir is None
    runs = Path(tempfile.mkdtemp(prefix="sigscope-qbench-")) if temporary else args.runs_dir.resolve()
    runs.mkdir(parents=True, exist_ok=True)
    os.environ["SIGSCOPE_RUNS_DIR"] = str(runs)  # the store here and the training subprocesses
    scratch = runs / "qbench-export"
    try:
        return run_bench(args, runs, scratch)
    finally:
        shutil.rmtree(runs if temporary else scratch, ignore_errors=True)


def run_bench(args: argparse.Namespace, runs: Path, scratch: Path) -> int:
    import torch

    from core.store import Store

    chosen = subjects([k.strip() for k in args.only.split(",") if k.strip()] if args.only else None, args.epochs)
    torch.set_num_threads(args.threads)
    out = sys.stderr if args.json else sys.stdout
    load_start = os.getloadavg()
    info = machine()
    started = time.perf_counter()
    print(f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, onnxruntime {info['onnxruntime']}; "
          f"{args.threads} thread(s), {args.repeats} repeats; load average at start "
          f"{' '.join(f'{x:.2f}' for x in load_start)}; runs folder {runs}", file=out, flush=True)
    store = Store()
    results: list[ModelResult] = []
    try:
        for i, subject in enumerate(chosen, 1):
            log(f"[{i}/{len(chosen)}] {subject.key} ({subject.model} on {subject.data}, "
                f"{f'{subject.epochs} epochs' if subject.source == 'preset' else 'committed demo weights'})")
            try:
                result = measure_subject(subject, store, args, scratch)
            except Exception as e:  # noqa: BLE001 - one model's failure is reported, the others still run
                result = ModelResult(subject.key, subject.source, subject.model, subject.data, subject.epochs, None,
                                     None, error=f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
            results.append(result)
            with contextlib.redirect_stdout(out):
                print_model(result)
    finally:
        store.close()
    load_end = os.getloadavg()
    minutes = (time.perf_counter() - started) / 60
    with contextlib.redirect_stdout(out):
        print(markdown_table(results))
        print(f"\nlatency: median of {args.repeats} interleaved single-call timings after {args.warmup} warm-up "
              f"calls, ONNX Runtime CPU, {args.threads} thread(s); x = int8 / fp32 ONNX of the same run; Δ pts = "
              f"int8 - fp32 ONNX test accuracy; agreement = top-1 agreement with fp32 PyTorch; "
              f"SLOWER beyond +{NOISE:.0%}")
        print(f"load average at end {' '.join(f'{x:.2f}' for x in load_end)}; {minutes:.1f} min in all")
    if args.json:
        print(json.dumps({"machine": info, "settings": {k: (str(v) if isinstance(v, Path) else v)
                                                         for k, v in vars(args).items()},
                          "load_average": {"start": load_start, "end": load_end}, "minutes": minutes,
                          "noise": NOISE, "results": [r.to_dict() for r in results]}, indent=2))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
