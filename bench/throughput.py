"""Training throughput on CPU: time per step of Sigscope's Trainer against a bare loop, and MFU.

Per zoo model, at a HAPT-like input (6 channels x 128 samples, 6 classes), batch 64, one torch
thread, on fixed random batches:

    (a) bare:    a hand-written loop: model, AdamW (the same implementation flags Sigscope's
                 optimizer registry uses), cross-entropy, backward, clipping as the config does, step;
    (b) trainer: Sigscope's Trainer on the same data with probes on (recorder in memory, no store).

Measured in CPU time (user and system separately, from getrusage) and minor page faults, per
step, so the numbers hold on a busy machine; (a) and (b) are interleaved round by round and the
medians are printed. Trainer steps are told apart by which probes ran (plain / probe / probe +
histogram); the bench runs the probes often (--sample-every) to see enough of each and amortizes
them to a real run's cadence (--run-steps, the Trainer's own cadence rule), so
ratio_amortized = trainer per step at that cadence / bare per step. achieved GFLOP/s = training
FLOPs of a step (forward + backward, FlopCounterMode with core.profiling.flops' formulas) / the
bare loop's CPU seconds per step; MFU divides it by the fp32 peak Sigscope's own MFU uses
(core.profiling.peak.device_peak at one thread; this process's 2048^2 matmul where that is missing).

Comparisons (each variant interleaved with the others, bare loop, medians):
    --compare optimizer   AdamW for-loop vs foreach vs fused (per step, and optimizer.step alone)
    --compare dropout     har_transformer's dropout layers at p=1e-4 and p=0: nn.Dropout vs the
                          zoo's dropout_layer (nn.Identity below EFFECTIVELY_ZERO)
    --compare compile     the bare loop eager vs torch.compile'd (train.compile): CPU ms per step,
                          the first compiled step's wall seconds (Inductor compiles in worker
                          processes) and the steps of saved CPU time it takes to pay that back
    --compare layout      channels-last for 1-D convs (a Conv2d over (N, C, 1, L), the only route
                          torch has): Conv1d vs Conv2d vs Conv2d channels_last, forward + backward
    --malloc both         each model in two subprocesses, glibc malloc as it is (SIGSCOPE_MALLOC=default)
                          and as Sigscope tunes it (core.runtime.tune_malloc)

    python bench/throughput.py                                   # five zoo models, table
    python bench/throughput.py --models har_transformer --steps 12 --json
    python bench/throughput.py --models har_transformer resnet1d --malloc both
    python bench/throughput.py --models har_transformer --set dropout=0 emb_dropout=0
    python bench/throughput.py --compare optimizer --models har_transformer resnet1d

--json prints one object: {"torch", "threads", "batch_size", "input_shape", "malloc", "optimizer",
"peak_gflops", "peak_source", "cadence", "models": {name: {"hparams", "train_flops_per_step", "bare",
"trainer_plain", "trainer_probe", "trainer_histogram", "trainer_amortized", "ratio_plain", "ratio_amortized",
"achieved_gflops", "mfu"}}}
where each timing is {"user_ms", "sys_ms", "cpu_ms", "minflt", "n"} (medians per step, n steps).

Measured (2-core dev machine, one thread, CPU ms per step as median user+sys, minor faults per
step; 36 bare / 24 plain Trainer steps per case; the fp32 peak is 92 GFLOP/s at one thread):

    malloc (--malloc both)        default: user / sys / faults      tuned (core.runtime)
      har_transformer (preset)    952 / 381 / 151 k -> 1345 ms      885 / 0 / 0 -> 886 ms  (-34 %)
      resnet1d                    91 / 0 / 0                         91 / 0 / 0 (nothing to gain)
    dropout (--compare dropout, har_transformer, every dropout at p)
      p = 1e-4                    nn.Dropout 883 ms                  dropout_layer (Identity) 678 ms (-23 %)
      p = 0                       nn.Dropout 675 ms                  669 ms (torch already skips p = 0)
    AdamW (--compare optimizer)   optimizer.step alone: for-loop / foreach / fused
      har_transformer             4.1 / 3.3 / 1.1 ms of an 880 ms step (whole step within noise)
      resnet1d                    2.6 / 1.9 / 0.7 ms of a 90 ms step
    Trainer / bare, probes amortized at a 1000-step run (every 20, histograms every 50), tuned:
      resnet1d 1.024, har_transformer 1.013, imu_se_convnext_lstm 1.015, tcn_dilated 1.036,
      mobilenet1d 1.023 (plain steps 0.99-1.02; a run in a busier minute gave 1.06-1.08 for
      imu_se_convnext_lstm, so +-5 % is the noise of one run)
    MFU: har_transformer 44.8 GFLOP/s = 49 % (29.2 = 33 % with glibc's default malloc),
      resnet1d 49 %, imu_se_convnext_lstm 58 %, tcn_dilated 34 %, mobilenet1d 16 %.
    torch.compile (--compare compile, 8 steps x 2 rounds, machine shared with a 2-worker sweep):
      eager / compiled ms per step, speed-up, the first compiled step's wall seconds
      har_transformer 929 / 1431 (0.65x, 167 s)   resnet1d 101 / 96 (1.05x; compile cached)
      tcn_dilated 234 / 360 (0.65x)   mobilenet1d 112 / 87 (1.29x, 108 s: pays back after 4,253
      steps)   imu_se_convnext_lstm 302 / 306 (0.98x, 180 s). So train.compile is off by default.
    channels-last (--compare layout, four 64-channel conv blocks, batch 64): Conv1d / Conv2d h=1 /
      Conv2d h=1 channels_last, ms per forward + backward: length 128 58.7 / 58.3 / 55.8,
      length 512 202 / 205 / 213 -- within noise either way, so the zoo keeps Conv1d.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODELS = ("resnet1d", "har_transformer", "imu_se_convnext_lstm", "tcn_dilated", "mobilenet1d")
INPUT_SHAPE = (6, 128)
NUM_CLASSES = 6
PRESETS = {"har_transformer": "hapt_har_transformer", "resnet1d": "hapt_resnet1d"}  # their HAPT hparams
KEYS = ("user_ms", "sys_ms", "cpu_ms", "minflt")


# ------------------------------------------------------------------------------ measuring
def _usage() -> tuple[float, float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def _delta(before, after) -> dict:
    user, sys_ = (after[0] - before[0]) * 1000, (after[1] - before[1]) * 1000
    return {"user_ms": user, "sys_ms": sys_, "cpu_ms": user + sys_, "minflt": after[2] - before[2]}


def summary(samples: list[dict]) -> dict:
    """Median of each key over per-step samples, and how many there were."""
    if not samples:
        return {**{k: None for k in KEYS}, "n": 0}
    return {**{k: round(statistics.median(s[k] for s in samples), 2) for k in KEYS}, "n": len(samples)}


def peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """fp32 matmul GFLOP/s on this thread budget, in CPU time: the fastest of `repeats` (a peak is
    what the core can do; contention on a shared machine only ever adds time)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.process_time()
        a @ b
        times.append(time.process_time() - start)
    return 2 * size**3 / min(times) / 1e9


