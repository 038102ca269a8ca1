"""How good are the profiler's figures? For every zoo model at its defaults: estimated
training memory vs the measured peak of one real training step, the time the profiler
takes, and estimated vs measured latency.

    .venv/bin/python bench/profile_accuracy.py                 # CPU, batch 32, all modes
    .venv/bin/python bench/profile_accuracy.py --modes off --batch 64
    .venv/bin/python bench/profile_accuracy.py --device cuda    # when a GPU is present

Modes: "off" (fp32), "bf16" (autocast; fp16 on CUDA) and "ckpt" (gradient checkpointing).
Target: estimate / measured within 1 +- 0.15 for every model (PASS/FAIL per row), and
params + FLOPs + memory estimate in under 1 s per model once the process is warm.

What "measured" means
- CUDA: `torch.cuda.max_memory_allocated()` over one training step (after a warm-up
  step, so the optimizer state exists as it does for every later step), reset just before.
- CPU: PyTorch keeps no allocation statistics for CPU, and `torch.profiler` with
  `profile_memory=True` recorded only 7 memory events for a whole training step on this
  torch 2.13 CPU build (tried; the running sum was meaningless), so it is not used. Instead
  `core.profiling.memory.StorageTimeline`, a TorchDispatchMode, sees the output of every
  operator of the step (forward, autograd's backward ops, the optimizer's ops), counts each
  distinct storage once (views share one) and polls a weak reference to the storage itself
  before every allocation, so a tensor kept only inside autograd's saved variables still
  counts as alive. The peak of those live bytes plus everything alive before the step
  (parameters, buffers, optimizer state, the batch and its labels) is the measured peak.
  What it cannot see: scratch memory inside a kernel that never becomes a tensor (oneDNN
  workspaces) and allocator rounding/caching, i.e. it is the tensor-level peak, which is
  what `max_memory_allocated` reports on CUDA too (minus the kernel scratch).
- The step is what `core.train` does: zero_grad(set_to_none=True), forward (under
  autocast for bf16), cross-entropy, backward, clip_grad_norm_(1.0), AdamW step.

- Independently of that tracker, `--rss` measures each model's step in a fresh subprocess
  (CPU, fp32 and the other modes asked for) as the operating system sees it: the process
  imports, runs one warm-up step of the model at batch 2 (code pages, lazy initialisation),
  frees it and hands the freed pages back (core.runtime.release_free_memory: jemalloc's purge,
  glibc's `malloc_trim`; without the purge jemalloc reused them unseen and the growth was up to
  40 MiB short), resets its peak-RSS counter
  (`/proc/self/clear_refs` 5), builds the model and AdamW again and runs three real steps at the
  batch; measured = peak RSS (VmHWM) minus the RSS just before that build. It runs on the
  allocator every run process gets (core.runtime.allocator_env: jemalloc where the machine has
  it, else glibc tuned by tune_malloc; SIGSCOPE_MALLOC=glibc picks the latter). This is the
  figure that decides whether a run is killed for memory. The estimate counts tensors; what
  is checked against RSS with the same +-15 % is the estimate with its allocator's overhead
  (core.runtime.resident_bytes: size-class rounding and the arenas' own memory).

The estimate (`core.profile.profile_model`) never runs the batch itself: it runs forward +
backward at batches 2 and 4 and extrapolates storage by storage (core/profiling/memory.py).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time


import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from core.models.registry import create, list_models, spec  # noqa: E402
from core.profile import profile_model  # noqa: E402
from core.profiling.latency import EFFICIENCY, estimate_latency_ms, measure_latency_ms  # noqa: E402
from core.profiling.memory import StorageTimeline, autocast_context, unique_bytes  # noqa: E402
from core.runtime import RESIDENT, resident_bytes, run_allocator  # noqa: E402

TOLERANCE = 0.15


def build(name: str, checkpointing: bool, device: str = "cpu", fused: bool | None = None):
    """Zoo model `name` at its defaults (seed 0, training mode) and an AdamW over it."""
    torch.manual_seed(0)
    model = create(name, spec(name).default_input).to(device).train()
    if checkpointing:
        model.set_grad_checkpointing(True)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)


def train_step(model, opt, x, y, amp: str, device: str) -> None:
    """What `core.train` does in a step (see the module docstring)."""
    opt.zero_grad(set_to_none=True)
    with autocast_context(amp, device):
        logits = model(x)
    F.cross_entropy(logits.float(), y).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def measured_step_peak(name: str, batch: int, amp: str, checkpointing: bool, device: str) -> int:
    """Peak bytes of one real training step of zoo model `name` at its defaults."""
    model, opt = build(name, checkpointing, device)
    x = torch.randn(batch, *spec(name).default_input, device=device)
    y = torch.randint(0, 6, (batch,), device=device)

    def step() -> None:
        train_step(model, opt, x, y, amp, device)

    step()  # warm-up: creates the optimizer state every later step carries
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    before = (list(model.parameters()) + list(model.buffers()) + [x, y]
              + [v for st in opt.state.values() for v in st.values() if torch.is_tensor(v)])
    with StorageTimeline(before) as timeline:
        step()
    return unique_bytes(before) + timeline.peak_bytes


def rss_child(name: str, batch: int, amp: str, checkpointing: bool) -> dict:
    """In a fresh process (see the module docstring): peak RSS growth of three real training steps."""
    import gc
    import os

    from core.launch import process_rss
    from core.runtime import release_free_memory

    torch.set_num_threads(1)
    shape = spec(name).default_input

    def peak() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

    model, opt = build(name, checkpointing, fused=True)  # fused, as a run's AdamW is
    train_step(model, opt, torch.randn(2, *shape), torch.randint(0, 2, (2,)), amp, "cpu")
    del model, opt
    gc.collect()
    release_free_memory()  # jemalloc keeps freed pages resident (decay off): they would be reused unseen
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = process_rss(os.getpid())
    model, opt = build(name, checkpointing, fused=True)
    x, y = torch.randn(batch, *shape), torch.randint(0, 2, (batch,))
    for _ in range(3):
        train_step(model, opt, x, y, amp, "cpu")
    return {"rss_growth": peak() - base, "rss_base": base}


def measured_rss_growth(name: str, batch: int, amp: str, checkpointing: bool) -> int | None:
    """rss_child's figure from a fresh `python bench/profile_accuracy.py --rss-child ...` process."""
    import json
    import os
    import subprocess

    if not os.path.exists("/proc/self/clear_refs"):
        return None  # not Linux: no peak-RSS reset
    cmd = [sys.executable, __file__, "--rss-child", name, str(batch), amp, str(int(checkpointing))]
    from core.runtime import allocator_env

    # the allocator a run process gets (jemalloc where present: core.runtime.allocator_env)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=allocator_env(dict(os.environ)))
    if out.returncode != 0:
        print(f"  {name}: the RSS subprocess failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return int(json.loads(out.stdout.strip().splitlines()[-1])["rss_growth"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--modes", default="off,bf16,ckpt", help="comma list of off, bf16, ckpt")
    parser.add_argument("--models", default=None, help="comma list (default: the whole zoo)")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency columns")
    parser.add_argument("--rss", action="store_true",
                        help="also check the estimate against peak RSS growth of a fresh subprocess (CPU)")
    parser.add_argument("--rss-child", nargs=4, metavar=("MODEL", "BATCH", "AMP", "CKPT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        import json

        from core.runtime import tune_malloc

        tune_malloc()
        name, batch, amp, ckpt = args.rss_child
        print(json.dumps(rss_child(name, int(batch), amp, ckpt == "1")))
        return 0
    device = args.device
    names = args.models.split(",") if args.models else list_models()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    half = "fp16" if device.startswith("cuda") else "bf16"

    start = time.perf_counter()
    profile_model(names[0], batch_size=2, measure_latency=False, cross_check=False, device=device)
    print(f"device {device}, batch {args.batch}, torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"one-time warm-up of the profiler in this process: {time.perf_counter() - start:.2f} s\n")

    rss = args.rss and device == "cpu"
    if rss:
        print(f"RSS subprocesses run on {run_allocator()} (as run processes do); res = the estimate with "
              f"its allocator's overhead, {RESIDENT[run_allocator()]}\n")
    header = (f"{'model':24s} {'mode':5s} {'estimate MiB':>12s} {'measured MiB':>12s} {'ratio':>6s} {'':4s} "
              f"{'t(core) s':>9s} {'t(+xchk) s':>10s} {'lat est ms':>10s} {'lat meas ms':>11s}"
              + (f" {'RSS MiB':>8s} {'est/RSS':>7s} {'res/RSS':>7s}" if rss else ""))
    print(header)
    print("-" * len(header))
    failures, slow, latency_ratios, core_times, rss_ratios, rss_failures = [], [], [], [], [], []
    for name in names:
        for mode in modes:
            amp = half if mode == "bf16" else "off"
            ckpt = mode == "ckpt"
            t0 = time.perf_counter()
            report = profile_model(name, batch_size=args.batch, amp=amp, grad_checkpointing=ckpt,
                                   measure_latency=False, cross_check=False, device=device)
            core_time = time.perf_counter() - t0
            xcheck_time = float("nan")
            lat_est = lat_meas = float("nan")
            if mode == "off":
                t0 = time.perf_counter()
                profile_model(name, batch_size=args.batch, measure_latency=False, cross_check=True, device=device)
                xcheck_time = time.perf_counter() - t0
                core_times.append(core_time)
                if core_time > 1.0:
                    slow.append((name, core_time))
                if not args.no_latency:
                    torch.manual_seed(0)
                    model = create(name).to(device)
                    lat_meas = measure_latency_ms(model, spec(name).default_input, args.batch, device=device)
                    lat_est = estimate_latency_ms(report.flops, device)
                    latency_ratios.append(lat_est / lat_meas)
            measured = measured_step_peak(name, args.batch, amp, ckpt, device)
            estimate = report.memory["total"]
            ratio = estimate / measured
            ok = abs(ratio - 1) <= TOLERANCE
            if not ok:
                failures.append((name, mode, ratio))
            rss_cols = ""
            if rss:
                growth = measured_rss_growth(name, args.batch, amp, ckpt)
                if growth:
                    rss_ratio = resident_bytes(estimate) / growth  # the estimate with its allocator's overhead
                    rss_ratios.append(rss_ratio)
                    rss_ok = abs(rss_ratio - 1) <= TOLERANCE
                    if not rss_ok:
                        rss_failures.append((name, mode, rss_ratio))
                    rss_cols = (f" {growth / 2**20:8.1f} {estimate / growth:7.3f} {rss_ratio:7.3f} "
                                f"{'PASS' if rss_ok else 'FAIL'}")
            print(f"{name:24s} {mode:5s} {estimate / 2**20:12.2f} {measured / 2**20:12.2f} {ratio:6.3f} "
                  f"{'PASS' if ok else 'FAIL':4s} {core_time:9.2f} {xcheck_time:10.2f} {lat_est:10.1f} {lat_meas:11.1f}"
                  + rss_cols, flush=True)

    print()
    print(f"memory: {len(failures)} of {len(names) * len(modes)} rows outside +-{TOLERANCE:.0%}"
          + ("" if not failures else ": " + ", ".join(f"{n}/{m} {r:.3f}" for n, m, r in failures)))
    print(f"time for params + FLOPs + memory: median {statistics.median(core_times):.2f} s, "
          f"max {max(core_times):.2f} s; over 1 s: {', '.join(f'{n} {t:.2f}s' for n, t in slow) or 'none'}")
    if rss_ratios:
        print(f"resident estimate / peak RSS growth of a fresh process: median {statistics.median(rss_ratios):.3f}, "
              f"range {min(rss_ratios):.3f}..{max(rss_ratios):.3f}; {len(rss_failures)} of {len(rss_ratios)} rows "
              f"outside +-{TOLERANCE:.0%}")
    if latency_ratios:
        median = statistics.median(latency_ratios)
        print(f"latency estimate/measured with efficiency {EFFICIENCY}: median {median:.2f}, "
              f"range {min(latency_ratios):.2f}..{max(latency_ratios):.2f}; "
              f"efficiency that would make the median 1: {EFFICIENCY * median:.3f}")
    return 1 if failures or rss_failures else 0


if __name__ == "__main__":
    sys.exit(main())
