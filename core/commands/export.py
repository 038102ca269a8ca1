"""`python -m core export`: a finished run as ONNX / torch.export artifacts and int8 variants,
parity-checked against PyTorch and measured.

    python -m core export --run demo-imu
    python -m core export --run RUN_ID --quantize dynamic,static --calibration 256 --json
    python -m core export --run RUN_ID --format torch              # PyTorch artifact only
    python -m core export --run RUN_ID --quantize static --bundle imu.zip

Writes runs/<id>/deploy/ (model.onnx, model.pt2, model.int8-<mode>.onnx, report.json), all at
once: a refused export (an ONNX model that disagrees with PyTorch beyond tolerance, an
operator ONNX cannot express) leaves nothing behind. Conv + BatchNorm pairs are folded first.
Each variant is reported with its file size, latency at batch 1 and 32 (median, on --threads
threads for both torch and ONNX Runtime), peak memory at batch 1, test accuracy and macro-F1,
top-1 agreement with the fp32 PyTorch model, which operators run in int8, and an estimate
for a phone core, a Raspberry Pi 4 core and a Cortex-M7 (core/deploy/targets.json).
--format and --quantize may be repeated or given as comma lists.
"""
from __future__ import annotations

import argparse
import sys

from core.commands import emit
from core.deploy.quantize import DEFAULT_CALIBRATION, ExportFormat, QuantMode


def _choices(enum) -> str:
    return "|".join(m.value for m in enum)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a run to ONNX / torch.export with int8 variants, measured",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run id or run name (see `python -m core runs list`)")
    p.add_argument("--format", action="append", metavar=_choices(ExportFormat),
                   help=f"artifact(s) to write: {', '.join(m.value for m in ExportFormat)} (default: all)")
    p.add_argument("--quantize", action="append", metavar=_choices(QuantMode),
                   help="int8 variant(s) to add (ONNX Runtime): " + ", ".join(m.value for m in QuantMode)
                        + " (default none)")
    p.add_argument("--calibration", type=int, default=None,
                   help=f"training windows to calibrate static/QAT int8 on (default min({DEFAULT_CALIBRATION}, "
                        "the training split))")
    p.add_argument("--bundle", default=None, metavar="OUT.zip", help="also write the standalone bundle zip")
    p.add_argument("--qat-epochs", type=int, default=3, help="fine-tuning epochs for --quantize qat (3)")
    p.add_argument("--threads", type=int, default=1, help="threads for torch and ONNX Runtime while measuring (1)")
    p.add_argument("--repeats", type=int, default=20, help="timed repeats per latency figure (20)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocess measurements")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--json", action="store_true", help="print the whole report (each variant's figures) as JSON")
    p.set_defaults(func=run)


def _progress(fraction: float, text: str) -> None:
    print(f"[{100 * fraction:3.0f}%] {text}", file=sys.stderr, flush=True)


def _mib(n) -> str:
    return "-" if n is None else f"{n / 2 ** 20:.2f} MiB"


def text_report(d: dict) -> str:
    ex = d["export"]
    axis = ex["time_axis"]
    lines = [f"run {d['run_id']} ({d['model']}) exported to {d['folder']}",
             f"input {['batch', *d['input_shape']]}; time axis "
             + (f"dynamic ({axis['low']}..{axis['high']})" if axis["dynamic"]
                else f"fixed at {axis['length']}: {axis['reason']}"),
             f"Conv+BN folded: {len(ex['fold']['folded'])} pair(s), max |diff| {ex['fold']['max_abs_diff']:.2e}"
             + (f"; not folded: {'; '.join(ex['fold']['skipped'])}" if ex["fold"]["skipped"] else "")]
    for p in ex["parity"]:
        lines.append(f"parity {p['artifact']}: max |logit diff| {p['max_abs_diff']:.2e} "
                     f"(tolerance {p['tolerance']:.1e}), "
                     f"top-1 agreement {p['top1_agreement']:.4f}, lengths {sorted({c['length'] for c in p['checks']})}")
    lines.append(f"reference (eager PyTorch): accuracy {d['reference']['accuracy']:.4f}, "
                 f"macro-F1 {d['reference']['macro_f1']:.4f}; {d['flops'] / 1e6:.2f} MFLOPs at batch 1")
    lines.append(f"{'variant':<14}{'size':>12}{'b1 ms':>9}{'b32 ms':>9}{'peak mem':>12}{'acc':>8}{'F1':>8}{'agree':>8}")
    for v in d["variants"]:
        ms = v["latency_ms"]
        lines.append(f"{v['name']:<14}{_mib(v['size_bytes']):>12}{ms['1']:>9.3f}{ms['32']:>9.2f}"
                     f"{_mib(v['peak_memory_bytes']):>12}{v['accuracy']:>8.4f}{v['macro_f1']:>8.4f}"
                     f"{v['agreement']:>8.4f}")
    for v in d["variants"]:
        dev = v["device"]
        est = ", ".join(f"{t['target']} {t['latency_ms']:.2f} ms" + (" (does not fit)" if t["fits_ram"] is False
                                                                     or t["fits_flash"] is False else "")
                        for t in dev["targets"])
        lines.append(f"{v['name']}: flash {_mib(dev['flash_bytes'])}, RAM {_mib(dev['ram_bytes'])}; est. {est}; "
                     f"here est. {dev['estimated_here_ms']:.2f} ms vs measured {dev['measured_here_ms']:.3f} ms")
        lines += [f"{v['name']}: note: {n}" for n in v["notes"]]
    lines += [f"note: {n}" for n in d["notes"]]
    if d.get("bundle"):
        lines.append(f"bundle: {d['bundle']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from core.commands.predict import resolve_run
    from core.deploy.export import export_run
    from core.deploy.measure import MeasureSettings
    from core.store import Store

    store = Store()
    run_id = resolve_run(store, args.run)
    settings = MeasureSettings(threads=args.threads, repeats=args.repeats, memory=not args.no_memory)
    report = export_run(run_id, formats=args.format, quantize=args.quantize, calibration=args.calibration,
                        bundle=args.bundle, qat_epochs=args.qat_epochs, settings=settings, store=store,
                        which=args.checkpoint, progress=_progress)
    d = report.to_dict()
    emit(d, args.json, text_report(d))
    return 0