def train_flops_per_step(model, x, y) -> int:
    """Forward + backward FLOPs of one training step on (x, y): the profiler's own per-example
    figure (core.profiling.flops.training_flops_per_example, what the Trainer's MFU uses) x batch,
    or, where that is missing, FlopCounterMode over a cross-entropy step with the module's formulas."""
    import torch.nn.functional as F

    from core.profiling import flops

    per_example = getattr(flops, "training_flops_per_example", None)
    if per_example is not None:
        return int(round(per_example(model, tuple(x.shape[1:])) * len(x)))
    mode = flops._CountingMode(flops._custom_mapping())
    with flops.counting_conditions(), mode:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return int(mode.get_total_flops())


def sigscope_peak_gflops() -> tuple[float, str]:
    """(GFLOP/s, where from): the peak Sigscope's MFU divides by (core.profiling.peak, cached per
    machine, at one thread), else this process's own matmul measurement."""
    try:
        from core.profiling.peak import device_peak
    except ImportError:
        return peak_gflops(), "matmul 2048^2 in this process"
    return device_peak("cpu", threads=1).of("fp32") / 1e9, "core.profiling.peak.device_peak (cached per machine)"


# ------------------------------------------------------------------------------ the two paths
def run_config(name: str, hparams: dict, batch_size: int, epochs: int = 1, probe_every: int = 3,
               histogram_every: int = 6):
    from core.config import RunConfig

    cfg = RunConfig()
    if name in PRESETS:
        from core import presets
        cfg = presets.get(PRESETS[name]).config
    model_hp = {**cfg.model.hparams, **hparams} if cfg.model.name == name else dict(hparams)
    return cfg.with_overrides({"model.name": name, "model.hparams": model_hp, "train.epochs": epochs,
                               "train.batch_size": batch_size, "train.device": "cpu", "train.num_workers": 0,
                               "train.probes.enabled": True, "train.probes.every_n_steps": probe_every,
                               "train.probes.histogram_every_n_steps": histogram_every})


