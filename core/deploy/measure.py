"""What each exported variant costs and how well it still classifies, measured here, plus an
on-device estimate for a few reference targets.

    v = measure_onnx("int8-static", "static int8", path, data, reference, settings)
    v.latency_ms  # {"1": median ms at batch 1, "32": ...}; v.accuracy, v.macro_f1, v.agreement
    est = estimate_device(flops, flash_bytes=..., ram_bytes=..., int8=True, measured_ms=...)

How each figure is made:
- latency: median of `repeats` timed calls after `warmup` untimed ones, on real test windows
  (tiled to 32 for batch 32), torch and ONNX Runtime on the same number of threads
  (torch.set_num_threads = SessionOptions.intra_op_num_threads, inter-op 1).
- peak memory (batch 1): a fresh Python subprocess imports its runtime, resets the kernel's
  peak-RSS mark (/proc/self/clear_refs), loads the artifact and runs it 3 times at batch 1;
  the figure is peak RSS minus RSS before loading: weights + runtime arenas + activations,
  what a process really pays (not the tensor sizes alone). `memory_method` says which.
- accuracy / macro-F1: the run's whole test split; agreement: share of test windows whose
  top-1 class equals the fp32 PyTorch (unfused, eager) model's.
- on-device: flash = weight bytes of the variant; RAM = peak live activation bytes of one
  batch-1 forward, tracked storage by storage (core.profiling.memory.StorageTimeline),
  divided by 4 for static/QAT int8 (activations stored as int8 between operators; dynamic
  int8 keeps fp32 activations). Latency = FLOPs (core.profiling.flops, batch 1) /
  (target FLOP/s x efficiency) from targets.json, an editable table stating its sources.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from core.errors import ConfigError

TARGETS_PATH = Path(__file__).with_name("targets.json")
LATENCY_BATCHES = (1, 32)
EVAL_BATCH = 64


@dataclass
class MeasureSettings:
    """How variants are measured: threads for both runtimes, timing repeats, memory or not."""

    threads: int = 1
    repeats: int = 20
    warmup: int = 3
    memory: bool = True  # the subprocess peak-RSS measurement (about 1-3 s per variant)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EvalData:
    """The run's windows, normalized as the model takes them."""

    test_x: np.ndarray  # (N, *input_shape) float32
    test_y: np.ndarray  # (N,) int
    class_names: list[str]
    train_x: np.ndarray | None = None  # for calibration


# ---------------------------------------------------------------- on-device targets
@dataclass
class Target:
    name: str
    description: str
    fp32_flops_per_s: float
    int8_ops_per_s: float
    efficiency: float
    ram_bytes: int | None
    flash_bytes: int | None
    source: str


def load_targets(path: Path | None = None) -> list[Target]:
    """The reference targets from the editable JSON table (core/deploy/targets.json)."""
    path = Path(path or TARGETS_PATH)
    try:
        rows = json.loads(path.read_text())["targets"]
        return [Target(**{k: row.get(k) for k in Target.__dataclass_fields__}) for row in rows]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a target table ({type(e).__name__}: {e}); each target needs "
                          f"{', '.join(Target.__dataclass_fields__)}") from None


@dataclass
class TargetEstimate:
    target: str
    latency_ms: float
    rate: str  # which throughput was used
    fits_flash: bool | None
    fits_ram: bool | None


