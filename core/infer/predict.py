"""Classifying a file with a run (or an ensemble of runs) and explaining where it looked.

    pred = classify_file(predictor, "my_recording.wav", top_k=3)
    pred.label, pred.confidence, pred.top_k                  # the clip's answer
    pred.to_json()                                           # what `python -m core predict --json` prints
    results = classify_files(predictor, paths)               # one dict per file; a bad file -> {"error"}
    pred = classify_bytes(predictor, data, "upload.wav")     # an upload: size-checked, never named on disk

Window probabilities are aggregated into the clip's answer by the mean of log-probabilities
(renormalized, the default) or by majority vote; confidence is the top probability, entropy
is in nats, margin is top-1 minus top-2. An ensemble's window probabilities are the mean of
its members'; the explanation (attention or saliency) is its primary member's, and each
member's own answer is kept in `Prediction.members`. A MiniRocket run has no gradient to read
(its pooling counts threshold crossings): its explanation is the exact decomposition of each
window's logit over time steps, dilations and channels (core/explain_minirocket.py), in
`Prediction.contributions`.

No answer carries a NaN probability: model inputs (after features and normalization),
logits and probabilities are checked finite, and a window that fails is refused naming its
seconds and, for logits, whether the weights or which layer made them non-finite. A signal
that cannot carry information (constant over the whole file in every channel) is still
answered, with a warning in `Prediction.warnings` that the page and the CLI show.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from core.data.features import NonFiniteFeatures
from core.errors import ConfigError, DataError, SigscopeError
from core.explain import LayerAttention, attention_summary, grad_cam, input_saliency, stitch
from core.explain_minirocket import MiniRocketExplanation, explain_minirocket_batch, is_minirocket
from core.infer.ensemble import Ensemble, as_ensemble
from core.infer.loading import BATCH, Predictor, one_blas_thread, softmax
from core.infer.reading import (SILENCE_PEAK, check_upload_size, display_name, error_line, private_copies,
                                read_windows)
from core.infer.variants import EXPLANATIONS_NEED_PYTORCH, explainable, nonfinite_variant_logits

AGGREGATES = ("mean", "vote")
EXPLAIN_MODES = ("auto", "attention", "saliency", "all", "none")


@dataclass(frozen=True)
class ClassTrack:
    """The predicted class over time: at each time the class with the highest mean
    probability over the windows covering it."""

    times: np.ndarray  # (G,) seconds
    classes: np.ndarray  # (G,) class index
    probabilities: np.ndarray  # (G,) its probability


@dataclass
class Prediction:
    """One file's answer. `starts` are sample indices into `signal` ((T,) audio at the run's
    rate, or (T, C) IMU streams laid end to end); `window_probs` (N, K)."""

    file: str
    label: str
    probabilities: dict[str, float]
    top_k: list[tuple[str, float]]
    confidence: float
    entropy: float
    margin: float
    aggregate: str
    signal_kind: str
    sample_rate: float
    duration: float
    window_seconds: float
    hop_seconds: float
    starts: np.ndarray
    window_probs: np.ndarray
    class_names: list[str]
    signal: np.ndarray
    channel_names: list[str]
    window_true: np.ndarray | None = None  # (N,) class index from the CSV's label column, -1 unknown
    streams: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # why the answer may not be trusted (shown before it)
    layers: list[LayerAttention] = field(default_factory=list)
    attention: list[dict] = field(default_factory=list)
    saliency: list[dict] = field(default_factory=list)
    contributions: dict = field(default_factory=dict)  # MiniRocket: the logit over time, dilations, channels
    run_id: str | None = None
    members: list[dict] = field(default_factory=list)  # an ensemble's members: run_id, label, confidence
    variant: str = ""  # the exported variant that answered (core.infer.variants); "" = the PyTorch model

    @property
    def window_labels(self) -> list[str]:
        return [self.class_names[i] for i in self.window_probs.argmax(axis=1)]

    @property
    def window_accuracy(self) -> float | None:
        """Share of windows whose label column agrees with the prediction (None without labels)."""
        if self.window_true is None or not np.any(self.window_true >= 0):
            return None
        known = self.window_true >= 0
        return float(np.mean(self.window_probs.argmax(axis=1)[known] == self.window_true[known]))

    def class_track(self, max_points: int = 1000) -> ClassTrack:
        """The predicted class over time (see ClassTrack)."""
        spans = np.array([[0.0, self.window_seconds]])
        start_s = self.starts / self.sample_rate
        step = min(self.hop_seconds, self.window_seconds) / 4
        curves = [stitch(self.window_probs[:, k:k + 1], spans, start_s, self.duration, max_points, step)
                  for k in range(self.window_probs.shape[1])]
        probs = np.nan_to_num(np.stack([c[1] for c in curves]), nan=0.0)  # (K, G)
        return ClassTrack(curves[0][0], probs.argmax(axis=0), probs.max(axis=0))

    def windows(self) -> list[dict]:
        out = []
        top = self.window_probs.argmax(axis=1)
        for i, s in enumerate(self.starts):
            row = {"start": round(float(s) / self.sample_rate, 4),
                   "end": round(min(float(s) / self.sample_rate + self.window_seconds, self.duration), 4),
                   "label": self.class_names[top[i]], "p": round(float(self.window_probs[i, top[i]]), 4)}
            if self.window_true is not None and self.window_true[i] >= 0:
                row["true"] = self.class_names[self.window_true[i]]
            out.append(row)
        return out

    def to_json(self) -> dict:
        """The CLI's object: file, label, probabilities, top_k, confidence, entropy, margin,
        windows, attention (per layer) or saliency."""
        out = {"file": self.file, "label": self.label, "confidence": round(self.confidence, 4),
               "entropy": round(self.entropy, 4), "margin": round(self.margin, 4),
               "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
               "top_k": [{"label": k, "p": round(v, 4)} for k, v in self.top_k],
               "aggregate": self.aggregate, "duration": round(self.duration, 4),
               "window_seconds": round(self.window_seconds, 4), "hop_seconds": round(self.hop_seconds, 4),
               "windows": self.windows()}
        if self.window_accuracy is not None:
            out["window_accuracy"] = round(self.window_accuracy, 4)
        for key in ("streams", "attention", "saliency", "contributions", "notes", "warnings", "members", "variant"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class Summary:
    """Top-k, confidence, entropy (nats) and margin of one probability vector."""

    label: str
    confidence: float
    entropy: float
    margin: float
    top_k: list[tuple[str, float]]


@dataclass
class WindowOutputs:
    """One model's answers on a file's windows: probabilities (N, K), per-layer attention
    summaries, and the attention/saliency curves stitched over the file."""

    probs: np.ndarray
    layers: list[LayerAttention] = field(default_factory=list)
    attention: list[dict] = field(default_factory=list)
    saliency: list[dict] = field(default_factory=list)
    contributions: dict = field(default_factory=dict)


def aggregate_probs(window_probs: np.ndarray, how: str = "mean") -> np.ndarray:
    """(N, K) window probabilities -> (K,) clip probabilities.

    "mean": softmax of the mean log-probability (a product of experts, renormalized);
    "vote": share of windows whose top class each class is (ties split by mean probability)."""
    if how not in AGGREGATES:
        raise ConfigError(f"aggregate={how!r}; use one of {', '.join(AGGREGATES)}")
    if how == "mean":
        logp = np.log(np.clip(window_probs, 1e-12, 1.0)).mean(axis=0)
        p = np.exp(logp - logp.max())
        return p / p.sum()
    votes = np.bincount(window_probs.argmax(axis=1), minlength=window_probs.shape[1]).astype(np.float64)
    votes += 1e-6 * window_probs.mean(axis=0)  # tie-break, still sums to ~1 after renormalizing
    return votes / votes.sum()


def summarize(probs: np.ndarray, class_names: list[str], top_k: int) -> Summary:
    """Top-k, confidence, entropy (nats) and margin of one probability vector."""
    order = np.argsort(-probs)
    k = max(1, min(int(top_k), len(class_names)))
    return Summary(label=class_names[order[0]], confidence=float(probs[order[0]]),
                   entropy=float(-(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum()),
                   margin=float(probs[order[0]] - (probs[order[1]] if len(probs) > 1 else 0.0)),
                   top_k=[(class_names[i], float(probs[i])) for i in order[:k]])


def classify_file(model: Predictor | Ensemble, path: str | Path, name: str | None = None, top_k: int = 3,
                  hop: float | None = None, aggregate: str = "mean", explain: str = "auto") -> Prediction:
    """Classify one audio file or IMU CSV with a run or an Ensemble (see the module doc). hop:
    seconds between window starts (default: half the clip for audio, the run's stride for IMU).
    explain: "auto" (attention for attention models, Grad-CAM + saliency otherwise), "attention",
    "saliency", "all" or "none". Raises DataError/ConfigError with one clear line."""
    _check_modes(explain, aggregate)
    ensemble = as_ensemble(model)
    name = name or str(path)
    read = read_windows(ensemble, Path(path), name, hop)
    return classify_signal(ensemble, read.signal, read.starts, name, top_k, read.hop, aggregate, explain,
                           truth=read.truth, notes=read.notes, streams=read.streams)


def classify_signal(model: Predictor | Ensemble, signal: np.ndarray, starts: np.ndarray, name: str, top_k: int = 3,
                    hop_samples: int | None = None, aggregate: str = "mean", explain: str = "auto",
                    truth: np.ndarray | None = None, notes: list[str] | tuple = (), streams=None) -> Prediction:
    """Classify a signal already in memory (an IMU array (T, C) or a waveform (T,)) at window
    `starts` (samples): what classify_file does once it has read a file, and what Explore does
    with a window of a run's own data. truth: a label per window where known."""
    _check_modes(explain, aggregate)
    ensemble = as_ensemble(model)
    notes = list(notes) + ([ensemble.adapted] if ensemble.adapted else [])
    warnings = flat_signal_warnings(signal, ensemble.signal, list(ensemble.channel_names))
    length = len(signal)
    explain = _bounded_explain(ensemble.primary, explain, len(starts), notes)
    with one_blas_thread():
        explained = run_windows(ensemble.primary, signal, starts, length, explain, name)
        each = [explained.probs] + [run_windows(m, signal, starts, length, "none", name).probs
                                    for m in ensemble.members[1:]]
    probs = np.mean(each, axis=0)
    members = []
    if not ensemble.single:
        for m, p in zip(ensemble.members, each):
            own = summarize(aggregate_probs(p, aggregate), ensemble.class_names, 1)
            members.append({"run_id": m.run_id, "model": m.config.model.name, "features": m.features,
                            "label": own.label, "confidence": round(own.confidence, 4)})
    clip = aggregate_probs(probs, aggregate)
    if not np.isfinite(clip).all():  # the last line of defence: finite windows cannot give this
        raise DataError(f"{name}: the combined probabilities are not finite; refused rather than shown")
    s = summarize(clip, ensemble.class_names, top_k)
    hop_samples = hop_samples if hop_samples is not None else int(round(ensemble.window_seconds * ensemble.sample_rate))
    return Prediction(file=name, label=s.label, probabilities=dict(zip(ensemble.class_names, clip.tolist())),
                      top_k=s.top_k, confidence=s.confidence, entropy=s.entropy, margin=s.margin,
                      aggregate=aggregate, signal_kind=ensemble.signal, sample_rate=ensemble.sample_rate,
                      duration=length / ensemble.sample_rate, window_seconds=ensemble.window_seconds,
                      hop_seconds=hop_samples / ensemble.sample_rate, starts=starts, window_probs=probs,
                      class_names=list(ensemble.class_names), signal=signal,
                      channel_names=list(ensemble.channel_names), window_true=truth, streams=streams,
                      notes=notes, warnings=warnings, layers=explained.layers, attention=explained.attention,
                      saliency=explained.saliency, contributions=explained.contributions,
                      run_id=ensemble.run_id, members=members,
                      variant=ensemble.primary.variant)


def _check_modes(explain: str, aggregate: str) -> None:
    if explain not in EXPLAIN_MODES:
        raise ConfigError(f"explain={explain!r}; use one of {', '.join(EXPLAIN_MODES)}")
    if aggregate not in AGGREGATES:
        raise ConfigError(f"aggregate={aggregate!r}; use one of {', '.join(AGGREGATES)}")


def _bounded_explain(predictor: Predictor, explain: str, windows: int, notes: list[str]) -> str:
    """`explain`, or a cheaper mode when Grad-CAM + saliency over `windows` windows would cost
    more than classifying (a backward pass per window): attention (a forward pass) stays."""
    from core.limits import how_to_raise, limits

    if not explainable(predictor) and explain != "none":  # ONNX Runtime: no gradients, no attention capture
        notes.append(EXPLANATIONS_NEED_PYTORCH)
        return "none"
    cap = limits().max_explained_windows
    gradients = explain in ("saliency", "all") or (explain == "auto" and not predictor.has_attention)
    if not gradients or windows <= cap:
        return explain
    notes.append(f"{windows} windows is over the {cap} explained per file: classified without Grad-CAM and "
                 f"saliency ({how_to_raise('max_explained_windows')}, or classify a shorter stretch)")
    return "attention" if explain == "all" or predictor.has_attention else "none"


def classify_files(model: Predictor | Ensemble, paths: Iterable[str | Path], **kwargs) -> list[dict]:
    """classify_file for each path as JSON objects; a file that cannot be classified gives
    {"file", "error"} with one line, and the others go on."""
    out = []
    for path in paths:
        try:
            out.append(classify_file(model, path, **kwargs).to_json())
        except Exception as e:  # noqa: BLE001 - one bad file never stops the batch
            out.append({"file": str(path), "error": error_line(e)})
    return out


def classify_bytes(model: Predictor | Ensemble, data: bytes, name: str, **kwargs) -> Prediction:
    """Classify an upload. `name` is only a label: the bytes go to a fresh private temp
    folder (core.infer.reading.private_copies), removed afterwards. Uploads over
    MAX_UPLOAD_BYTES are refused before anything is written."""
    label = display_name(name)
    check_upload_size(data, label)
    with private_copies([data]) as (path,):
        try:
            return classify_file(model, path, name=label, **kwargs)
        except SigscopeError as e:
            raise type(e)(error_line(e, {str(path): label})) from None


def _curve(times: np.ndarray, values: np.ndarray) -> dict:
    return {"times": [round(float(t), 4) for t in times],
            "values": [None if not np.isfinite(v) else round(float(v), 4) for v in values]}


def run_windows(predictor: Predictor, signal: np.ndarray, starts: np.ndarray, length: int,
                explain: str, name: str = "") -> WindowOutputs:
    """One model over a file's windows, in batches: probabilities, and attention or Grad-CAM +
    input saliency as `explain` asks, stitched into curves over the file. Inputs and logits
    are checked finite (DataError naming `name`, the window's seconds and the cause)."""
    from core.models.attention import capture_attention

    use_attention = explain in ("attention", "all") or (explain == "auto" and predictor.has_attention)
    use_saliency = explain in ("saliency", "all") or (explain == "auto" and not predictor.has_attention)
    if (use_attention or use_saliency) and not explainable(predictor):
        raise ConfigError(f"explain={explain!r} with {predictor.variant}: {EXPLANATIONS_NEED_PYTORCH}")
    probs, batches = [], []
    model = predictor.model
    exact = use_saliency and is_minirocket(model)  # no gradients through its pooling: its exact decomposition
    cams, sals, cam_layer, decomposed = [], [], None, []
    for i in range(0, len(starts), BATCH):
        x = torch.from_numpy(_finite_inputs(predictor, signal, starts, i, name)).to(predictor.device)
        with torch.no_grad():
            if use_attention:
                with capture_attention(model) as maps:
                    logits = model(x)
                batches.append(attention_summary(maps))
            else:
                logits = model(x)
        scores = logits.float().cpu().numpy()
        if not np.isfinite(scores).all():
            raise DataError(_nonfinite_logits(predictor, x, scores, starts, i, name))
        p = softmax(scores)
        if not np.isfinite(p).all():
            raise DataError(f"{_where(predictor, starts, i + int(np.argwhere(~np.isfinite(p))[0][0]), name)}: the "
                            "probabilities are not finite although the logits are; refused rather than shown")
        probs.append(p)
        if exact:
            decomposed += explain_minirocket_batch(model, x, p.argmax(axis=1))
        elif use_saliency:
            targets = torch.from_numpy(p.argmax(axis=1)).to(predictor.device)
            cam, cam_layer = grad_cam(model, x, targets, cam_layer)
            cams.append(cam)
            sals.append(input_saliency(model, x, targets))
    out = WindowOutputs(np.concatenate(probs), _concat_layers(batches))
    duration = length / predictor.sample_rate
    start_s = starts / predictor.sample_rate
    for layer in out.layers:
        spans = predictor.spans(layer.n_tokens)
        entry = {"layer": layer.layer, "kind": layer.kind, "heads": layer.heads, "shape": list(layer.shape),
                 "has_cls": layer.has_cls, "tokens": layer.n_tokens,
                 "token_seconds": round(predictor.input_shape[-1] / layer.n_tokens * predictor.step_seconds, 5)}
        key = "rollout" if layer.kind == "self" else "weights"
        curve = layer.rollout if layer.kind == "self" else layer.weights
        entry[key] = _curve(*stitch(curve, spans, start_s, duration))
        out.attention.append(entry)
    if exact:
        out.contributions = _contributions(predictor, decomposed, start_s, duration)
    elif use_saliency:
        if cam_layer is not None:
            cam = np.concatenate(cams)
            out.saliency.append({"method": "grad_cam", "layer": cam_layer, "tokens": int(cam.shape[1]),
                                 **_curve(*stitch(cam, predictor.spans(cam.shape[1]), start_s, duration))})
        sal = np.concatenate(sals)
        out.saliency.append({"method": "input_gradient", "layer": "input", "tokens": int(sal.shape[1]),
                             **_curve(*stitch(sal, predictor.spans(sal.shape[1]), start_s, duration))})
    return out


def _contributions(predictor: Predictor, explained: list[MiniRocketExplanation], start_s: np.ndarray,
                   duration: float) -> dict:
    """MiniRocket's per-window decompositions as one JSON object: the per-time-step map stitched
    over the file (logit units per input step), and per dilation and channel their mean over the
    windows; each window is explained toward its own predicted class."""
    by_time = np.stack([e.by_time for e in explained])
    channels = list(predictor.channel_names) or [f"ch{c}" for c in range(len(explained[0].by_channel))]
    return {"method": "minirocket_decomposition", "target": "each window's predicted class",
            "reference": explained[0].reference,
            "classes": sorted({predictor.class_names[e.target] for e in explained}),
            **_curve(*stitch(by_time, predictor.spans(by_time.shape[1]), start_s, duration)),
            "dilations": explained[0].dilations.tolist(),
            "by_dilation": [round(float(v), 5) for v in np.mean([e.by_dilation for e in explained], axis=0)],
            "channels": channels,
            "by_channel": [round(float(v), 5) for v in np.mean([e.by_channel for e in explained], axis=0)],
            "logit": round(float(np.mean([e.logit for e in explained])), 5),
            "baseline": round(float(np.mean([e.baseline for e in explained])), 5),
            "max_residual": float(max(e.residual for e in explained)), "windows": len(explained)}


def _where(predictor: Predictor, starts: np.ndarray, index: int, name: str) -> str:
    """"<file>: window 3 (1.50-2.50 s)" — the window a message is about, in the file's seconds."""
    t0 = float(starts[index]) / predictor.sample_rate
    return f"{name + ': ' if name else ''}window {index} ({t0:.2f}-{t0 + predictor.window_seconds:.2f} s)"


def _finite_inputs(predictor: Predictor, signal: np.ndarray, starts: np.ndarray, i: int, name: str) -> np.ndarray:
    """The model inputs of windows starts[i:i + BATCH], refused naming the window when a
    feature transform or the run's normalization gives NaN/inf."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused by name just below
            x = predictor.inputs(signal, starts[i:i + BATCH])
    except NonFiniteFeatures as e:
        index = i + (e.clip or 0)
        raise DataError(f"{_where(predictor, starts, index, name)}: {e}") from None
    finite = np.isfinite(x)
    if not finite.all():
        index = i + int(np.argwhere(~finite)[0][0])
        raise DataError(f"{_where(predictor, starts, index, name)}: the model input is not finite after the run's "
                        f"normalization ({predictor.normalization.get('kind', 'none')}): the values are beyond what "
                        "the run's statistics can scale — check the file's units and range")
    return x


def _nonfinite_logits(predictor: Predictor, x: torch.Tensor, scores: np.ndarray, starts: np.ndarray, i: int,
                      name: str) -> str:
    """Why a batch's logits are NaN/inf, found cheaply: damaged weights (named), else the first
    layer whose output stops being finite on the first bad window (its inputs were finite)."""
    row = int(np.argwhere(~np.isfinite(scores))[0][0])
    where = _where(predictor, starts, i + row, name)
    if not explainable(predictor):  # an exported variant: no torch weights or layers to look into
        return nonfinite_variant_logits(predictor, where, float(x[row].abs().max()))
    bad_weights = [n for n, t in list(predictor.model.named_parameters()) + list(predictor.model.named_buffers())
                   if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad_weights:
        more = f" and {len(bad_weights) - 1} more" if len(bad_weights) > 1 else ""
        return (f"{where}: the model gave non-finite logits; its weights hold NaN/inf ({bad_weights[0]}{more}) — "
                "the checkpoint is damaged: retrain the run or pick another checkpoint")
    layer = _first_nonfinite_layer(predictor.model, x[row:row + 1])
    peak = float(x[row].abs().max())
    return (f"{where}: the model gave non-finite logits from finite inputs (largest |input| {peak:.3g} after "
            f"normalization){f', first in layer {layer}' if layer else ''}; the file's values are likely far "
            "outside what the run was trained on — check its units and range")


def _first_nonfinite_layer(model: torch.nn.Module, x: torch.Tensor) -> str | None:
    """The name of the first module (in call order) whose output holds NaN/inf for input x."""
    found: list[str] = []

    def hook(name):
        def check(_module, _inputs, output):
            if not found and isinstance(output, torch.Tensor) and output.is_floating_point() \
                    and not torch.isfinite(output).all():
                found.append(name)
        return check

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if n and not any(True for _ in m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else None


def flat_signal_warnings(signal: np.ndarray, kind: str, channel_names: list[str]) -> list[str]:
    """Warnings for a signal that holds no information: every channel constant over the whole
    file (DC audio, a sensor lying still on a table or not recording), or — for IMU — some
    channels constant (their share of the answer rests on nothing). "Constant" is a std under
    the silence floor for audio (-80 dBFS, what is already refused as silent), and under 1e-6
    of the channel's magnitude for IMU (float rounding; any real sensor's noise is above it)."""
    x = np.asarray(signal, dtype=np.float64).reshape(len(signal), -1)
    std = x.std(axis=0)
    floor = (np.full(x.shape[1], SILENCE_PEAK) if kind == "audio"
             else 1e-6 * np.maximum(1.0, np.abs(x).max(axis=0)))
    flat = std < floor
    if flat.all():
        what = ("the audio is a constant (DC) level with no sound on it" if kind == "audio" else
                "every channel holds one value over the whole file")
        device = "microphone" if kind == "audio" else "sensor"
        return [f"{what}: the signal holds no information, so this answer only reflects the model's bias — "
                f"check the {device} and the recording"]
    if flat.any():
        names = [channel_names[c] if c < len(channel_names) else str(c) for c in np.flatnonzero(flat)]
        return [f"channel(s) {', '.join(names)} hold one value over the whole file (a dead or unrecorded "
                "sensor?): they carry no information, and the answer rests on the other channels"]
    return []


def _concat_layers(batches: list[list[LayerAttention]]) -> list[LayerAttention]:
    """Per-batch summaries -> one LayerAttention per layer over all windows."""
    if not batches:
        return []
    out = []
    for j, first in enumerate(batches[0]):
        parts = [b[j] for b in batches]

        def cat(attr):
            arrays = [getattr(p, attr) for p in parts]
            return None if arrays[0] is None else np.concatenate(arrays)

        out.append(LayerAttention(first.layer, first.kind, first.heads, first.shape, first.has_cls, first.n_tokens,
                                  received=cat("received"), rollout=cat("rollout"), weights=cat("weights")))
    return out


def window_attention(model: Predictor | Ensemble, prediction: Prediction, index: int) -> list[LayerAttention]:
    """Full attention matrices of one window of a prediction: per layer (1, H, T', T') or
    (1, T') in `weights_full` (recomputed, so a long file's matrices are never all kept)."""
    from core.models.attention import capture_attention

    predictor = as_ensemble(model).primary
    if not explainable(predictor):
        raise ConfigError(f"attention of {predictor.variant}: {EXPLANATIONS_NEED_PYTORCH}")
    if not 0 <= index < len(prediction.starts):
        raise ConfigError(f"window {index} does not exist; the prediction has {len(prediction.starts)} windows")
    x = torch.from_numpy(predictor.inputs(prediction.signal, prediction.starts[index:index + 1])).to(predictor.device)
    with torch.no_grad(), capture_attention(predictor.model) as maps:
        predictor.model(x)
    return attention_summary(maps, keep_full=True)
