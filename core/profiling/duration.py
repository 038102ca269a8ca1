"""How long a run will train, from the profiler's FLOP count, before it starts.

    seconds = epochs x (3 F n_train + F n_val) / (R x TRAIN_EFFICIENCY) + F n_test / (R x TRAIN_EFFICIENCY)
              + START_SECONDS

F is one window's inference forward FLOPs (core.profiling.flops at batch 1); a training
step costs about three forwards (the backward is two); R is this machine's fp32 matmul
rate on one core (core.profiling.latency.machine_flops_per_s). TRAIN_EFFICIENCY was
calibrated on the two demo models on the 2-core CPU this project is developed on
(`python -m core demo-models --train`, one thread): demo-imu estimated 15 s against 14.8 s
measured, demo-audio 22 s against 22.5 s. Data preparation the first time a dataset is
read (feature extraction, synthetic voices) is not in it; say so where it is shown. Treat
it as "about": small models waste more of the machine than large ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

TRAIN_EFFICIENCY = 0.15  # fraction of one core's matmul rate a training step reaches (see above)
START_SECONDS = 1.0  # building the model, the first batch, the test report


@dataclass
class TrainingTime:
    seconds: float
    flops_per_window: int
    flops_per_s: float  # the one-core matmul rate it was priced at

    def text(self) -> str:
        return f"about {describe_seconds(self.seconds)} on one CPU core"


def estimate_training_time(config, input_shape: tuple, num_classes: int, n_train: int, n_val: int,
                           n_test: int, flops_per_s: float | None = None, flops: int | None = None) -> TrainingTime:
    """The estimate above for RunConfig `config` on data of that shape and size (`flops`: one
    window's forward FLOPs when already counted, see window_flops)."""
    from core.profiling.latency import machine_flops_per_s

    if flops is None:
        flops = window_flops(config.model.name, config.model.hparams, input_shape, num_classes)
    rate = flops_per_s or machine_flops_per_s("cpu", threads=1)
    per_epoch = 3 * flops * n_train + flops * n_val
    seconds = (config.train.epochs * per_epoch + flops * n_test) / (rate * TRAIN_EFFICIENCY) + START_SECONDS
    return TrainingTime(seconds=seconds, flops_per_window=flops, flops_per_s=rate)


def window_flops(model: str, hparams: dict, input_shape: tuple, num_classes: int) -> int:
    """One window's inference forward FLOPs for zoo model `model` (a forward at batch 1)."""
    from core.models.registry import create, spec
    from core.profiling.flops import count_flops

    shape = tuple(int(v) for v in input_shape)
    hp = spec(model).resolve(hparams, shape)
    with torch.random.fork_rng():
        net = create(model, shape, num_classes, **hp).eval()
        return count_flops(net, torch.zeros(1, *shape)).total


def describe_seconds(seconds: float) -> str:
    """'20 s', '3 min', '1.5 h': a duration rounded as people say it."""
    if seconds < 90:
        return f"{max(1, round(seconds / 5) * 5 if seconds >= 10 else round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
