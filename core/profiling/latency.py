"""Latency: estimated from FLOPs and this machine's matmul speed, and measured.

estimated_ms = FLOPs / (machine matmul FLOP/s x EFFICIENCY) * 1000

`machine_flops_per_s` times a 512 x 512 fp32 matmul (1024 on CUDA) once per process and
device and caches it. EFFICIENCY is the fraction of that peak small 1-D models reach in a
real forward (element-wise ops, memory traffic, small kernels and Python overhead cost
time that the matmul rate does not see). It was calibrated with
`bench/profile_accuracy.py` over the zoo at defaults, batch 32, on the 2-core CPU this
project is developed on: the median of estimated/measured came out near 1 with this
value, individual models within about 3x either way. Treat the estimate as an order of
magnitude; the measured figure is the one to trust.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from core.profiling.memory import autocast_context

EFFICIENCY = 0.25  # calibrated, see module docstring

_MACHINE_FLOPS: dict[str, float] = {}


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def machine_flops_per_s(device: str = "cpu", threads: int | None = None) -> float:
    """Measured fp32 matmul FLOP/s of this machine (cached in-process per device), with
    torch's current thread count or, on CPU, `threads` of them for the measurement."""
    cpu_threads = threads if threads and torch.device(device).type == "cpu" else None
    key = str(torch.device(device)) + (f":{cpu_threads}t" if cpu_threads else "")
    if key not in _MACHINE_FLOPS:
        from contextlib import nullcontext

        from core.threads import compute_threads

        with compute_threads(cpu_threads, purpose="matmul rate") if cpu_threads else nullcontext():
            _MACHINE_FLOPS[key] = _matmul_flops_per_s(device)
    return _MACHINE_FLOPS[key]


def _matmul_flops_per_s(device: str) -> float:
    n = 4096 if torch.device(device).type == "cuda" else 1024
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - start)
    # the fastest run is the least disturbed by other processes sharing the machine
    return 2 * n ** 3 / min(times)


def estimate_latency_ms(flops: int, device: str = "cpu", efficiency: float = EFFICIENCY,
                        flops_per_s: float | None = None) -> float:
    """Forward time predicted from a FLOP count on this machine (flops_per_s: a rate measured
    before, e.g. the one a sweep's study keeps so that all its workers price alike)."""
    return flops / ((flops_per_s or machine_flops_per_s(device)) * efficiency) * 1e3


def measure_latency_ms(model: nn.Module, input_shape: tuple, batch_size: int = 32, device: str = "cpu",
                       amp: str = "off", warmup: int = 3, repeats: int = 10) -> float:
    """Median wall time (ms) of `repeats` inference forwards (eval, no grad) at `batch_size`
    after `warmup` untimed ones. The model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    x = torch.randn(batch_size, *input_shape, device=device, dtype=dtype)
    times = []
    try:
        with torch.no_grad(), autocast_context(amp, device):
            for i in range(warmup + repeats):
                _sync(device)
                start = time.perf_counter()
                model(x)
                _sync(device)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return statistics.median(times) * 1e3
