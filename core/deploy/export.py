"""Export a finished run: ONNX (dynamo exporter) and a torch.export program, Conv+BN folded,
parity-checked against the PyTorch model, optionally int8 variants, each one measured.

    report = export_run("demo-imu-run-id", quantize=["dynamic", "static"], calibration=256)
    report.folder                  # runs/<id>/deploy/ : model.onnx, model.pt2, model.int8-*.onnx, report.json
    report.variants[0].to_dict()   # size, latency b1/b32, memory, accuracy, macro-F1, agreement, device estimate

    exported = export_model(model, windows, folder)   # the same for any nn.Module (no run needed)

What happens, in order:
1. Conv1d/Conv2d + BatchNorm pairs are folded (`fold_conv_bn`): candidate pairs are found by
   running the model once with hooks (a BatchNorm whose input IS the tensor a conv returned),
   each fold is kept only when the model's output stays equal (a conv whose output is also
   used elsewhere, e.g. by a skip connection, is left alone), and the folded model's largest
   difference from the unfused one is reported.
2. `torch.export` with a dynamic batch axis and, where the model allows, a dynamic time axis;
   where it refuses (a learned positional embedding, an LSTM that specializes its length...)
   the time axis is fixed and the exporter's reason recorded. If torch.export cannot trace the
   model at all, the PyTorch artifact is TorchScript (torch.jit.trace) instead.
3. ONNX through `torch.onnx.export(program, dynamo=True)`; an operator the exporter cannot
   translate refuses the ONNX export with the operator's name and the path that supports it.
4. Parity, always: the ONNX model (ONNX Runtime) and the PyTorch artifact against the unfused
   eager model on the run's own test windows, at batch 1 and a full batch, and at several
   sequence lengths when the time axis is dynamic (the dynamo exporter has shipped silent
   LSTM/GRU mistakes). A difference beyond PARITY_TOLERANCE refuses the export with the numbers.
5. int8 variants (core.deploy.quantize) and measurements (core.deploy.measure).
Everything is written into a temporary folder inside the run folder and renamed to deploy/
at the end, so a refused or failed export leaves nothing half-written.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import re
import shutil
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from core.deploy.measure import (EvalData, MeasureSettings, OrtRunner, TorchRunner, Variant, batched,
                                 estimate_device, inference_activation_bytes, load_targets, measure, model_flops,
                                 onnx_weight_bytes, scores, slower_notes, torch_weight_bytes)
from core.deploy.quantize import (DEFAULT_CALIBRATION, ExportFormat, QuantMode, calibration_windows,  # noqa: F401
                                  check_calibration, parse_choices, parse_formats, parse_modes,
                                  quantize_dynamic_int8, quantize_static_int8)
from core.errors import ConfigError, SigscopeError
from core.paths import DEPLOY_DIR
from core.paths import DEPLOY_REPORT as REPORT_FILE

Progress = Callable[[float, str], None]

PARITY_TOLERANCE = 1e-3  # max |logit difference| allowed, relative to the largest |logit| (at least 1)
PARITY_WINDOWS = 64  # test windows the parity check runs on
FOLD_TOLERANCE = 1e-4  # a fold that moves the output more than this (relative) is undone
INPUT_NAME, OUTPUT_NAME = "input", "logits"


class ExportError(SigscopeError):
    """An export was refused: parity failed, or an operator cannot be exported to the format."""


def _report(progress: Progress | None, fraction: float, text: str) -> None:
    if progress is not None:
        progress(float(min(1.0, max(0.0, fraction))), text)


def _scaled(progress: Progress | None, start: float, end: float) -> Progress | None:
    if progress is None:
        return None
    return lambda f, text: progress(start + (end - start) * float(f), text)


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporters print progress to stdout and log warnings; keep the CLI's output clean."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------- Conv + BN folding
@dataclass
class FoldReport:
    folded: list[str] = field(default_factory=list)  # "conv <- bn"
    skipped: list[str] = field(default_factory=list)  # "conv <- bn: why"
    max_abs_diff: float = 0.0  # folded vs unfused model, on the example windows

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_bn_candidates(model: nn.Module, example: torch.Tensor) -> tuple[list[tuple[str, str]], list[str]]:
    """(conv, bn) module paths where the BatchNorm's input is the very tensor the conv returned."""
    names = {m: n for n, m in model.named_modules()}
    conv_out: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # outputs stay alive so their ids stay unique during the pass
    calls: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []

    def on_conv(module, args, out):
        calls[names[module]] = calls.get(names[module], 0) + 1
        conv_out[id(out)] = names[module]
        keep.append(out)

    def on_bn(module, args):
        calls[names[module]] = calls.get(names[module], 0) + 1
        source = conv_out.get(id(args[0])) if args else None
        if source is not None:
            pairs.append((source, names[module]))

    handles = []
    for module, name in names.items():
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            handles.append(module.register_forward_hook(on_conv))
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            handles.append(module.register_forward_pre_hook(on_bn))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    out, skipped = [], []
    for conv_name, bn_name in dict.fromkeys(pairs):
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        why = ""
        if calls.get(conv_name, 0) != 1 or calls.get(bn_name, 0) != 1:
            why = "a module called more than once (shared weights)"
        elif bn.running_mean is None or bn.running_var is None:
            why = "BatchNorm without running statistics"
        elif bn.num_features != conv.out_channels:
            why = "channel counts differ"
        if why:
            skipped.append(f"{conv_name} <- {bn_name}: {why}")
        else:
            out.append((conv_name, bn_name))
    return out, skipped


