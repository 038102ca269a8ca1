"""Is the data loader the bottleneck? And what does the feature cache save?

Prints, on this machine:
1. windows/s of the augmented training loader (bundled HAPT, IMU augmentations) against
   windows/s the default model (resnet1d) trains at (forward + backward + AdamW step) at
   the same batch size -> ratio, which must be >= 5 (exit code 1 otherwise);
2. the same for FSDD as a 4-channel stack4 image with SpecAugment vs the audio model;
3. feature cache miss vs hit load time (FSDD stack4, HAPT windows) -> speed-up.

    .venv/bin/python bench/data_throughput.py [--batch 64] [--seconds 4]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "numba"))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from core import data  # noqa: E402
from core.config import DataConfig  # noqa: E402
from core.models import create  # noqa: E402

IMU_AUGMENT = [{"name": "jitter", "p": 0.8}, {"name": "scaling", "p": 0.8}, {"name": "rotation", "p": 0.5},
               {"name": "time_warp", "p": 0.5}, {"name": "channel_dropout", "p": 0.3}]
AUDIO_AUGMENT = [{"name": "spec_time_mask", "p": 0.8}, {"name": "spec_freq_mask", "p": 0.8}]


def loader_rate(dataset, batch: int, seconds: float) -> float:
    """Windows per second drawn through a shuffling DataLoader (num_workers=0)."""
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for x, _ in loader:
            n += len(x)
            if time.perf_counter() - start >= seconds:
                break
    return n / (time.perf_counter() - start)


def train_rate(model_name: str, input_shape: tuple, num_classes: int, batch: int, seconds: float) -> float:
    """Windows per second the model trains at: forward + backward + optimizer step."""
    torch.manual_seed(0)
    model = create(model_name, input_shape=input_shape, num_classes=num_classes).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, *input_shape)
    y = torch.randint(0, num_classes, (batch,))
    for _ in range(2):  # warm-up
        opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        n += batch
    return n / (time.perf_counter() - start)


def timed_load(cfg: DataConfig, cache_dir: Path) -> tuple[float, str]:
    start = time.perf_counter()
    bundle = data.load(cfg, cache_dir=cache_dir)
    return time.perf_counter() - start, bundle.info["cache"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per measurement")
    args = parser.parse_args()
    ok = True
    print(f"torch threads: {torch.get_num_threads()}, batch {args.batch}, device cpu")

    imu = data.load(DataConfig(source="hapt", split="subject", augment=IMU_AUGMENT))
    load_ips = loader_rate(imu.train, args.batch, args.seconds)
    step_ips = train_rate("resnet1d", imu.input_shape, imu.num_classes, args.batch, args.seconds)
    ratio = load_ips / step_ips
    ok &= ratio >= 5
    print(f"IMU  hapt {imu.input_shape} + {len(IMU_AUGMENT)} augmentations: loader {load_ips:,.0f} windows/s, "
          f"resnet1d trains {step_ips:,.0f} windows/s -> ratio {ratio:.1f}x "
          f"({'OK' if ratio >= 5 else 'LOADER IS THE BOTTLENECK'}, need >= 5x)")

    audio = data.load(DataConfig(source="fsdd", split="fixed", features="stack4", augment=AUDIO_AUGMENT))
    load_ips = loader_rate(audio.train, args.batch, args.seconds)
    step_ips = train_rate("audio_resnet_attention", audio.input_shape, audio.num_classes, args.batch, args.seconds)
    print(f"audio fsdd stack4 {audio.input_shape} + SpecAugment: loader {load_ips:,.0f} windows/s, "
          f"audio_resnet_attention trains {step_ips:,.0f} windows/s -> ratio {load_ips / step_ips:.1f}x")
    wave = data.load(DataConfig(source="fsdd", split="fixed", features="stack4",
                                augment=[{"name": "noise", "p": 0.5}, {"name": "time_shift", "p": 0.5}]))
    print(f"audio fsdd stack4 + waveform noise/shift (featurized per item): loader "
          f"{loader_rate(wave.train, args.batch, args.seconds):,.0f} windows/s")

    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in (("fsdd stack4", DataConfig(source="fsdd", features="stack4")),
                          ("hapt windows", DataConfig(source="hapt"))):
            miss, miss_state = timed_load(cfg, Path(tmp))
            hit, hit_state = timed_load(cfg, Path(tmp))
            print(f"cache {name}: {miss_state} {miss:.2f} s, {hit_state} {hit:.3f} s -> {miss / hit:.0f}x faster")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