def random_batches(n: int, batch_size: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch_size, *INPUT_SHAPE, generator=g),
             torch.randint(0, NUM_CLASSES, (batch_size,), generator=g)) for _ in range(n)]


def optimizer_flags() -> dict:
    """The implementation flags (foreach/fused) Sigscope's AdamW is built with."""
    import torch

    from core.config import OptimConfig
    from core.train.optimizers import build_optimizer

    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], OptimConfig(name="adamw"))
    return {k: opt.defaults.get(k) for k in ("foreach", "fused") if opt.defaults.get(k) is not None}


class BareLoop:
    """The loop a person writes by hand: model, AdamW (opt_flags: implementation flags, default
    Sigscope's), cross-entropy with the config's label smoothing, backward, clipping, step."""

    def __init__(self, cfg, opt_flags: dict | None = None, build=None) -> None:
        import torch

        from core.models import create
        from core.train.trainer import seed_everything

        seed_everything(cfg.train.seed)
        self.model = build() if build else create(cfg.model.name, INPUT_SHAPE, NUM_CLASSES, **cfg.model.hparams)
        self.model.train()
        oc = cfg.optim
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=oc.lr, betas=tuple(oc.betas),
                                     weight_decay=oc.weight_decay,
                                     **(optimizer_flags() if opt_flags is None else opt_flags))
        self.clip, self.smoothing = cfg.train.grad_clip, cfg.train.label_smoothing

    def step(self, x, y, step_only: bool = False) -> dict:
        """One step's usage (step_only: optimizer.step() alone)."""
        import torch
        import torch.nn.functional as F

        before = _usage()
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y, label_smoothing=self.smoothing)
        loss.backward()
        loss.item()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip, foreach=True)
        if step_only:
            before = _usage()
        self.opt.step()
        return _delta(before, _usage())


def bare_loop(cfg, batches, warmup: int, steps: int, opt_flags: dict | None = None, build=None,
              step_only: bool = False) -> list[dict]:
    """Per-step usage of the hand-written loop (the first `warmup` steps dropped).
    step_only: time optimizer.step() alone instead of the whole step."""
    loop = BareLoop(cfg, opt_flags, build)
    samples = [loop.step(*batches[i % len(batches)], step_only=step_only) for i in range(warmup + steps)]
    return samples[warmup:]


def _step_timer():
    from core.train import Callback

    class StepTimer(Callback):
        """Usage from one step's start to the next's: the loader, the step, the probes, the recorder."""

        name = "step_timer"

        def __init__(self) -> None:
            self.last: tuple | None = None
            self.samples: list[tuple[int, dict]] = []  # (step that the interval covers, usage)

        def on_step_start(self, trainer, step: int) -> None:
            now = _usage()
            if self.last is not None:
                self.samples.append((step - 1, _delta(self.last, now)))
            self.last = _usage()

    return StepTimer()


