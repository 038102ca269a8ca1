"""What the Trainer and its probes cost: seconds per epoch on the same model and data for

    (a) a bare hand-written PyTorch loop (AdamW, cross-entropy, grad clipping, a val pass),
    (b) the Trainer with probes off,
    (c) the Trainer with all probes at their default sampling (every 10 steps, histograms every 50),

printed as ratios b/a and c/a per model. Targets: b/a <= 1.02, c/a <= 1.05 (stretch 1.03).
An epoch is the training pass plus the validation pass, in all three. Runs are
interleaved (a, b, c, a, b, c, ...); the ratios of the fastest epochs (robust on a shared,
busy machine, where contention only ever adds time) and of the median epochs are printed. The Trainer records into memory here (the store's writer is
measured by the store tests); the first epoch of each run is a warm-up and not counted.

    python bench/probe_overhead.py                        # bundled HAPT sample, both models
    python bench/probe_overhead.py --path ../shared/data/hapt --epochs 3 --device cuda
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F


from core.config import RunConfig  # noqa: E402
from core.data import load  # noqa: E402
from core.models import create  # noqa: E402
from core.train import Callback, Trainer  # noqa: E402
from core.train.trainer import resolve_device, seed_everything  # noqa: E402

MODELS = ("har_transformer", "imu_se_convnext_lstm")


def bare_loop(cfg: RunConfig, bundle, device: torch.device, epochs: int) -> list[float]:
    """Seconds per epoch of the loop a person would write by hand."""
    seed_everything(cfg.train.seed)
    model = create(cfg.model.name, tuple(bundle.input_shape), bundle.num_classes, **cfg.model.hparams).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    train = torch.utils.data.DataLoader(bundle.train, batch_size=cfg.train.batch_size, shuffle=True,
                                        pin_memory=device.type == "cuda")
    val = torch.utils.data.DataLoader(bundle.val, batch_size=cfg.train.batch_size,
                                      pin_memory=device.type == "cuda")
    times = []
    for _ in range(epochs):
        _sync(device)
        start = time.perf_counter()
        model.train()
        total = 0.0
        for x, y in train:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            opt.step()
            total += loss.item()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                correct += int((model(x).argmax(1) == y).sum())
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


class EpochTimer(Callback):
    """Wall seconds from on_epoch_start to on_epoch_end (training + validation)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []

    def on_epoch_start(self, trainer, epoch):
        _sync(self.device)
        self.start = time.perf_counter()

    def on_epoch_end(self, trainer, epoch, metrics):
        _sync(self.device)
        self.times.append(time.perf_counter() - self.start)


def trainer_loop(cfg: RunConfig, bundle, device: torch.device, probes: bool) -> list[float]:
    cfg = cfg.with_overrides({"train.probes.enabled": probes, "schedule.name": "none"})
    timer = EpochTimer(device)
    Trainer(cfg, bundle, device=device, callbacks=[timer]).fit()
    return timer.times


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--path", help="HAPT folder or file (default: the bundled sample)")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is a warm-up)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds of (a, b, c)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-examples", type=int, default=None)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for name in args.models:
        cfg = RunConfig().with_overrides({
            "data.source": "hapt", "data.path": args.path, "data.max_examples": args.max_examples,
            "model.name": name, "train.epochs": args.epochs, "train.batch_size": args.batch_size,
            "train.device": str(device)})
        bundle = load(cfg.data)
        runs: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        for _ in range(args.repeats):
            runs["a"] += bare_loop(cfg, bundle, device, args.epochs)[1:]
            runs["b"] += trainer_loop(cfg, bundle, device, probes=False)[1:]
            runs["c"] += trainer_loop(cfg, bundle, device, probes=True)[1:]
        print(f"{name}: {len(bundle.train)} train windows {tuple(bundle.input_shape)}, batch {args.batch_size}, "
              f"{len(runs['a'])} timed epochs each")
        for label, pick in (("fastest", min), ("median", statistics.median)):
            a, b, c = (pick(runs[k]) for k in "abc")
            print(f"  {label:<7} s/epoch a={a:.3f} b={b:.3f} c={c:.3f}; b/a={b / a:.3f} (target <= 1.02) "
                  f"c/a={c / a:.3f} (target <= 1.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
