"""`python -m core profile MODEL`: parameters, FLOPs, training memory and latency of a zoo
model before training it.

    python -m core profile resnet1d                      # the analytical card, in about 2 s
    python -m core profile har_transformer --set depth=4 --set heads=4 --batch 64 --json
    python -m core profile audio_resnet_attention --shape 4,40,126 --amp bf16 --checkpointing
    python -m core profile tcn_dilated --measure         # also time real forwards at the batch
    python -m core profile imu_conformer --cross-check   # also count the FLOPs with fvcore
    python -m core profile mobilenet1d --operator-latency   # latency from per-operator-class rates

By default it prints the analytical card: parameters, FLOPs (FlopCounterMode), the training
memory estimate, the latency estimate and the per-layer table. `--measure` adds the measured
latency (13 real forwards at the batch: seconds for a large model or batch) and `--cross-check`
fvcore's count of the same forward (a TorchScript trace; fvcore is imported only then).
`--operator-latency` adds core.profiling.op_latency's estimate: every operator of the forward
priced by this machine's rate for its class and shape (measured once per machine and cached).
"""
from __future__ import annotations

import argparse

from core.commands import emit
from core.config import parse_sets
from core.errors import ConfigError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("profile", help="parameters, FLOPs, training memory and latency of a model")
    parser.add_argument("model", help="zoo model name (see `python -m core models`)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a hyperparameter, e.g. --set width=64 (repeatable)")
    parser.add_argument("--shape", default=None, metavar="C,T | C,F,T",
                        help="input shape without the batch (default: the model's default input)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--classes", type=int, default=6, help="number of classes (default 6)")
    parser.add_argument("--optimizer", default="adamw",
                        help="optimizer whose state is counted (optim.name's choices; default adamw)")
    parser.add_argument("--amp", default="off", help="mixed precision (train.amp's choices; default off)")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--measure", action="store_true",
                        help="also time real forwards at the batch (measured latency; off by default: slower)")
    parser.add_argument("--operator-latency", action="store_true",
                        help="also estimate latency from this machine's per-operator-class rates (CPU, amp off; "
                             "the first time on a machine it times the operator shapes it needs: seconds)")
    parser.add_argument("--cross-check", action="store_true",
                        help="also count the FLOPs with fvcore and compare (off by default: slower)")
    # the defaults before the card became analytical-only: still accepted, they change nothing
    parser.add_argument("--no-measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-cross-check", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """"6,128" -> (6, 128); one clear error otherwise."""
    if text is None:
        return None
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"--shape {text!r}: give whole numbers separated by commas, e.g. 6,128 or 4,40,126") from None
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"--shape {text!r}: every size must be a positive whole number, e.g. 6,128")
    return shape


def _mb(n: int | float) -> str:
    return f"{n / 2**20:,.2f} MiB"


def _count(n: int | float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return str(int(n))


def report_text(d: dict) -> str:
    mem, lat = d["memory"], d["latency_ms"]
    measured = f"measured {lat['measured']:.2f} ms" if lat["measured"] is not None else "not measured (add --measure)"
    lines = [
        f"{d['model']}  input {tuple(d['input_shape'])}  batch {d['batch_size']}  "
        f"optimizer {d['optimizer']}  amp {d['amp']}  checkpointing {'on' if d['grad_checkpointing'] else 'off'}",
        f"params      {d['params']['total']:,} ({d['params']['trainable']:,} trainable)",
        f"FLOPs       {_count(d['flops'])}FLOPs  = {_count(d['macs'])}MACs per forward at the batch  "
        f"[{d['flops_convention']}]",
        f"memory      total {_mb(mem['total'])} = weights {_mb(mem['weights'])} + grads {_mb(mem['grads'])}"
        f" + optimizer {_mb(mem['optimizer'])} + activations {_mb(mem['activations'])}"
        f" ({_mb(mem['activations_per_example'])} per example)",
        f"latency     estimated {lat['estimated']:.2f} ms "
        f"(machine {lat['machine_flops_per_s'] / 1e9:.1f} GFLOP/s x efficiency {lat['efficiency']}), {measured}",
    ]
    by_operator = lat.get("by_operator")
    if by_operator:
        parts = ", ".join(f"{kind} {ms:.2f}" for kind, ms in sorted(by_operator["by_class"].items(), key=lambda kv: -kv[1])
                          if ms >= 0.005)
        calibrated = (f"; timed the operator shapes it lacked in {by_operator['calibration_s']:.1f} s"
                      if by_operator["calibration_s"] else "")
        lines.append(f"            by operator class {by_operator['total_ms']:.2f} ms ({parts}; "
                     f"{by_operator['operators']} operators{calibrated})")
    cc = d.get("cross_check") or {}
    if cc:
        if cc.get("error"):
            lines.append(f"cross-check fvcore failed: {cc['error']}")
        else:
            verdict = "agree" if cc["agree"] else f"differ by {cc['relative_difference']:.1%}"
            lines.append(f"cross-check fvcore {_count(cc['fvcore_flops'])}FLOPs vs FlopCounterMode "
                         f"{_count(cc['flop_counter_flops'])}FLOPs: {verdict}")
            for diff in cc.get("differences", [])[:10]:
                lines.append(f"    {diff['module']}: fvcore {_count(diff['fvcore'])} vs FlopCounterMode {_count(diff['flop_counter'])}")
    lines.append("")
    lines.append(f"{'layer':44s} {'type':22s} {'output':>18s} {'params':>10s} {'FLOPs':>10s} {'share':>6s}")
    for row in d["layers"]:
        shape = "x".join(str(s) for s in row["output_shape"]) if row["output_shape"] else "-"
        name = "  " * (row["depth"] - 1) + row["name"].rsplit(".", 1)[-1]
        lines.append(f"{name[:44]:44s} {row['type'][:22]:22s} {shape:>18s} {row['params']:>10,} "
                     f"{_count(row['flops']):>10s} {row['share']:>6.1%}")
    skipped = [u for u in d["unsupported_ops"] if u["counter"] == "flop_counter"]
    if skipped:
        lines.append("")
        lines.append("not counted as FLOPs (element-wise/reduction/pooling): " +
                     ", ".join(f"{u['op']} x{u['calls']}" for u in skipped))
    return "\n".join(lines)


def run(args) -> int:
    from core import spec
    from core.coldstart import dynamo_deferred
    from core.profile import profile_model
    optimizer = spec.lookup("optim.name").coerce(args.optimizer, "--optimizer")
    amp = spec.lookup("train.amp").coerce(args.amp, "--amp")
    with dynamo_deferred():  # a profile never compiles: no 1.2 s import of torch._dynamo (core.coldstart)
        report = profile_model(args.model, parse_sets(args.set), input_shape=parse_shape(args.shape),
                               num_classes=args.classes, batch_size=args.batch, optimizer=optimizer,
                               amp=amp, grad_checkpointing=args.checkpointing,
                               measure_latency=args.measure and not args.no_measure, device=args.device,
                               cross_check=args.cross_check and not args.no_cross_check,
                               operator_latency=args.operator_latency)
    d = report.to_dict()
    emit(d, args.json, report_text(d))
    return 0