def _set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def fold_conv_bn(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, FoldReport]:
    """An eval-mode copy of `model` with each Conv1d/Conv2d -> BatchNorm pair folded into the
    conv (the BatchNorm replaced by Identity), checked equal to the unfused model on `example`.
    What is not foldable stays as it is and is listed under `skipped`."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        reference = folded(example)
    scale = max(1.0, float(reference.abs().max()))
    report = FoldReport()
    candidates, report.skipped = _conv_bn_candidates(folded, example)
    for conv_name, bn_name in candidates:
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        _set_module(folded, conv_name, fuse_conv_bn_eval(conv, bn))
        _set_module(folded, bn_name, nn.Identity())
        with torch.no_grad():
            diff = _max_diff(folded(example), reference)
        if diff > FOLD_TOLERANCE * scale:  # the conv's output feeds something besides the BatchNorm
            _set_module(folded, conv_name, conv)
            _set_module(folded, bn_name, bn)
            report.skipped.append(f"{conv_name} <- {bn_name}: folding changed the output by {diff:.2e} "
                                  "(the conv's output is used elsewhere too)")
        else:
            report.folded.append(f"{conv_name} <- {bn_name}")
    with torch.no_grad():
        report.max_abs_diff = _max_diff(folded(example), reference)
    return folded, report


# ---------------------------------------------------------------- torch.export with dynamic axes
@dataclass
class TimeAxis:
    """Whether the exported models take any window length, and why not when they don't."""

    dynamic: bool
    length: int  # the length exported (and checked) at
    low: int | None = None  # the range torch.export was told, when dynamic
    high: int | None = None
    reason: str = ""  # why the time axis is fixed

    def to_dict(self) -> dict:
        return asdict(self)


RECURRENT = (nn.LSTM, nn.GRU, nn.RNN)
RECURRENT_REASON = ("recurrent layers (LSTM/GRU) are traced step by step by torch.export, which specializes the "
                    "time axis to the exported length (measured on torch 2.13: the attempt takes ~15 s and fails "
                    "with 'specialized it to be a constant'), so it is not attempted; "
                    "export_model(..., dynamic_time='try') attempts it anyway")
FIXED_ASKED = "a fixed time axis was asked for"


def _program(model: nn.Module, example: torch.Tensor, time_low: int, time_high: int, dynamic_time: str = "auto"):
    """(ExportedProgram or None, TimeAxis, batch_dynamic, why torch.export failed entirely).

    dynamic_time: "try" attempts a dynamic time axis; "auto" too, except for models with
    recurrent layers (see RECURRENT_REASON); "off" exports a fixed time axis."""
    from torch.export import Dim

    length = int(example.shape[-1])
    batch = Dim("batch", min=1, max=1 << 16)
    time = Dim("time", min=time_low, max=time_high)
    attempts = [({0: batch, example.dim() - 1: time}, True), ({0: batch}, False), (None, False)]
    failures: list[str] = []
    time_reason = ""  # why the dynamic-time attempt was skipped, when it was
    if dynamic_time == "off":
        attempts, time_reason = attempts[1:], FIXED_ASKED
    elif dynamic_time == "auto" and any(isinstance(m, RECURRENT) for m in model.modules()):
        attempts, time_reason = attempts[1:], RECURRENT_REASON
    for shapes, time_dynamic in attempts:
        try:
            with _quiet_exporter():
                program = torch.export.export(model, (example,), dynamic_shapes=(shapes,) if shapes else None)
        except Exception as e:  # noqa: BLE001 - torch.export fails in many ways; the reason is recorded
            failures.append(_one_line(f"{type(e).__name__}: {e}"))
            continue
        reason = "" if time_dynamic else _fixed_time_reason(model, example, time_reason or failures[0])
        if shapes is None and failures:
            reason += f"; a dynamic batch axis failed too: {failures[-1]}"
        axis = TimeAxis(dynamic=time_dynamic, length=length, low=time_low if time_dynamic else None,
                        high=time_high if time_dynamic else None, reason=reason)
        return program, axis, shapes is not None, ""
    return None, TimeAxis(False, length, reason=f"torch.export failed: {failures[-1]}"), False, failures[-1]