def synthetic_bundle(batches):
    import torch
    from torch.utils.data import TensorDataset

    from core.data.bundle import DatasetBundle

    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    val = TensorDataset(x[:8], y[:8])
    empty = TensorDataset(x[:0], y[:0])
    return DatasetBundle(train=TensorDataset(x, y), val=val, test=empty,
                         class_names=[f"c{i}" for i in range(NUM_CLASSES)],
                         channel_names=[f"ch{i}" for i in range(INPUT_SHAPE[0])], sample_rate=50.0,
                         input_kind="imu", input_shape=INPUT_SHAPE)


def trainer_steps(cfg, batches, warmup: int) -> dict[str, list[dict]]:
    """Per-step usage of Sigscope's Trainer over the batches (one epoch), by kind of step."""
    from core.train import Trainer

    timer = _step_timer()
    trainer = Trainer(cfg, synthetic_bundle(batches), callbacks=[timer], device="cpu")
    trainer.fit()
    kinds: dict[str, list[dict]] = {"plain": [], "probe": [], "histogram": []}
    for step, usage in timer.samples:
        if step > warmup:
            kinds[step_kind(trainer, step)].append(usage)
    return kinds


def step_kind(trainer, step: int) -> str:
    """What ran on a Trainer step: "plain", "probe" or "histogram" (a histogram probe, maybe more)."""
    active = [cb for cb in trainer.callbacks if hasattr(cb, "active") and hasattr(cb, "cadence") and cb.active(step)]
    return ("histogram" if any(p.cadence == "histogram_every_n_steps" for p in active)
            else "probe" if active else "plain")


def amortized(plain: dict, probe: dict, histogram: dict, every: int, histogram_every: int) -> dict:
    """Per-step cost at a real cadence: plain + (probe - plain) / every + (histogram - probe) / histogram_every."""
    out = {}
    for k in KEYS:
        c, p, h = plain[k], probe[k], histogram[k]
        if c is None:
            out[k] = None
            continue
        p = c if p is None else p
        h = p if h is None else h
        out[k] = round(c + (p - c) / max(every, 1) + ((h - p) / histogram_every if histogram_every else 0.0), 2)
    out["n"] = plain["n"]
    return out


def real_cadence(run_steps: int) -> dict:
    from core.config import ProbeConfig
    from core.train.probes import cadence_steps

    cfg = ProbeConfig()
    return {"run_steps": run_steps, "every": cadence_steps(cfg, "every_n_steps", run_steps),
            "histogram_every": cadence_steps(cfg, "histogram_every_n_steps", run_steps)}


def measure_model(name: str, hparams: dict, args, cadence: dict, peak: float | None) -> dict:
    cfg = run_config(name, hparams, args.batch_size, probe_every=args.sample_every,
                     histogram_every=2 * args.sample_every)
    n = args.warmup + args.steps + 1  # +1: the interval of the last timed step ends at the next step's start
    batches = random_batches(n, args.batch_size)
    bare, kinds = [], {"plain": [], "probe": [], "histogram": []}
    for _ in range(args.rounds):
        bare += bare_loop(cfg, batches, args.warmup, args.steps)
        for kind, samples in trainer_steps(cfg, batches, args.warmup).items():
            kinds[kind] += samples
    from core.models import create
    flops = train_flops_per_step(create(name, INPUT_SHAPE, NUM_CLASSES, **cfg.model.hparams), *batches[0])
    b = summary(bare)
    t = {kind: summary(s) for kind, s in kinds.items()}
    am = amortized(t["plain"], t["probe"], t["histogram"], cadence["every"], cadence["histogram_every"])
    gflops = flops / (b["cpu_ms"] / 1000) / 1e9 if b["cpu_ms"] else None
    ratio = (lambda x: round(x["cpu_ms"] / b["cpu_ms"], 3) if x["cpu_ms"] and b["cpu_ms"] else None)
    return {"hparams": cfg.model.hparams, "train_flops_per_step": flops, "bare": b, "trainer_plain": t["plain"],
            "trainer_probe": t["probe"], "trainer_histogram": t["histogram"], "trainer_amortized": am,
            "ratio_plain": ratio(t["plain"]), "ratio_amortized": ratio(am),
            "achieved_gflops": round(gflops, 2) if gflops else None,
            "mfu": round(gflops / peak, 4) if gflops and peak else None}


