"""Classifying with an exported variant of a run (fp32 ONNX, int8 ONNX) instead of its PyTorch model.

    variants = list_variants(run_folder)                  # from runs/<id>/deploy/report.json
    [v.describe() for v in variants]                      # name, runtime, test accuracy, agreement, size
    onnx = load_variant(load_run(run_id), "int8-dynamic")  # a Predictor whose logits come from ONNX Runtime
    pred = classify_file(onnx, "walk.csv")                # the run's own pipeline, the variant's answer
    pred.variant                                          # which variant answered ("" = the PyTorch model)

`core.deploy.export.export_run` writes the variants and measures them; this module only
reads its report.json and the .onnx files. A variant Predictor keeps the run's pipeline
(reading, windowing, features, normalization, class names) and swaps its model for
`OnnxModel`, an nn.Module that runs an ONNX Runtime session, so `Predictor.logits` and
`classify_file` work unchanged. ONNX Runtime has no gradients and no attention capture:
such a Predictor has `has_attention=False` and `variant` set, and classify_file answers
without explanations, saying so (EXPLANATIONS_NEED_PYTORCH). Variants run by torch itself
(`fp32-torch`, a torch.export program) are not listed: the run's own checkpoint is that model.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import ConfigError
from core.infer.loading import Predictor
from core.paths import DEPLOY_DIR
from core.paths import DEPLOY_REPORT as REPORT_FILE

PYTORCH = "pytorch"  # the name that picks the run's own PyTorch model (no exported variant)
ONNX_RUNTIME = "onnxruntime"
EXPLANATIONS_NEED_PYTORCH = (f"explanations need the PyTorch model; pick the fp32 PyTorch variant ('{PYTORCH}') "
                             "to see attention or Grad-CAM and saliency")


@dataclass(frozen=True)
class ExportedVariant:
    """One exported model of a run, as its export report measured it on the run's test split."""

    name: str  # fp32-onnx, int8-dynamic, int8-static, int8-qat
    label: str  # "dynamic int8"
    runtime: str  # "onnxruntime"
    path: Path
    accuracy: float | None  # test accuracy
    agreement: float | None  # top-1 agreement with the fp32 PyTorch model on the test split
    size_bytes: int
    n_test: int

    @property
    def present(self) -> bool:
        return self.path.is_file()

    @property
    def answered_by(self) -> str:
        """What Predictor.variant and Prediction.variant say: "int8-dynamic (dynamic int8, ONNX Runtime)"."""
        return f"{self.name} ({self.label}, ONNX Runtime)"

    def describe(self) -> str:
        """One line for a picker: name, runtime, test accuracy, agreement with PyTorch, size."""
        parts = [self.answered_by]
        if self.accuracy is not None:
            parts.append(f"test acc {self.accuracy:.3f}")
        if self.agreement is not None:
            parts.append(f"agrees with PyTorch on {100 * self.agreement:.1f}%")
        parts.append(_size(self.size_bytes))
        return " · ".join(parts) + ("" if self.present else " · file missing")


def _size(n: int) -> str:
    return f"{n / 2 ** 20:.2f} MiB" if n >= 2 ** 20 else f"{n / 2 ** 10:.0f} KiB"


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def run_folder(predictor: Predictor) -> Path:
    """The run folder of a Predictor loaded from one (its checkpoint is <folder>/checkpoints/*.pt)."""
    if predictor.checkpoint is None:
        raise ConfigError("this model was not loaded from a run folder, so it has no exported variants")
    return Path(predictor.checkpoint).parent.parent


def read_report(folder: str | Path) -> dict | None:
    """The run's deploy/report.json as a dict, None when the run was never exported;
    ConfigError (one line) when it is there but unreadable."""
    path = Path(folder) / DEPLOY_DIR / REPORT_FILE
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
        if not isinstance(report, dict) or not isinstance(report.get("variants", []), list):
            raise ValueError("not an export report")
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:120]}); "
                          "export the run again (python -m core export --run RUN_ID --format onnx)") from None
    return report


def list_variants(folder: str | Path) -> list[ExportedVariant]:
    """The ONNX Runtime variants a run's export report lists, in its order ([] when never exported)."""
    report = read_report(folder)
    if report is None:
        return []
    deploy = Path(folder) / DEPLOY_DIR
    out = []
    for v in report.get("variants", []):
        if not isinstance(v, dict) or v.get("runtime") != ONNX_RUNTIME or not v.get("name") or not v.get("file"):
            continue
        path = deploy / Path(str(v["file"])).name  # a file name inside deploy/, never a path elsewhere
        out.append(ExportedVariant(name=str(v["name"]), label=str(v.get("label") or v["name"]), runtime=ONNX_RUNTIME,
                                   path=path, accuracy=_number(v.get("accuracy")),
                                   agreement=_number(v.get("agreement")), size_bytes=int(v.get("size_bytes") or 0),
                                   n_test=int(v.get("n_test") or 0)))
    return out


def pytorch_accuracy(folder: str | Path) -> float | None:
    """The PyTorch model's test accuracy as the export measured it (None when never exported)."""
    try:
        report = read_report(folder)
    except ConfigError:
        return None
    return _number(((report or {}).get("reference") or {}).get("accuracy"))