def _fixed_time_reason(model: nn.Module, example: torch.Tensor, failure: str) -> str:
    """Why the time axis could not stay dynamic: the model's own refusal of another length when
    it has one (e.g. a learned positional embedding), else what torch.export said."""
    longer = torch.cat([example, example], dim=-1)
    try:
        with torch.no_grad():
            model(longer)
    except Exception as e:  # noqa: BLE001 - the model's own message is the clearest reason
        return f"the model takes only {example.shape[-1]} steps: {_one_line(e, 220)}"
    if failure in (RECURRENT_REASON, FIXED_ASKED):
        return failure
    found = re.search(r"specialized it to be a constant \((\d+)\)", failure)
    if found:
        return (f"torch.export specialized the time axis to {found.group(1)} steps: the traced code depends on the "
                "exact length (recurrent layers such as LSTM/GRU do under torch.export), although the eager model "
                "runs at other lengths")
    return f"torch.export could not keep the time axis dynamic: {failure}"


# ---------------------------------------------------------------- parity
@dataclass
class ParityCheck:
    length: int
    batch: int
    max_abs_diff: float
    agreement: float


@dataclass
class Parity:
    """An artifact's outputs against the eager PyTorch model on the same windows."""

    artifact: str  # "onnx" or "torch"
    tolerance: float  # absolute, for these logits
    max_abs_diff: float
    top1_agreement: float
    n_windows: int
    checks: list[ParityCheck]
    passed: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        where = ", ".join(f"T={c.length} b={c.batch}: {c.max_abs_diff:.2e}" for c in self.checks)
        return (f"{self.artifact}: max |logit diff| {self.max_abs_diff:.2e} (tolerance {self.tolerance:.2e}), "
                f"top-1 agreement {self.top1_agreement:.4f} on {self.n_windows} windows [{where}]"
                + (f"; {'; '.join(self.notes)}" if self.notes else ""))


