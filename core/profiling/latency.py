"""Latency: estimated from FLOPs and this machine's matmul speed, and measured.

estimated_ms = FLOPs / (machine matmul FLOP/s x EFFICIENCY) * 1000

`machine_flops_per_s` is the fp32 matmul peak core.profiling.peak measures once per machine,
device and thread count (the rate MFU is measured against). EFFICIENCY is the fraction of that
peak small 1-D models reach in a real forward (element-wise ops, memory traffic, small
kernels and Python overhead cost time that the matmul rate does not see). It was calibrated with
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


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def machine_flops_per_s(device: str = "cpu", threads: int | None = None) -> float:
    """This machine's fp32 matmul FLOP/s: core.profiling.peak's benchmark (the one MFU divides
    by), measured once per machine, device and thread count and cached on disk. On CPU with
    `threads` of them (None: torch's current count)."""
    from core.profiling.peak import device_peak

    dev = torch.device(device)
    return float(device_peak(dev, threads if dev.type == "cpu" else None).of("fp32"))


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
