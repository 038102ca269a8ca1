"""`python -m core predict`: classify recordings with a trained run.

    python -m core predict --run RUN_ID a.wav b.flac walk.csv --top-k 3 --json
    python -m core predict --run demo-audio clip.wav --hop 0.25 --aggregate vote
    python -m core predict --run RUN_A --run RUN_B --run RUN_C clip.wav   # an ensemble of the three
    python -m core predict --run demo-imu --variant int8-dynamic walk.csv   # an exported variant answers

--run takes a run id or a run name (the newest completed run of that name, e.g. the demo
models `demo-audio` / `demo-imu`, installed from their committed weights on first use).
Several --run make an ensemble: the mean of their probabilities (runs of the same classes, signal and window;
their features and models may differ), with each member's own answer under `members`.

--variant NAME classifies with one of the run's exported variants (`python -m core export`
writes them to runs/<id>/deploy/: fp32-onnx, int8-dynamic, int8-static, int8-qat) through ONNX
Runtime, with the run's own reading, windowing and normalization; `pytorch` (the default) is
the run's checkpoint. Explanations need the PyTorch model, so a variant answers without them.

--adapt-bn first re-estimates the model's BatchNorm statistics on every window of the given
files (test-time adaptation to a new speaker, wearer or device; no labels are used), then
classifies them: give ten or more recordings of the one new speaker or device. On FSDD
speakers held out of training it took accuracy from 0.84 to 0.94 (docs/RESULTS.md).

Prints one object per file: file, label, probabilities, top_k, confidence, entropy,
margin, windows (start/end seconds, label, p[, true label from the CSV]), notes, warnings
(e.g. a constant signal that holds no information: also printed under the file's line in
text), and attention (per layer: heads, shape, rollout over time) or saliency (Grad-CAM, input gradient) — or
`error` with one line when that file cannot be read. One bad file does not stop the
others; the exit code is 1 when any file failed.
"""
from __future__ import annotations

import argparse
import sys

from core.commands import emit
from core.errors import ConfigError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("predict", help="classify audio files or IMU CSVs with a trained run",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, action="append",
                   help="run id or run name (see `python -m core runs list`); repeat it for an ensemble")
    p.add_argument("files", nargs="+", metavar="FILE", help="WAV/FLAC/OGG/MP3 recordings or IMU CSV(.gz) files")
    p.add_argument("--top-k", type=int, default=3, help="classes listed per file (3)")
    p.add_argument("--hop", type=float, default=None,
                   help="seconds between window starts (default: half the clip for audio, the run's stride for IMU)")
    p.add_argument("--aggregate", choices=["mean", "vote"], default="mean",
                   help="combine windows by mean log-probability (default) or majority vote")
    p.add_argument("--explain", choices=["auto", "attention", "saliency", "all", "none"], default="auto",
                   help="attention for attention models, Grad-CAM + saliency otherwise (auto)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--variant", default="pytorch", metavar="NAME",
                   help="an exported variant of the run to classify with (a name from its deploy/report.json, e.g. "
                        "fp32-onnx, int8-dynamic); default: pytorch, the run's own model")
    p.add_argument("--adapt-bn", action="store_true",
                   help="adapt the model's BatchNorm statistics to these files first (one new speaker/device)")
    p.add_argument("--json", action="store_true", help="print JSON (a list, one object per file)")
    p.set_defaults(func=run)


def resolve_run(store, ref: str) -> str:
    """A run id, or the newest completed run named `ref`."""
    if store.get_run(ref) is not None:
        return ref
    named = [r for r in store.list_runs("completed") if r["name"] == ref]
    if named:
        return named[0]["id"]
    from core.demo import DEMO_NAMES, install_bundled

    if ref in DEMO_NAMES:  # a demo model is there on first use: its committed weights, installed
        installed = install_bundled(store, ref)
        if installed:
            return installed
    raise ConfigError(f"--run {ref!r}: no run with that id or name in {store.path}; see `python -m core runs list`"
                      + (" (or make the demo models with `python -m core demo-models`)" if ref.startswith("demo") else ""))


def load_runs(store, refs: list[str], which: str = "best"):
    """One --run: its Predictor; several: an Ensemble of them."""
    from core.infer import load_ensemble, load_run

    ids = [resolve_run(store, ref) for ref in refs]
    return load_run(ids[0], store, which=which) if len(ids) == 1 else load_ensemble(ids, store, which=which)


def _classify(args: argparse.Namespace) -> list[dict]:
    """Load the run(s) (a variant, adapted BatchNorm) and classify args.files: one dict per file."""
    from core.infer import adapt_to_files, classify_files
    from core.infer.variants import PYTORCH, load_variant
    from core.store import Store

    store = Store()
    predictor = load_runs(store, args.run, args.checkpoint)
    if args.variant != PYTORCH:
        if len(args.run) > 1:
            raise ConfigError(f"--variant {args.variant} picks an exported variant of one run; give one --run, or drop "
                              "--variant to ensemble the runs' PyTorch models")
        if args.adapt_bn:
            raise ConfigError(f"--adapt-bn re-estimates the PyTorch model's BatchNorm statistics and cannot change the "
                              f"exported variant {args.variant}; drop --variant or --adapt-bn")
        predictor = load_variant(predictor, args.variant)
    if args.adapt_bn:
        adapted = adapt_to_files(predictor, args.files, hop=args.hop)
        predictor = adapted.model
        print(f"adapted BatchNorm statistics to {adapted.windows} windows of {adapted.files} file(s)"
              + (f"; left out: {'; '.join(adapted.skipped)}" if adapted.skipped else ""), file=sys.stderr)
    return classify_files(predictor, args.files, top_k=args.top_k, hop=args.hop, aggregate=args.aggregate,
                          explain=args.explain)


def run(args: argparse.Namespace) -> int:
    from core.coldstart import dynamo_deferred

    if args.top_k < 1:
        raise ConfigError(f"--top-k {args.top_k}: list at least one class")
    from core.threads import compute_threads, inference_threads

    # the cores that running runs and other processes leave (on a busy 2-core machine a 30 s clip
    # took 2,016 ms on 2 threads and 399 ms on 1: OpenMP barriers wait for unscheduled threads)
    with dynamo_deferred(), compute_threads(inference_threads(), purpose="predict"):
        results = _classify(args)  # classifying never compiles: no 1.2 s import of torch._dynamo (core.coldstart)
    lines = []
    for r in results:
        if "error" in r:
            message = r["error"]  # most messages start with the file's name already: say it once
            if message.startswith(f"{r['file']}:"):
                message = message[len(r["file"]) + 1:].strip()
            lines.append(f"{r['file']}: error: {message}")
            continue
        top = ", ".join(f"{t['label']} {t['p']:.3f}" for t in r["top_k"])
        line = f"{r['file']}: {r['label']} (p={r['confidence']:.3f}, margin {r['margin']:.3f}; {top}; "
        line += f"{len(r['windows'])} window(s) over {r['duration']:.2f} s)"
        if r.get("variant"):
            line += f"; answered by {r['variant']}"
        if r.get("members"):
            line += "; members: " + ", ".join(f"{m['label']} {m['confidence']:.3f}" for m in r["members"])
        if "window_accuracy" in r:
            line += f"; agrees with the file's labels on {100 * r['window_accuracy']:.1f}% of windows"
        lines.append(line)
        lines += [f"{r['file']}: warning: {w}" for w in r.get("warnings", [])]
        lines += [f"{r['file']}: note: {n}" for n in r.get("notes", [])]
    emit(results, args.json, "\n".join(lines))
    return 1 if any("error" in r for r in results) else 0
