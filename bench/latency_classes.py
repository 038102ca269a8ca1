"""Latency from per-operator-class throughput: how far one rate per class gets (an experiment
towards issue 20's "estimates that hold"; the profile card still uses FLOPs / peak x EFFICIENCY).

Once per process, the median wall time of a representative op per class gives its rate:
matmul (2048x128 @ 128x128), dense conv (Conv1d 64->64, k 7, on 32x64x128), depthwise conv (the
same with groups 64), recurrent (LSTM 64->128 over 32x64x64), element-wise (relu, gelu, add, mul,
sigmoid on 32x64x128; elements per second) and the fixed cost of one module call (50 ReLUs on a
1x1 tensor). Each zoo model's forward is counted by core.profiling.flops (matmul and attention
FLOPs, dense and depthwise conv FLOPs, recurrent FLOPs, element-wise output elements, calls) and
estimate = sum(work / rate) + calls x per-call cost, against the median wall time of forwards at
the same batch (core.profiling.latency.measure_latency_ms): the same statistic on both sides.

    .venv/bin/python bench/latency_classes.py [BATCH]          # default batch 32

Measured 2026-12-07 on the 2-core machine with a sweep running beside it (batch 32, one
thread): estimate/measured median 0.97, range 0.28 (minirocket, whose convolutions are float64)
to 1.72 (meg_resnet, whose 256-channel convs run at about twice the 64-channel benchmark's rate);
5 of 12 models within +-25 %. At batch 8 the median falls to 0.41 (1 of 12 within +-25 %): the
small ops run far below the representative ones' rates. One rate per class does not hold across
the zoo's op sizes and batches; a rate that depends on the op's size is the next thing to try.
"""
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from core.models.registry import create, list_models, spec  # noqa: E402
from core.profiling.flops import by_category, count_flops  # noqa: E402
from core.profiling.latency import measure_latency_ms  # noqa: E402

CLASSES = ("matmul", "conv", "depthwise", "recurrent", "elementwise")


def median_seconds(fn, warmup: int = 3, repeats: int = 15) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def rates() -> dict[str, float]:
    """Work per second of each class's representative op, and seconds per module call."""
    a, b = torch.randn(2048, 128), torch.randn(128, 128)
    x = torch.randn(32, 64, 128)
    conv = nn.Conv1d(64, 64, 7, padding=3)
    depthwise = nn.Conv1d(64, 64, 7, padding=3, groups=64)
    lstm, seq = nn.LSTM(64, 128, batch_first=True), torch.randn(32, 64, 64)
    elementwise = [torch.relu, nn.functional.gelu, lambda t: t + t, lambda t: t * 0.5, torch.sigmoid]
    tiny, one = nn.Sequential(*[nn.ReLU() for _ in range(50)]), torch.randn(1, 1)
    return {"matmul": 2 * 2048 * 128 * 128 / median_seconds(lambda: a @ b),
            "conv": 2 * 32 * 64 * 64 * 7 * 128 / median_seconds(lambda: conv(x)),
            "depthwise": 2 * 32 * 64 * 7 * 128 / median_seconds(lambda: depthwise(x)),
            "recurrent": 2 * 32 * 64 * (4 * 128 * 64 + 4 * 128 * 128) / median_seconds(lambda: lstm(seq)),
            "elementwise": x.numel() * len(elementwise) / median_seconds(lambda: [f(x) for f in elementwise]),
            "per_call": median_seconds(lambda: tiny(one)) / 50}


def work(model: nn.Module, shape: tuple, batch: int) -> dict[str, float]:
    """The forward's work per class at `batch` (FLOPs; element-wise: output elements; calls)."""
    model.eval()
    counted = count_flops(model, torch.randn(batch, *shape))
    category = by_category(counted.by_operator)
    depthwise = sum(counted.by_module.get(name, 0) for name, m in model.named_modules()
                    if isinstance(m, nn.Conv1d) and m.groups > 1 and m.groups == m.in_channels)
    leaves_with_weights = sum(1 for m in model.modules()
                              if not list(m.children()) and any(True for _ in m.parameters(recurse=False)))
    return {"matmul": category.get("matmul", 0) + category.get("attention", 0),
            "conv": category.get("conv", 0) - depthwise, "depthwise": depthwise,
            "recurrent": category.get("recurrent", 0),
            "elementwise": sum(e for _, e in counted.skipped.values()) + category.get("norm", 0) / 10,
            "calls": sum(c for c, _ in counted.skipped.values()) + leaves_with_weights}


def main() -> int:
    torch.set_num_threads(1)
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    rate = rates()
    print("rates: " + ", ".join(f"{k} {v:.3g}" for k, v in rate.items()))
    ratios = []
    for name in list_models():
        s = spec(name)
        torch.manual_seed(0)
        model = create(name, s.default_input)
        w = work(model, s.default_input, batch)
        parts = {k: w[k] / rate[k] * 1e3 for k in CLASSES}
        parts["calls"] = w["calls"] * rate["per_call"] * 1e3
        estimate = sum(parts.values())
        measured = measure_latency_ms(model, s.default_input, batch)
        ratios.append(estimate / measured)
        print(f"{name:24s} estimate {estimate:8.2f} ms  measured {measured:8.2f} ms  ratio {estimate / measured:5.2f}  "
              + " ".join(f"{k}={v:.2f}" for k, v in parts.items() if v))
    within = sum(abs(r - 1) <= 0.25 for r in ratios)
    print(f"estimate/measured median {statistics.median(ratios):.2f}, range {min(ratios):.2f}..{max(ratios):.2f}; "
          f"{within} of {len(ratios)} within +-25 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