def find_variant(folder: str | Path, name: str, run_id: str | None = None) -> ExportedVariant:
    """The variant called `name`; ConfigError listing the run's variants when there is none."""
    variants = list_variants(folder)
    found = next((v for v in variants if v.name == name), None)
    if found is not None:
        return found
    run = f"run {run_id or Path(folder).name}"
    if not variants:
        raise ConfigError(f"{run} has no exported variants ({Path(folder) / DEPLOY_DIR / REPORT_FILE} lists none); "
                          f"export it first: python -m core export --run {run_id or Path(folder).name} "
                          "--format onnx --quantize dynamic")
    names = ", ".join([PYTORCH] + [v.name for v in variants])
    raise ConfigError(f"{run} has no variant {name!r}; its variants are: {names}")


class OnnxModel(nn.Module):
    """An ONNX Runtime session as an nn.Module: forward takes and returns torch tensors,
    so code that calls `predictor.model(x)` runs the exported model. No gradients flow
    through it (the session works on numpy) and it has no parameters."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    @property
    def input_dims(self) -> list:
        """The session input's dims: an int for a fixed axis, a name (or None) for a dynamic one."""
        return list(self.session.get_inputs()[0].shape)

    @property
    def output_dims(self) -> list:
        return list(self.session.get_outputs()[0].shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, *input_shape) -> (B, K)
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)

    def nonfinite_weights(self) -> list[str]:
        """Names of the file's float initializers (weights) that hold NaN/inf."""
        import onnx
        from onnx import numpy_helper

        bad = []
        for tensor in onnx.load(str(self.path)).graph.initializer:
            values = numpy_helper.to_array(tensor)
            if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
                bad.append(tensor.name)
        return bad

    def __deepcopy__(self, memo):  # an InferenceSession is not copyable; sharing it is safe (run is thread-safe)
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            clone.__dict__[key] = value if key == "session" else copy.deepcopy(value, memo)
        return clone

    def extra_repr(self) -> str:
        return f"{self.path.name}, input {self.input_dims}"


def _fixed_dims_fit(dims: list, expected: tuple[int, ...]) -> bool:
    return len(dims) == len(expected) and all(not isinstance(d, int) or d == e for d, e in zip(dims, expected))


def load_variant(predictor: Predictor, name: str, threads: int | None = None) -> Predictor:
    """`predictor` answering with its run's exported variant `name` (see list_variants):
    the same pipeline, logits from ONNX Runtime on `threads` threads (default torch's),
    `variant` set, no attention. `name` "pytorch" (or "") gives `predictor` back.
    ConfigError (one line) for an unknown name, a missing or damaged .onnx, or a file that
    does not fit the run (its input shape or class count)."""
    if name in ("", PYTORCH):
        return predictor
    folder = run_folder(predictor)
    variant = find_variant(folder, name, predictor.run_id)
    report = read_report(folder) or {}
    if report.get("run_id") not in (None, predictor.run_id):
        raise ConfigError(f"{folder / DEPLOY_DIR} was exported from run {report.get('run_id')}, not "
                          f"{predictor.run_id}; export this run again")
    again = f"export the run again (python -m core export --run {predictor.run_id} --format onnx)"
    if not variant.present:
        raise ConfigError(f"variant {name}: {variant.path} is missing; {again}")
    try:
        model = OnnxModel(variant.path, threads)
    except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types for a damaged file
        reason = " ".join(str(e).split())[:160]
        raise ConfigError(f"variant {name}: ONNX Runtime cannot load {variant.path} ({type(e).__name__}: "
                          f"{reason}); {again}") from None
    shape, classes = tuple(predictor.input_shape), len(predictor.class_names)
    inputs, outputs = model.input_dims, model.output_dims
    if isinstance(inputs[0] if inputs else None, int) or not _fixed_dims_fit(inputs[1:], shape) \
            or not _fixed_dims_fit(outputs[1:], (classes,)):
        raise ConfigError(f"variant {name}: {variant.path.name} takes {inputs} and gives {outputs}, but the run's "
                          f"model takes (batch, {', '.join(map(str, shape))}) and gives {classes} classes; {again}")
    return dataclasses.replace(predictor, model=model, has_attention=False, variant=variant.answered_by)


def explainable(predictor: Predictor) -> bool:
    """Whether attention, Grad-CAM and saliency can be computed: not for an exported variant."""
    return not getattr(predictor, "variant", "")


def nonfinite_variant_logits(predictor: Predictor, where: str, peak: float) -> str:
    """Why an exported variant gave NaN/inf logits from finite inputs: weights in its file, or its arithmetic."""
    again = f"export the run again (python -m core export --run {predictor.run_id} --format onnx)"
    model = predictor.model
    try:
        bad = model.nonfinite_weights() if isinstance(model, OnnxModel) else []
    except Exception:  # noqa: BLE001 - a file that cannot be read again says nothing more than the logits did
        bad = []
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        return (f"{where}: the exported variant {predictor.variant} gave non-finite logits; its file's weights hold "
                f"NaN/inf ({bad[0]}{more}) — the file is damaged: {again}, or pick the '{PYTORCH}' variant")
    return (f"{where}: the exported variant {predictor.variant} gave non-finite logits from finite inputs (largest "
            f"|input| {peak:.3g} after normalization); compare with the '{PYTORCH}' variant on this file — if it "
            f"answers, the export is at fault: {again}")
