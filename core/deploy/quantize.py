"""int8 variants of an exported ONNX model with onnxruntime.quantization, and the export's
choices (ExportFormat, QuantMode: the one place the CLI and the engine read them from).

    modes = parse_modes(["dynamic,static"])                        # [QuantMode.DYNAMIC, QuantMode.STATIC]
    q = quantize_dynamic_int8(Path("model.onnx"), Path("model.int8-dynamic.onnx"))
    q = quantize_static_int8(Path("model.onnx"), Path("model.int8-static.onnx"), train_windows)
    q.ops.quantized      # {"Conv": 15, "Gemm": 1}: which operators run in int8

- dynamic: weights int8 ahead of time, activations quantized on the fly per batch
  (`quantize_dynamic`: ConvInteger / MatMulInteger / DynamicQuantizeLinear). No calibration.
- static: weights int8 per output channel, activation ranges calibrated on the run's
  TRAINING windows (`quantize_static`, QuantFormat.QDQ, per_channel=True, MinMax): the graph
  holds QuantizeLinear -> DequantizeLinear pairs around each quantized operator, which ONNX
  Runtime fuses into QLinearConv / QLinearMatMul kernels when the session is built.
- qat: the static recipe applied to a quantization-aware fine-tuned copy (core.deploy.qat).

Before quantizing, the exporter's intermediate shape annotations are dropped (the dynamo
exporter's value_info made ONNX's strict shape inference fail inside `quantize_dynamic` on the
transformer models) and `quant_pre_process` runs (symbolic shape inference + ONNX optimizer);
where its symbolic shape inference fails (it does on the attention models), it runs without
it, and where the whole pre-processing fails the model is quantized as exported. The step
taken is recorded in `QuantizedModel.preprocess`.
"""
from __future__ import annotations

import collections
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Iterable

import numpy as np

from core.errors import ConfigError

DEFAULT_CALIBRATION = 256  # training windows the static ranges are calibrated on
CALIBRATION_BATCH = 16
CALIBRATION_SEED = 0


# ---------------------------------------------------------------- the choices (one place)
# Both live here, in a module that does not import torch, because the CLI builds its parser
# from them at every start (core/__main__.py imports every sub-command module).
class ExportFormat(str, Enum):
    """What an export writes (the CLI's --format reads this)."""

    ONNX = "onnx"  # model.onnx, for ONNX Runtime (and every int8 variant)
    TORCH = "torch"  # model.pt2 (torch.export program) or model.ts (TorchScript), for PyTorch users


class QuantMode(str, Enum):
    """The int8 variants an export can add (the CLI's --quantize reads this)."""

    NONE = "none"
    DYNAMIC = "dynamic"
    STATIC = "static"
    QAT = "qat"


def parse_choices(values: Iterable[str] | str | None, enum: type[Enum], option: str) -> list:
    """Repeated and/or comma-separated values -> enum members, in order, without duplicates."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    allowed = [m.value for m in enum]
    out = []
    for raw in values:
        for part in str(raw).split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part not in allowed:
                raise ConfigError(f"{option} {part!r} is not one of: {', '.join(allowed)}")
            member = enum(part)
            if member not in out:
                out.append(member)
    return out


def parse_formats(values: Iterable[str] | str | None) -> list[ExportFormat]:
    """--format values -> the artifacts to write (default: all of them)."""
    formats = parse_choices(values, ExportFormat, "--format")
    return formats or list(ExportFormat)


def parse_modes(values: Iterable[str] | str | None) -> list[QuantMode]:
    """--quantize values -> the int8 modes asked for ("none" alone, or nothing, means none)."""
    modes = parse_choices(values, QuantMode, "--quantize")
    if QuantMode.NONE in modes and len(modes) > 1:
        raise ConfigError("--quantize none cannot be combined with other modes; give the modes you want, "
                          "e.g. --quantize dynamic,static")
    return [m for m in modes if m is not QuantMode.NONE]


def check_calibration(size: int, n_train: int) -> None:
    """A calibration set is a subset of the training split: refuse one larger than it."""
    if int(size) < 1:
        raise ConfigError(f"--calibration {size}: calibrate on at least 1 training window")
    if int(size) > int(n_train):
        raise ConfigError(f"--calibration {size} is larger than the run's training split ({n_train} windows); "
                          f"give --calibration {n_train} or fewer")


def calibration_windows(train_x: np.ndarray, size: int) -> np.ndarray:
    """`size` training windows drawn without replacement (a fixed seed: the same export twice
    calibrates alike)."""
    check_calibration(size, len(train_x))
    order = np.random.default_rng(CALIBRATION_SEED).permutation(len(train_x))[:int(size)]
    return np.ascontiguousarray(train_x[np.sort(order)], dtype=np.float32)


def _calibration_reader(input_name: str, windows: np.ndarray, batch: int = CALIBRATION_BATCH):
    from onnxruntime.quantization import CalibrationDataReader

    class WindowReader(CalibrationDataReader):
        """Feeds normalized model inputs to the calibrator in batches."""

        def __init__(self) -> None:
            self._batches = iter([{input_name: windows[i:i + batch]} for i in range(0, len(windows), batch)])

        def get_next(self):
            return next(self._batches, None)

    return WindowReader()


# ---------------------------------------------------------------- which operators run in int8
QUANTIZED_KERNELS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM",
                     "DynamicQuantizeMatMul", "QAttention", "QGemm", "MatMulIntegerToFloat")
COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", "LSTM", "GRU", "RNN", "Attention",
               "MultiHeadAttention")


@dataclass
class QuantizedOps:
    """What a graph computes in int8. `quantized`: per operator type, how many run in int8
    (integer kernels by name; in a QDQ graph, a compute op whose weight and activation
    inputs both come from DequantizeLinear); `float_compute`: compute ops left in fp32;
    `op_counts`: every node type in the graph."""

    quantized: dict[str, int] = field(default_factory=dict)
    float_compute: dict[str, int] = field(default_factory=dict)
    op_counts: dict[str, int] = field(default_factory=dict)
    qdq_pairs: int = 0  # QuantizeLinear nodes feeding a DequantizeLinear

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        q = ", ".join(f"{k} x{v}" for k, v in sorted(self.quantized.items())) or "nothing"
        f = ", ".join(f"{k} x{v}" for k, v in sorted(self.float_compute.items()))
        return f"int8: {q}" + (f"; still fp32: {f}" if f else "")


def quantized_ops(path: Path) -> QuantizedOps:
    """Count what the quantized graph at `path` computes in int8 (see QuantizedOps)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    counts = collections.Counter(n.op_type for n in graph.node)
    producer = {out: n for n in graph.node for out in n.output}
    quantized: collections.Counter = collections.Counter()
    float_compute: collections.Counter = collections.Counter()
    for n in graph.node:
        if n.op_type in QUANTIZED_KERNELS:
            quantized[n.op_type] += 1
        elif n.op_type in COMPUTE_OPS:
            # inputs 0 and 1: activation and weight (Conv, MatMul, Gemm); both dequantized = int8 kernel
            sources = [producer.get(name) for name in list(n.input)[:2]]
            if len(sources) == 2 and all(s is not None and s.op_type == "DequantizeLinear" for s in sources):
                quantized[n.op_type] += 1
            else:
                float_compute[n.op_type] += 1
    pairs = sum(1 for n in graph.node if n.op_type == "DequantizeLinear" and producer.get(n.input[0]) is not None
                and producer[n.input[0]].op_type == "QuantizeLinear")
    return QuantizedOps(quantized=dict(quantized), float_compute=dict(float_compute), op_counts=dict(counts),
                        qdq_pairs=pairs)