# ------------------------------------------------------------------------------ comparisons
def compare_optimizer(name: str, hparams: dict, args) -> dict:
    cfg = run_config(name, hparams, args.batch_size)
    batches = random_batches(args.warmup + args.steps, args.batch_size)
    variants = {"for_loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    whole: dict[str, list] = {v: [] for v in variants}
    step: dict[str, list] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for label, flags in variants.items():
            whole[label] += bare_loop(cfg, batches, args.warmup, args.steps, opt_flags=flags)
            step[label] += bare_loop(cfg, batches, args.warmup, args.steps, opt_flags=flags, step_only=True)
    return {"sigscope_flags": optimizer_flags(),
            "step": {v: summary(s) for v, s in whole.items()},
            "optimizer_step": {v: summary(s) for v, s in step.items()}}


def compare_dropout(args) -> dict:
    from core.models import create
    from core.models.blocks import dropout as dropout_module

    name = "har_transformer"
    out = {}
    for p in (1e-4, 0.0):
        hp = {"dropout": p, "emb_dropout": p}
        cfg = run_config(name, hp, args.batch_size)
        batches = random_batches(args.warmup + args.steps, args.batch_size)

        def build(always_dropout: bool):
            patch = mock.patch.object(dropout_module, "EFFECTIVELY_ZERO", 0.0) if always_dropout else nullcontext()
            with patch:
                return create(name, INPUT_SHAPE, NUM_CLASSES, **cfg.model.hparams)

        runs: dict[str, list] = {"nn_dropout": [], "dropout_layer": []}
        for _ in range(args.rounds):
            runs["nn_dropout"] += bare_loop(cfg, batches, args.warmup, args.steps, build=lambda: build(True))
            runs["dropout_layer"] += bare_loop(cfg, batches, args.warmup, args.steps, build=lambda: build(False))
        out[f"p={p:g}"] = {k: summary(v) for k, v in runs.items()}
    return out


def compare_compile(name: str, hparams: dict, args) -> dict:
    """The bare loop eager and through torch.compile (TorchInductor, as train.compile does), steps
    alternated between the two after the compiled loop's first step, which compiles forward and
    backward and is reported on its own (CPU seconds) with the steps it takes to pay back."""
    import torch

    from core.models import create

    cfg = run_config(name, hparams, args.batch_size)
    batches = random_batches(args.warmup + args.steps, args.batch_size)
    eager = BareLoop(cfg)
    compiled = BareLoop(cfg, build=lambda: torch.compile(create(name, INPUT_SHAPE, NUM_CLASSES, **cfg.model.hparams)))
    started = time.perf_counter()
    compiled.step(*batches[0])
    first_wall = time.perf_counter() - started  # Inductor compiles in worker processes: wall, not this CPU
    runs: dict[str, list] = {"eager": [], "compiled": []}
    for _ in range(args.rounds):
        for i in range(args.warmup + args.steps):
            x, y = batches[i % len(batches)]
            e, c = eager.step(x, y), compiled.step(x, y)
            if i >= args.warmup:
                runs["eager"].append(e)
                runs["compiled"].append(c)
    out = {k: summary(v) for k, v in runs.items()}
    saved = out["eager"]["cpu_ms"] - out["compiled"]["cpu_ms"]
    return {"step": out, "speedup": round(out["eager"]["cpu_ms"] / out["compiled"]["cpu_ms"], 3),
            "first_compiled_step_wall_s": round(first_wall, 1),
            "pays_back_after_steps": round(first_wall * 1000 / saved) if saved > 0 else None}


def compare_layout(args) -> dict:
    """Channels-last for 1-D convolutions. torch has no channels-last format for 3-D tensors, so
    the only way to it is a Conv2d over (N, C, 1, L): four Conv+BatchNorm+ReLU blocks (64
    channels, kernel 3, the shape of resnet1d's stages) forward + backward at lengths 128 and
    512, as Conv1d, as Conv2d with height 1, and as that Conv2d in channels_last, interleaved."""
    import torch
    from torch import nn

    def stack(conv, norm):
        return nn.Sequential(*[layer for _ in range(4) for layer in (conv(64, 64), norm(64), nn.ReLU())])

    def conv2d(i: int, o: int) -> nn.Module:
        return nn.Conv2d(i, o, (1, 3), padding=(0, 1), bias=False)

    out = {}
    for length in (128, 512):
        torch.manual_seed(0)
        x = torch.randn(args.batch_size, 64, length)
        one_d = stack(lambda i, o: nn.Conv1d(i, o, 3, padding=1, bias=False), nn.BatchNorm1d)
        as_2d = stack(conv2d, nn.BatchNorm2d)
        as_2d.load_state_dict({k: v.unsqueeze(2) if v.dim() == 3 else v for k, v in one_d.state_dict().items()})
        last = stack(conv2d, nn.BatchNorm2d).to(memory_format=torch.channels_last)
        last.load_state_dict(as_2d.state_dict())
        variants = {"conv1d": (one_d, x), "conv2d_h1": (as_2d, x.unsqueeze(2)),
                    "conv2d_h1_channels_last": (last, x.unsqueeze(2).contiguous(memory_format=torch.channels_last))}
        runs: dict[str, list] = {k: [] for k in variants}
        for i in range(args.rounds * (args.warmup + args.steps)):
            for label, (model, batch) in variants.items():
                before = _usage()
                model(batch).square().mean().backward()
                if i % (args.warmup + args.steps) >= args.warmup:
                    runs[label].append(_delta(before, _usage()))
        out[f"length {length}"] = {k: summary(v) for k, v in runs.items()}
    return out


# ------------------------------------------------------------------------------ the CLI
def _parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: use NAME=VALUE, e.g. dropout=0")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _hparams_for(name: str, sets: dict) -> dict:
    from core.models import spec

    known = {h.name for h in spec(name).hparams}
    return {k: v for k, v in sets.items() if k in known}


def _fmt(t: dict) -> str:
    if not t or t.get("cpu_ms") is None:
        return "-"
    return f"{t['cpu_ms']:8.1f} ({t['user_ms']:.0f}+{t['sys_ms']:.0f}) {t['minflt']:>7.0f}"


def print_table(result: dict) -> None:
    print(f"torch {result['torch']}, {result['threads']} thread(s), batch {result['batch_size']}, input "
          f"{tuple(result['input_shape'])}, malloc {result['malloc']}, AdamW {result['optimizer']}, fp32 matmul peak "
          f"{result['peak_gflops']} GFLOP/s ({result['peak_source']})")
    c = result["cadence"]
    print(f"probes amortized at a {c['run_steps']}-step run's cadence: every {c['every']} steps, histograms every "
          f"{c['histogram_every']}")
    print(f"{'model':<22} {'bare ms (user+sys) faults':>32} {'trainer plain':>28} {'trainer probe':>28} "
          f"{'plain/bare':>10} {'amortized/bare':>14} {'GFLOP/s':>8} {'MFU':>6}")
    for name, m in result["models"].items():
        mfu = f"{m['mfu'] * 100:5.1f}%" if m["mfu"] else "-"
        print(f"{name:<22} {_fmt(m['bare']):>32} {_fmt(m['trainer_plain']):>28} {_fmt(m['trainer_probe']):>28} "
              f"{m['ratio_plain'] or '-':>10} {m['ratio_amortized'] or '-':>14} {m['achieved_gflops'] or '-':>8} "
              f"{mfu:>6}")
    for label, block in result.get("compare", {}).items():
        print(f"-- compare {label}")
        for key, rows in block.items():
            if not isinstance(rows, dict):
                continue
            print(f"  {key}")
            for variant, t in rows.items():
                if isinstance(t, dict) and "cpu_ms" in t:
                    print(f"    {variant:<26} {_fmt(t)}")
                elif isinstance(t, dict):
                    for v2, t2 in t.items():
                        print(f"    {variant + ' ' + v2:<26} {_fmt(t2)}")
            scalars = {k: v for k, v in rows.items() if not isinstance(v, dict)}
            if scalars:
                print("    " + ", ".join(f"{k} {v}" for k, v in scalars.items()))


def run(args) -> dict:
    import torch

    from core.runtime import tune_malloc

    malloc = tune_malloc()
    torch.set_num_threads(args.threads)
    sets = _parse_sets(args.set)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
              "input_shape": list(INPUT_SHAPE), "malloc": "tuned" if malloc.get("applied") else "default",
              "malloc_detail": malloc, "optimizer": optimizer_flags(), "peak_gflops": None, "peak_source": None,
              "cadence": real_cadence(args.run_steps), "models": {}}
    if args.peak:
        peak, source = sigscope_peak_gflops()
        result.update(peak_gflops=round(peak, 1), peak_source=source)
    if "trainer" in args.compare:
        for name in args.models:
            result["models"][name] = measure_model(name, _hparams_for(name, sets), args, result["cadence"],
                                                   result["peak_gflops"])
    compare = {}
    if "optimizer" in args.compare:
        compare["optimizer"] = {name: compare_optimizer(name, _hparams_for(name, sets), args) for name in args.models}
    if "dropout" in args.compare:
        compare["dropout"] = compare_dropout(args)
    if "layout" in args.compare:
        compare["layout"] = compare_layout(args)
    if "compile" in args.compare:
        compare["compile"] = {name: compare_compile(name, _hparams_for(name, sets), args) for name in args.models}
    if compare:
        result["compare"] = compare
    return result