@dataclass
class DeviceEstimate:
    """One variant on the reference targets, beside what was measured here."""

    flops: int  # forward at batch 1, FLOPs = 2 x MACs
    flash_bytes: int
    ram_bytes: int
    ram_method: str
    targets: list[TargetEstimate] = field(default_factory=list)
    estimated_here_ms: float | None = None  # same formula with this machine's measured matmul FLOP/s
    measured_here_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_device(flops: int, flash_bytes: int, activation_bytes: int, int8_activations: bool, int8_compute: bool,
                    measured_ms: float | None, threads: int, targets: list[Target] | None = None) -> DeviceEstimate:
    """Flash, RAM and latency of one variant on each reference target (see module docstring)."""
    from core.profiling.latency import EFFICIENCY, estimate_latency_ms, machine_flops_per_s

    ram = int(activation_bytes // 4) if int8_activations else int(activation_bytes)
    method = ("peak live activations of one batch-1 forward (StorageTimeline), / 4 for int8 activations"
              if int8_activations else "peak live activations of one batch-1 forward (StorageTimeline), fp32")
    rows = []
    for t in targets if targets is not None else load_targets():
        rate = t.int8_ops_per_s if int8_compute else t.fp32_flops_per_s
        rows.append(TargetEstimate(target=t.name, latency_ms=flops / (rate * t.efficiency) * 1e3,
                                   rate=f"{'int8' if int8_compute else 'fp32'} {rate:.3g}/s x {t.efficiency:g}",
                                   fits_flash=None if t.flash_bytes is None else flash_bytes <= t.flash_bytes,
                                   fits_ram=None if t.ram_bytes is None else ram <= t.ram_bytes))
    here = estimate_latency_ms(flops, flops_per_s=machine_flops_per_s("cpu", threads=threads), efficiency=EFFICIENCY)
    return DeviceEstimate(flops=int(flops), flash_bytes=int(flash_bytes), ram_bytes=ram, ram_method=method,
                          targets=rows, estimated_here_ms=here, measured_here_ms=measured_ms)


def inference_activation_bytes(model: nn.Module, example: torch.Tensor) -> int:
    """Peak bytes of tensors alive during one inference forward (weights and input excluded)."""
    from core.profiling.memory import StorageTimeline

    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused path hides its temporaries
    try:
        exclude = [*model.parameters(), *model.buffers(), example]
        with torch.no_grad(), StorageTimeline(exclude=exclude) as timeline:
            model(example)
            timeline.finish()
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)
    return int(timeline.peak_bytes)


def model_flops(model: nn.Module, example: torch.Tensor) -> int:
    from core.profiling.flops import count_flops

    was = model.training
    model.eval()
    try:
        return int(count_flops(model, example).total)
    finally:
        model.train(was)