def windows_at(x: np.ndarray, length: int) -> np.ndarray:
    """Real windows at another length: cropped, or continued with the next window's samples."""
    t = x.shape[-1]
    if length <= t:
        return np.ascontiguousarray(x[..., :length])
    parts = [x] + [x[np.roll(np.arange(len(x)), -k)] for k in range(1, -(-length // t))]
    return np.ascontiguousarray(np.concatenate(parts, axis=-1)[..., :length])


def check_parity(reference: nn.Module, runner: Callable[[np.ndarray], np.ndarray], windows: np.ndarray,
                 lengths: Iterable[int], artifact: str) -> Parity:
    """Compare `runner` (an exported model) with the eager `reference` at each length, at batch 1
    and at the full batch of `windows`."""
    checks: list[ParityCheck] = []
    notes: list[str] = []
    worst, agree, scale = 0.0, [], 1.0
    for length in lengths:
        x = windows_at(windows, int(length))
        try:
            with torch.no_grad():
                ref = reference(torch.from_numpy(x)).float().numpy()
        except Exception as e:  # noqa: BLE001 - the eager model itself refuses this length
            notes.append(f"length {length} skipped: the PyTorch model refuses it ({_one_line(e, 120)})")
            continue
        scale = max(scale, float(np.abs(ref).max()))
        for batch in (1, len(x)):
            target = ref if batch == len(x) else ref[:1]
            try:
                out = np.asarray(runner(x[:batch]), dtype=np.float32)
                if out.shape != target.shape:
                    raise ValueError(f"output shape {out.shape}, PyTorch gives {target.shape}")
            except Exception as e:  # noqa: BLE001 - the artifact fails at this shape: a parity failure
                notes.append(f"length {length}, batch {batch}: the {artifact} model failed ({_one_line(e, 160)})")
                checks.append(ParityCheck(int(length), int(batch), float("inf"), 0.0))
                worst = float("inf")
                continue
            diff = float(np.abs(out - target).max())
            hits = (out.argmax(axis=1) == target.argmax(axis=1))
            checks.append(ParityCheck(int(length), int(batch), diff, float(hits.mean())))
            worst = max(worst, diff if np.isfinite(diff) else float("inf"))
            agree.append(hits)
    tolerance = PARITY_TOLERANCE * scale
    agreement = float(np.concatenate(agree).mean()) if agree else float("nan")
    return Parity(artifact=artifact, tolerance=tolerance, max_abs_diff=worst, top1_agreement=agreement,
                  n_windows=int(len(windows)), checks=checks, passed=bool(checks) and worst <= tolerance, notes=notes)


def require_parity(parity: Parity, what: str) -> None:
    if not parity.passed:
        raise ExportError(f"{what}: the {parity.artifact} export disagrees with the PyTorch model — "
                          f"{parity.text()}; refused, nothing was written. Try --format "
                          f"{'torch' if parity.artifact == 'onnx' else 'onnx'}, or report the model")


def unsupported_operator(error: BaseException) -> str | None:
    """The operator an exporter error names (e.g. "aten.cummax"), if it names one."""
    text = str(error)
    for pattern in (r"OpOverload\(op='([\w.]+)'", r"target=torch\.ops\.([\w.]+?)\.\w+\]?\(",
                    r"(aten[.:]{1,2}\w+)", r"(prims[.:]{1,2}\w+)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1).replace("::", ".")
    return None


# ---------------------------------------------------------------- the artifacts
def write_onnx(source, example: torch.Tensor, path: Path, dynamic_shapes=None) -> Path:
    """torch.onnx.export(dynamo=True) of an ExportedProgram (or a module) to `path`."""
    with _quiet_exporter():
        program = torch.onnx.export(source, (example,), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes, verbose=False)
        program.save(str(path))
    return path


def _name_axes(path: Path, time_dynamic: bool) -> list:
    """Give the input's symbolic axes readable names (batch, time) everywhere in the graph;
    returns the input's dims (a name for a dynamic axis, a size for a fixed one)."""
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    rename = {}
    if dims and dims[0].dim_param:
        rename[dims[0].dim_param] = "batch"
    if time_dynamic and dims[-1].dim_param:
        rename[dims[-1].dim_param] = "time"
    if rename:
        for info in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
            for d in info.type.tensor_type.shape.dim:
                if d.dim_param in rename:
                    d.dim_param = rename[d.dim_param]
        onnx.save(model, str(path))
    return [d.dim_param or d.dim_value for d in dims]


@dataclass
class ModelExport:
    """What `export_model` wrote and checked."""

    onnx: Path | None
    torch: Path | None
    torch_kind: str  # "torch.export" or "torchscript" (or "" when not written)
    time_axis: TimeAxis
    fold: FoldReport
    parity: list[Parity]
    onnx_input: list = field(default_factory=list)  # the ONNX input's dims, names for dynamic axes
    folded_model: nn.Module | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"onnx": self.onnx.name if self.onnx else None, "torch": self.torch.name if self.torch else None,
                "torch_kind": self.torch_kind, "time_axis": self.time_axis.to_dict(), "fold": self.fold.to_dict(),
                "parity": [p.to_dict() for p in self.parity], "onnx_input": self.onnx_input}


def load_torch_artifact(path: Path):
    """The PyTorch artifact as a callable module (a torch.export program's module, or TorchScript)."""
    return torch.export.load(str(path)).module() if path.suffix == ".pt2" else torch.jit.load(str(path))


def export_model(model: nn.Module, windows: np.ndarray, folder: Path,
                 formats: Iterable[ExportFormat | str] = (ExportFormat.ONNX, ExportFormat.TORCH), stem: str = "model",
                 time_range: tuple[int, int] | None = None, what: str = "the model", dynamic_time: str = "auto",
                 progress: Progress | None = None) -> ModelExport:
    """Fold, export and parity-check `model` on `windows` (N, *input_shape), normalized inputs
    (the run's test windows; PARITY_WINDOWS of them are used). Writes `<stem>.onnx` and/or
    `<stem>.pt2` (or `<stem>.ts`) into `folder`; raises ExportError when an artifact cannot be
    made or disagrees with the model (the caller removes `folder`; see export_run).
    dynamic_time: "auto" (try a dynamic time axis unless the model is recurrent), "try", "off"."""
    formats = parse_choices([f.value if isinstance(f, ExportFormat) else f for f in formats], ExportFormat, "--format")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    reference = copy.deepcopy(model).eval()
    windows = np.ascontiguousarray(windows[:PARITY_WINDOWS], dtype=np.float32)
    if len(windows) == 0:
        raise ConfigError(f"{what}: no windows to check the export on")
    example = torch.from_numpy(windows[:2] if len(windows) >= 2 else np.concatenate([windows] * 2))
    length = int(example.shape[-1])
    low, high = time_range or (max(1, length // 2), 8 * length)

    _report(progress, 0.0, "folding Conv + BatchNorm")
    folded, fold = fold_conv_bn(reference, torch.from_numpy(windows))
    _report(progress, 0.15, "torch.export (dynamic batch, trying a dynamic time axis)")
    program, axis, batch_dynamic, export_failure = _program(folded, example, low, high, dynamic_time)
    if program is not None and not batch_dynamic:
        raise ExportError(f"{what}: torch.export could not keep the batch axis dynamic ({axis.reason}); "
                          "an export that takes one fixed batch size is refused")
    lengths = [length, max(low, length // 2), min(high, 2 * length)] if axis.dynamic else [length]

    torch_path, torch_kind, parity = None, "", []
    if ExportFormat.TORCH in formats:
        _report(progress, 0.35, "writing the PyTorch artifact")
        if program is not None:
            torch_path, torch_kind = folder / f"{stem}.pt2", "torch.export"
            torch.export.save(program, str(torch_path))
        else:
            torch_path, torch_kind = folder / f"{stem}.ts", "torchscript"
            try:
                with _quiet_exporter():
                    torch.jit.save(torch.jit.trace(folded, example, check_trace=False), str(torch_path))
            except Exception as e:  # noqa: BLE001
                op = unsupported_operator(e)
                raise ExportError(f"{what}: no PyTorch artifact: torch.export failed ({export_failure}) and "
                                  f"TorchScript tracing failed ({_one_line(e, 200)})"
                                  + (f"; operator {op}" if op else "")
                                  + (" — use --format onnx" if ExportFormat.ONNX not in formats else "")) from None
        torch_runner = TorchRunner(load_torch_artifact(torch_path), threads=torch.get_num_threads())
        parity.append(check_parity(reference, torch_runner, windows, lengths, "torch"))
        require_parity(parity[-1], what)

    onnx_path, onnx_input = None, []
    if ExportFormat.ONNX in formats:
        _report(progress, 0.55, "torch.onnx.export (dynamo)")
        onnx_path = folder / f"{stem}.onnx"
        try:
            if program is not None:
                write_onnx(program, example, onnx_path)
            else:
                from torch.export import Dim
                write_onnx(folded, example, onnx_path, dynamic_shapes=({0: Dim("batch", min=1, max=1 << 16)},))
        except Exception as e:  # noqa: BLE001 - an operator the exporter cannot translate, most often
            op = unsupported_operator(e)
            alternative = ("use --format torch (the torch.export program supports it)" if program is not None
                           else "no format supports this model as it is")
            raise ExportError(f"{what}: ONNX export failed" + (f": operator {op} has no ONNX translation in "
                              f"torch.onnx (dynamo exporter)" if op else f" ({_one_line(e, 200)})")
                              + f"; {alternative}") from None
        onnx_input = _name_axes(onnx_path, axis.dynamic)
        if axis.dynamic and not isinstance(onnx_input[-1], str):
            axis = TimeAxis(False, length, reason="the ONNX exporter fixed the time axis although torch.export "
                                                  "kept it dynamic")
            lengths = [length]
        _report(progress, 0.75, "parity: ONNX Runtime vs PyTorch")
        try:
            runner = OrtRunner(onnx_path, threads=torch.get_num_threads())
        except Exception as e:  # noqa: BLE001 - e.g. an operator ONNX Runtime's CPU provider lacks
            raise ExportError(f"{what}: ONNX Runtime cannot load the exported model ({_one_line(e, 200)}); "
                              "use --format torch") from None
        parity.append(check_parity(reference, runner, windows, lengths, "onnx"))
        require_parity(parity[-1], what)
    _report(progress, 1.0, "exported")
    return ModelExport(onnx=onnx_path, torch=torch_path, torch_kind=torch_kind, time_axis=axis, fold=fold,
                       parity=parity, onnx_input=onnx_input, folded_model=folded)


# ---------------------------------------------------------------- a run, end to end
@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final`, on any error
    it is removed (so `final` is either the old export, untouched, or the complete new one)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}-tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.parent / f".{final.name}-old-{uuid.uuid4().hex[:8]}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


@dataclass
class ExportReport:
    """Everything one export wrote and measured; `to_dict()` is report.json and the CLI's --json."""

    run_id: str | None
    run_name: str
    model: str
    folder: Path
    formats: list[str]
    quantize: list[str]
    input_shape: tuple
    export: ModelExport
    variants: list[Variant]
    settings: MeasureSettings
    reference: dict  # the eager (unfused) PyTorch model's accuracy and macro-F1 on the test split
    calibration: int | None = None
    flops: int = 0
    activation_bytes: int = 0
    qat: dict | None = None
    quantization: list[dict] = field(default_factory=list)
    bundle: Path | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "run_name": self.run_name, "model": self.model, "folder": str(self.folder),
                "formats": self.formats, "quantize": self.quantize, "calibration": self.calibration,
                "input_shape": list(self.input_shape), "export": self.export.to_dict(),
                "reference": self.reference, "flops": self.flops, "activation_bytes": self.activation_bytes,
                "settings": self.settings.to_dict(), "quantization": self.quantization, "qat": self.qat,
                "variants": [v.to_dict() for v in self.variants],
                "targets": [asdict(t) for t in load_targets()],
                "bundle": str(self.bundle) if self.bundle else None, "notes": self.notes}

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)


def resolve_predictor(run, store=None, which: str = "best"):
    """A Predictor for a run id (checking its folder and checkpoint are still there) or itself."""
    from core.infer import load_run
    from core.infer.loading import Predictor

    if isinstance(run, Predictor):
        return run
    from core.store import Store

    store = store or Store()
    row = store.get_run(str(run))
    if row is None:
        raise ConfigError(f"no run {run!r} in {store.path}; see `python -m core runs list`")
    folder = Path(row["run_dir"] or "")
    if not row["run_dir"] or not folder.is_dir():
        raise ConfigError(f"run {run}'s folder {folder} is gone (deleted?): nothing to export; train the run again")
    checkpoints = folder / "checkpoints"
    if not any((checkpoints / f).is_file() for f in ("best.pt", "last.pt")):
        raise ConfigError(f"run {run} ({row['status']}) has no checkpoint in {checkpoints} (best.pt or last.pt): "
                          "nothing to export; wait for its first epoch or train it again")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"run {run}'s {folder / 'config.json'} is missing: its model cannot be rebuilt; "
                          "train the run again")
    return load_run(str(run), store, which=which)


def run_windows(predictor) -> EvalData:
    """The run's own train and test windows, normalized with its stored statistics."""
    from core.data import load
    from core.data.features import featurize_audio
    from core.data.normalize import apply_normalization

    bundle = load(predictor.config.data)
    if list(bundle.class_names) != list(predictor.class_names):
        raise ConfigError(f"run {predictor.run_id}'s data now gives classes {bundle.class_names}, not the "
                          f"{predictor.class_names} it was trained on; the data changed since it was trained")

    def inputs(ds) -> np.ndarray:
        x = featurize_audio(ds.x, predictor.sample_rate, predictor.config.data) if ds.featurize is not None else ds.x
        return np.ascontiguousarray(apply_normalization(x, predictor.normalization), dtype=np.float32)

    if len(bundle.test) == 0:
        raise ConfigError(f"run {predictor.run_id} has no test windows to check and score an export on")
    train_x = inputs(bundle.train) if len(bundle.train) else np.zeros((0, *predictor.input_shape), np.float32)
    return EvalData(test_x=inputs(bundle.test), test_y=np.asarray(bundle.test.y),
                    class_names=list(predictor.class_names), train_x=train_x)


def _time_range(predictor) -> tuple[int, int]:
    from core.models import registry

    length = int(predictor.input_shape[-1])
    low = max(1, length // 2)
    spec = registry.spec(predictor.config.model.name)
    if spec.min_length is not None:
        try:
            low = max(low, int(spec.min_length(spec.resolve(predictor.config.model.hparams, predictor.input_shape))))
        except SigscopeError:
            pass
    return min(low, length), 8 * length


def _bundle_writer():
    try:
        from core.deploy.bundle import write_bundle
    except ImportError as e:
        raise ConfigError(f"--bundle needs core.deploy.bundle.write_bundle, which this install lacks ({e}); "
                          "export without --bundle") from None
    return write_bundle


def _qat_model(predictor, epochs: int, progress: Progress | None):
    try:
        from core.deploy.qat import quantization_aware_finetune
    except ImportError as e:
        raise ConfigError(f"--quantize qat needs core.deploy.qat, which this install lacks ({e}); "
                          "use --quantize static instead") from None
    return quantization_aware_finetune(predictor, epochs=epochs, progress=progress)


def export_run(run, formats: Iterable[str] | str | None = None, quantize: Iterable[str] | str | None = None,
               calibration: int | None = None, bundle: Path | str | None = None, out: Path | str | None = None,
               qat_epochs: int = 3, settings: MeasureSettings | None = None, store=None, which: str = "best",
               progress: Progress | None = None) -> ExportReport:
    """Export a finished run (a run id or a Predictor) into `out` (default runs/<id>/deploy/).

    formats: onnx and/or torch (default both); quantize: dynamic / static / qat (ONNX only);
    calibration: training windows for static/QAT ranges (default min(256, training split));
    bundle: also write the standalone zip (core.deploy.bundle). Refused or failed exports leave
    nothing behind (see atomic_folder)."""
    settings = settings or MeasureSettings()
    fmts = parse_formats(formats)
    modes = parse_modes(quantize)
    if modes and ExportFormat.ONNX not in fmts:
        raise ConfigError(f"--quantize {','.join(m.value for m in modes)} makes ONNX Runtime models: add --format onnx")
    if bundle is not None and ExportFormat.ONNX not in fmts:
        raise ConfigError("--bundle packs model.onnx: add --format onnx")
    if QuantMode.QAT in modes and int(qat_epochs) < 1:
        raise ConfigError(f"--qat-epochs {qat_epochs}: fine-tune for at least 1 epoch")
    write_bundle = _bundle_writer() if bundle is not None else None
    if settings.threads < 1 or settings.repeats < 1 or settings.warmup < 0:
        raise ConfigError(f"threads={settings.threads}, repeats={settings.repeats}, warmup={settings.warmup}: "
                          "give threads >= 1, repeats >= 1, warmup >= 0")

    predictor = resolve_predictor(run, store, which)
    if out is None:
        if predictor.checkpoint is None:
            raise ConfigError("this model has no run folder to export into: pass out=")
        out = Path(predictor.checkpoint).parent.parent / DEPLOY_DIR
    _report(progress, 0.0, "loading the run's windows")
    data = run_windows(predictor)
    needs_calibration = any(m in (QuantMode.STATIC, QuantMode.QAT) for m in modes)
    if calibration is not None:
        check_calibration(int(calibration), len(data.train_x))
    calibration = (int(calibration) if calibration is not None else min(DEFAULT_CALIBRATION, len(data.train_x))) \
        if needs_calibration else None
    if needs_calibration:
        check_calibration(calibration, len(data.train_x))
    what = f"run {predictor.run_id} ({predictor.config.model.name})"
    with atomic_folder(Path(out)) as tmp:
        report = _export_into(tmp, Path(out), predictor, data, fmts, modes, calibration, qat_epochs, settings,
                              what, progress)
        if write_bundle is not None:
            _report(progress, 0.98, "writing the bundle")
            target = Path(bundle).resolve()
            inside = target.is_relative_to(Path(out).resolve())  # written into the new folder, kept by its rename
            written = tmp / target.relative_to(Path(out).resolve()) if inside else target
            written.parent.mkdir(parents=True, exist_ok=True)
            write_bundle(predictor, tmp / "model.onnx", written, _bundle_metrics(report))
            report.bundle = target
        (tmp / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2, default=str))
    _report(progress, 1.0, f"exported to {out}")
    return report


def _bundle_metrics(report: ExportReport) -> dict:
    fp32 = next((v for v in report.variants if v.name == "fp32-onnx"), None)
    return {"run_id": report.run_id, "model": report.model, "test_accuracy": fp32.accuracy if fp32 else None,
            "test_macro_f1": fp32.macro_f1 if fp32 else None, "parity": [p.to_dict() for p in report.export.parity],
            "time_axis": report.export.time_axis.to_dict(), "variants": [v.to_dict() for v in report.variants]}


def _export_into(tmp: Path, final: Path, predictor, data: EvalData, fmts: list[ExportFormat], modes: list[QuantMode],
                 calibration: int | None, qat_epochs: int, settings: MeasureSettings, what: str,
                 progress: Progress | None) -> ExportReport:
    time_range = _time_range(predictor)
    exported = export_model(predictor.model, data.test_x, tmp, fmts, time_range=time_range, what=what,
                            progress=_scaled(progress, 0.02, 0.3))
    folded = exported.folded_model
    example1 = torch.from_numpy(data.test_x[:1])
    flops = model_flops(folded, example1)
    activations = inference_activation_bytes(folded, example1)
    targets = load_targets()

    reference = TorchRunner(copy.deepcopy(predictor.model).eval(), settings.threads)
    reference_logits = batched(reference, data.test_x)
    reference_top1 = reference_logits.argmax(axis=1)
    ref_acc, ref_f1 = scores(reference_logits, data.test_y, data.class_names)

    report = ExportReport(run_id=predictor.run_id, run_name=predictor.run_name, model=predictor.config.model.name,
                          folder=final, formats=[f.value for f in fmts], quantize=[m.value for m in modes],
                          input_shape=tuple(predictor.input_shape), export=exported, variants=[], settings=settings,
                          reference={"accuracy": ref_acc, "macro_f1": ref_f1, "what": "eager PyTorch, unfused"},
                          calibration=calibration, flops=flops, activation_bytes=activations)
    shape = tuple(predictor.input_shape)

    def device(weight_bytes: int, int8: bool, static: bool, ms: float) -> object:
        return estimate_device(flops, weight_bytes, activations, int8_activations=static, int8_compute=int8,
                               measured_ms=ms, threads=settings.threads, targets=targets)

    _report(progress, 0.32, "measuring fp32 variants")
    if exported.torch is not None:
        weights = torch_weight_bytes(folded)
        v = measure("fp32-torch", f"fp32 PyTorch ({exported.torch_kind})", "torch", exported.torch,
                    TorchRunner(load_torch_artifact(exported.torch), settings.threads), data, reference_top1,
                    settings, weights, shape)
        v.device = device(weights, False, False, v.latency_ms["1"])
        report.variants.append(v)
    if exported.onnx is not None:
        weights = onnx_weight_bytes(exported.onnx)
        v = measure("fp32-onnx", "fp32 ONNX", "onnxruntime", exported.onnx, OrtRunner(exported.onnx, settings.threads),
                    data, reference_top1, settings, weights, shape)
        v.device = device(weights, False, False, v.latency_ms["1"])
        report.variants.append(v)

    calib = calibration_windows(data.train_x, calibration) if calibration else None
    steps = {QuantMode.DYNAMIC: 0.1, QuantMode.STATIC: 0.1, QuantMode.QAT: 0.35}
    done = 0.45
    for mode in modes:
        span = steps[mode]
        _report(progress, done, f"{mode.value} int8")
        if mode is QuantMode.DYNAMIC:
            q = _quantized(mode, what, quantize_dynamic_int8, exported.onnx, tmp / "model.int8-dynamic.onnx")
            name, label, static = "int8-dynamic", "dynamic int8", False
        elif mode is QuantMode.STATIC:
            q = _quantized(mode, what, quantize_static_int8, exported.onnx, tmp / "model.int8-static.onnx", calib)
            name, label, static = "int8-static", "static int8", True
        else:
            result = _qat_model(predictor, qat_epochs, _scaled(progress, done, done + span * 0.7))
            scratch = tmp / ".qat"
            qat_export = export_model(result.model, data.test_x, scratch, [ExportFormat.ONNX], stem="qat-fp32",
                                      time_range=time_range, what=f"{what}, QAT fine-tuned")
            q = _quantized(mode, what, quantize_static_int8, qat_export.onnx, tmp / "model.int8-qat.onnx", calib)
            shutil.rmtree(scratch, ignore_errors=True)
            report.qat = {"epochs": qat_epochs, "parity_fp32": [p.to_dict() for p in qat_export.parity],
                          **{k: v for k, v in _plain(result).items() if k != "model"}}
            name, label, static = "int8-qat", "QAT int8", True
        report.quantization.append(q.to_dict())
        weights = onnx_weight_bytes(q.path)
        _report(progress, done + span * 0.8, f"measuring {label}")
        v = measure(name, label, "onnxruntime", q.path, OrtRunner(q.path, settings.threads), data, reference_top1,
                    settings, weights, shape)
        v.quantized_ops = q.ops.to_dict()
        v.device = device(weights, True, static, v.latency_ms["1"])
        v.notes.append(q.ops.text())
        if q.preprocess != "quant_pre_process":
            v.notes.append(f"pre-processing: {q.preprocess}")
        baseline = next((b for b in report.variants if b.name == "fp32-onnx"), None)
        if baseline is not None:
            v.notes += slower_notes(v, baseline)
        report.variants.append(v)
        done += span
    if not exported.time_axis.dynamic:
        report.notes.append(f"fixed time axis ({exported.time_axis.length} steps): {exported.time_axis.reason}")
    return report


def _quantized(mode: QuantMode, what: str, fn, *args):
    try:
        return fn(*args)
    except SigscopeError:
        raise
    except Exception as e:  # noqa: BLE001 - onnxruntime.quantization fails on some graphs
        raise ExportError(f"{what}: {mode.value} int8 quantization failed ({_one_line(e, 200)}); "
                          f"export without --quantize {mode.value}") from None


def _plain(result) -> dict:
    """A QatResult's JSON-able fields (whatever the qat module puts there)."""
    from dataclasses import fields, is_dataclass

    items = {f.name: getattr(result, f.name) for f in fields(result)} if is_dataclass(result) else vars(result)
    return {k: v for k, v in items.items() if isinstance(v, (int, float, str, bool, list, dict, type(None)))}