def run_malloc_both(args, argv: list[str]) -> dict:
    """Each model in a subprocess per malloc mode (mallopt is process-wide and not undone),
    alternating the modes model by model."""
    rest = [a for a in argv if a not in ("--malloc", "both", "--json")]
    out: dict = {"malloc": {}}
    for name in args.models:
        for mode in ("default", "tuned"):
            models_at = rest.index("--models") if "--models" in rest else None
            cmd = [a for a in rest]
            if models_at is not None:  # drop the list that follows --models
                end = models_at + 1
                while end < len(cmd) and not cmd[end].startswith("--"):
                    end += 1
                del cmd[models_at:end]
            cmd = [sys.executable, str(Path(__file__).resolve()), *cmd, "--models", name, "--json"]
            env = {**os.environ, "SIGSCOPE_MALLOC": mode}
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            if done.returncode != 0:
                raise SystemExit(f"{mode} run of {name} failed:\n{done.stderr[-2000:]}")
            result = json.loads(done.stdout)
            out["malloc"].setdefault(mode, result)
            out["malloc"][mode]["models"][name] = result["models"].get(name)
            if "compare" in result:
                out["malloc"][mode].setdefault("compare_by_model", {})[name] = result["compare"]
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--steps", type=int, default=12, help="timed steps per round and path")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of (bare, trainer)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each round")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                   help="model hyperparameters for the models that have them, e.g. dropout=0")
    p.add_argument("--compare", nargs="+", default=["trainer"],
                   choices=("trainer", "optimizer", "dropout", "compile", "layout"),
                   help="what to measure (default: trainer against the bare loop)")
    p.add_argument("--sample-every", type=int, default=3, help="probe cadence while measuring (histograms at 2x)")
    p.add_argument("--run-steps", type=int, default=1000, help="run length whose probe cadence is amortized over")
    p.add_argument("--malloc", choices=("as-is", "default", "tuned", "both"), default="as-is",
                   help="as-is: what Sigscope does (tune_malloc, unless SIGSCOPE_MALLOC=default); both: one "
                        "subprocess per mode and model")
    p.add_argument("--no-peak", dest="peak", action="store_false", help="skip the matmul peak (no MFU)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = p.parse_args(argv)
    if args.malloc == "both":
        result = run_malloc_both(args, argv)
        if args.json:
            print(json.dumps(result))
        else:
            for mode, r in result["malloc"].items():
                print(f"== SIGSCOPE_MALLOC={mode}")
                print_table(r)
        return 0
    if args.malloc in ("default", "tuned"):
        os.environ["SIGSCOPE_MALLOC"] = args.malloc
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