# ---------------------------------------------------------------- sizes
def onnx_weight_bytes(path: Path) -> int:
    """Bytes of the graph's initializers and constant tensors (what a device stores as weights)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    total = sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    total += numpy_helper.to_array(attr.t).nbytes
    return int(total)


def torch_weight_bytes(model: nn.Module) -> int:
    from core.profiling.memory import unique_bytes

    return int(unique_bytes([*model.parameters(), *model.buffers()]))


# ---------------------------------------------------------------- running the runtimes
def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OrtRunner:
    """An ONNX Runtime session as a numpy function (N, ...) -> (N, K)."""

    def __init__(self, path: Path, threads: int) -> None:
        self.session = ort_session(path, threads)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]


class TorchRunner:
    """A torch module as a numpy function, on `threads` threads, without gradients."""

    def __init__(self, module, threads: int) -> None:
        self.module, self.threads = module, int(threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from core.threads import compute_threads

        # a no-op inside measure()'s own block on the same count, so timings do not include it
        with compute_threads(self.threads, purpose="deploy measure"), torch.no_grad():
            return self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    return np.concatenate([fn(x[i:i + batch]) for i in range(0, len(x), batch)]) if len(x) else np.zeros((0, 0))


def median_ms(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, warmup: int, repeats: int) -> float:
    """Median wall time of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def batch_of(x: np.ndarray, n: int) -> np.ndarray:
    """n real windows (tiled when the split has fewer)."""
    reps = -(-n // max(1, len(x)))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:n], dtype=np.float32)


_MEMORY_SCRIPT = r"""
import json, sys
def status():
    out = {}
    with open('/proc/self/status') as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('VmRSS', 'VmHWM'):
                out[key] = int(value.split()[0]) * 1024
    return out
kind, path, shape, threads = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
import numpy as np
if kind == 'onnx':
    import onnxruntime as ort
else:
    import torch
    torch.set_num_threads(threads)
x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
try:
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak-RSS mark to the current RSS
    reset = True
except OSError:
    reset = False
before = status()
if kind == 'onnx':
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: x})
else:
    module = torch.export.load(path).module() if path.endswith('.pt2') else torch.jit.load(path)
    with torch.no_grad():
        for _ in range(3):
            module(torch.from_numpy(x))
after = status()
print(json.dumps({'before': before['VmRSS'], 'peak': after['VmHWM'], 'reset': reset}))
"""


def subprocess_peak_memory(kind: str, path: Path, input_shape: tuple, threads: int) -> tuple[int | None, str]:
    """(bytes, method): peak-RSS growth of a fresh process loading `path` and running it at batch 1."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    try:
        done = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, kind, str(path), json.dumps(list(input_shape)),
                               str(threads)], capture_output=True, text=True, timeout=300, env=env)
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError) as e:
        return None, f"not measured: the measuring subprocess failed ({type(e).__name__})"
    runtime = "ONNX Runtime" if kind == "onnx" else "torch"
    method = (f"peak RSS growth of a fresh process loading the {runtime} artifact and running batch 1 three times "
              "(weights + runtime arena + activations; /proc peak mark reset after imports)")
    if kind != "onnx":
        method += "; for torch this includes the modules torch.export.load imports on first use (~90 MiB), which a " \
                  "process already running torch has paid"
    if not found["reset"]:
        method += "; the peak mark could not be reset, so import-time peaks may hide part of it"
    return max(0, int(found["peak"]) - int(found["before"])), method


# ---------------------------------------------------------------- one variant
@dataclass
class Variant:
    """One exported model, measured on this machine."""

    name: str  # fp32-torch, fp32-onnx, int8-dynamic, int8-static, int8-qat
    label: str
    runtime: str  # "torch" or "onnxruntime"
    file: str  # file name inside the deploy folder
    size_bytes: int
    weight_bytes: int
    latency_ms: dict[str, float]  # batch -> median ms
    peak_memory_bytes: int | None
    memory_method: str
    accuracy: float
    macro_f1: float
    agreement: float  # top-1 agreement with fp32 PyTorch (unfused, eager) on the test split
    n_test: int
    threads: int
    quantized_ops: dict | None = None  # QuantizedOps.to_dict() for int8 variants
    device: DeviceEstimate | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["device"] = self.device.to_dict() if self.device else None
        return out


def scores(logits: np.ndarray, labels: np.ndarray, class_names: list[str]) -> tuple[float, float]:
    """(accuracy, macro-F1) of logits against labels."""
    from core.train.metrics import classification_metrics

    m = classification_metrics(torch.from_numpy(np.asarray(logits, np.float32)), torch.from_numpy(labels).long(),
                               class_names)
    return float(m.scalars["accuracy"]), float(m.scalars["macro_f1"])


def measure(name: str, label: str, runtime: str, path: Path, runner: Callable[[np.ndarray], np.ndarray],
            data: EvalData, reference_top1: np.ndarray, settings: MeasureSettings, weight_bytes: int,
            input_shape: tuple) -> Variant:
    """Accuracy, agreement, latency at batch 1 and 32 and (optionally) peak memory of one variant."""
    from contextlib import nullcontext

    from core.threads import compute_threads

    threads = getattr(runner, "threads", None)  # a TorchRunner: its count, set once for every call below
    with compute_threads(threads, purpose="deploy measure") if threads else nullcontext():
        logits = batched(runner, data.test_x)
        latency = {str(b): median_ms(runner, batch_of(data.test_x, b), settings.warmup, settings.repeats)
                   for b in LATENCY_BATCHES}
    accuracy, f1 = scores(logits, data.test_y, data.class_names)
    agreement = float((logits.argmax(axis=1) == reference_top1).mean()) if len(logits) else float("nan")
    memory, method = (subprocess_peak_memory("onnx" if runtime == "onnxruntime" else "torch", path, input_shape,
                                             settings.threads) if settings.memory else (None, "not measured"))
    return Variant(name=name, label=label, runtime=runtime, file=path.name, size_bytes=path.stat().st_size,
                   weight_bytes=int(weight_bytes), latency_ms=latency, peak_memory_bytes=memory,
                   memory_method=method, accuracy=accuracy, macro_f1=f1, agreement=agreement,
                   n_test=int(len(data.test_y)), threads=settings.threads)


SLOWER_MARGIN = 1.15  # medians of a few repeats on a shared CPU move ~10 % run to run: only a clear gap is "slower"


def slower_notes(variant: Variant, baseline: Variant) -> list[str]:
    """A plain note where an int8 variant runs clearly slower (beyond SLOWER_MARGIN) than the fp32 ONNX one."""
    slower = [f"batch {b}: {ms:.3f} ms vs {baseline.latency_ms[b]:.3f} ms (x{ms / baseline.latency_ms[b]:.2f})"
              for b, ms in variant.latency_ms.items()
              if baseline.latency_ms.get(b) and ms > SLOWER_MARGIN * baseline.latency_ms[b]]
    if not slower:
        return []
    return [f"{variant.label} is SLOWER than fp32 ONNX on this machine ({'; '.join(slower)}): its quantize/dequantize "
            "steps, int8 kernels and remaining fp32 operators cost more than the int8 arithmetic saves at this "
            "model size; its gains here are size (and, on int8 hardware, speed)"]