# ---------------------------------------------------------------- quantizing
@dataclass
class QuantizedModel:
    mode: str
    path: Path
    preprocess: str  # which pre-processing ran (see module docstring)
    ops: QuantizedOps
    calibration_windows: int = 0

    def to_dict(self) -> dict:
        return {"mode": self.mode, "path": self.path.name, "preprocess": self.preprocess, "ops": self.ops.to_dict(),
                "calibration_windows": self.calibration_windows}


def _quiet():
    """onnxruntime.quantization logs a line per node at INFO/WARNING through the root logger."""
    class _Quiet:
        def __enter__(self):
            self.level = logging.root.level
            logging.root.setLevel(logging.ERROR)

        def __exit__(self, *exc):
            logging.root.setLevel(self.level)

    return _Quiet()


def preprocess(src: Path, dst: Path) -> str:
    """Strip value_info, then quant_pre_process (with, else without, symbolic shape inference);
    writes `dst` and says which step ran."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(src))
    del model.graph.value_info[:]
    stripped = dst.with_name(dst.stem + ".stripped.onnx")
    onnx.save(model, str(stripped))
    try:
        steps = ((False, "quant_pre_process"),
                 (True, "quant_pre_process without symbolic shape inference (it failed on this graph)"))
        for skip_symbolic, text in steps:
            try:
                with _quiet():
                    quant_pre_process(str(stripped), str(dst), skip_symbolic_shape=skip_symbolic)
                return text
            except Exception:  # noqa: BLE001 - ORT's shape tools fail on some exporter graphs: try the next step
                continue
        onnx.save(model, str(dst))
        return "none (quant_pre_process failed on this graph; quantized as exported, without value_info)"
    finally:
        stripped.unlink(missing_ok=True)


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def quantize_dynamic_int8(src: Path, dst: Path) -> QuantizedModel:
    """Dynamic int8: int8 weights, activations quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="sigscope-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        how = preprocess(src, pre)
        with _quiet():
            quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=False)
    return QuantizedModel("dynamic", dst, how, quantized_ops(dst))


def quantize_static_int8(src: Path, dst: Path, calibration: np.ndarray,
                         batch: int = CALIBRATION_BATCH) -> QuantizedModel:
    """Static int8 (QDQ, per-channel weights, MinMax activation ranges from `calibration`:
    normalized training windows (N, *input_shape))."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if len(calibration) == 0:
        raise ConfigError("static quantization needs at least one calibration window")
    with tempfile.TemporaryDirectory(prefix="sigscope-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        how = preprocess(src, pre)
        reader = _calibration_reader(_input_name(pre), np.asarray(calibration, np.float32), batch)
        with _quiet():
            quantize_static(str(pre), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            # uint8 activations x int8 weights (U8S8): ORT's recommended pairing on x86 CPUs
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            calibration_providers=["CPUExecutionProvider"])
    return QuantizedModel("static", dst, how, quantized_ops(dst), calibration_windows=len(calibration))
