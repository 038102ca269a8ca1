"""Classify a user's recording with a trained run and show where the model looked.

    predictor = load_run("20250101-120000-3fa9c2")          # rebuilt from config.json + best.pt
    pred = classify_file(predictor, "my_recording.wav", top_k=3)
    pred.label, pred.confidence, pred.top_k                  # the clip's answer
    pred.to_json()                                           # what `python -m core predict --json` prints
    results = classify_files(predictor, paths)               # one dict per file; a bad file -> {"error"}
    pred = classify_bytes(predictor, data, "upload.wav")     # an upload: size-checked, never named on disk
    ensemble = load_ensemble(["RUN_A", "RUN_B", "RUN_C"])    # several runs answer together
    pred = classify_file(ensemble, "my_recording.wav")       # the mean of their window probabilities
    scores = evaluate_split(ensemble, "test")                 # accuracy on the runs' own test split

The run's own pipeline is reproduced exactly: audio is decoded (content-checked) to the
run's sample rate, cut into the training clip length every `hop` seconds (a file shorter
than one clip is zero-padded at the end, as in training), featurized with the run's
DataConfig and normalized with the stored training-split statistics. IMU CSVs are parsed
by the same reader as training (columns by name, chunked, short NaN runs interpolated),
one stream per subject/session, windowed with the run's window and stride (or `hop`).

Window probabilities are aggregated into the clip's answer by the mean of log-probabilities
(renormalized, the default) or by majority vote; confidence is the top probability, entropy
is in nats, margin is top-1 minus top-2.

An Ensemble is a list of runs with the same classes, signal, rate and window (their
features, models and seeds may differ: each member keeps its own pipeline). Its window
probabilities are the mean of the members'; the explanation (attention or saliency) is its
first member's, and each member's own answer is kept in `Prediction.members`.

Limits (stated to the user): uploads up to MAX_UPLOAD_BYTES, audio up to MAX_AUDIO_SECONDS,
at most MAX_WINDOWS windows per file. Nothing read is executed or unpickled: audio goes
through soundfile/librosa decoders, CSVs through pandas' text parser, checkpoints through
`torch.load(weights_only=True)`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from core.config import RunConfig
from core.data.audio import AUDIO_EXTENSIONS, decode_audio, fit_clip, probe_audio, sniff_format
from core.data.features import featurize_audio
from core.data.normalize import apply_normalization
from core.data.windowing import seconds_or_samples, window_labels, window_starts
from core.errors import ConfigError, DataError, SigscopeError
from core.explain import LayerAttention, attention_summary, grad_cam, input_saliency, stitch, token_spans

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # 50 MiB per uploaded file
MAX_AUDIO_SECONDS = 600.0  # 10 minutes of audio per file
MAX_WINDOWS = 20_000  # windows classified per file
SILENCE_PEAK = 1e-4  # -80 dBFS: nothing to classify below this
RATE_TOLERANCE = 0.05  # an IMU CSV's rate may differ this much from the run's
BATCH = 128  # windows per forward pass
AGGREGATES = ("mean", "vote")
EXPLAIN_MODES = ("auto", "attention", "saliency", "all", "none")


# ---- loading a run ------------------------------------------------------------------------
@dataclass
class Predictor:
    """A trained run, ready to classify: the model in eval mode plus the exact pipeline.

    signal "audio": `window`/`stride` are samples at `sample_rate` (the training clip length
    and half of it); signal "imu": the run's window/stride in samples.
    """

    model: nn.Module
    config: RunConfig
    class_names: list[str]
    normalization: dict
    meta: dict
    signal: str
    sample_rate: float
    window: int
    stride: int
    channel_names: list[str]
    input_shape: tuple[int, ...]
    has_attention: bool
    run_id: str | None = None
    run_name: str = ""
    checkpoint: Path | None = None
    epoch: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    adapted: str = ""  # what its BatchNorm statistics were re-estimated on (adapt_batchnorm), if anything

    @property
    def window_seconds(self) -> float:
        return self.window / self.sample_rate

    @property
    def features(self) -> str:
        return self.config.data.features if self.signal == "audio" else "raw"

    @property
    def step_seconds(self) -> float:
        """Seconds per step of the model input's time axis (a sample, or an STFT hop)."""
        if self.signal == "audio" and self.features != "raw":
            return self.config.data.hop_length / self.sample_rate
        return 1.0 / self.sample_rate

    @property
    def step_offset(self) -> float:
        """Centered STFT frames start half a hop before their centre."""
        return -0.5 * self.step_seconds if (self.signal == "audio" and self.features != "raw") else 0.0

    def spans(self, n_tokens: int) -> np.ndarray:
        """(n_tokens, 2) seconds inside a window covered by each of n tokens on the input's time axis."""
        return token_spans(n_tokens, self.input_shape[-1], self.step_seconds, self.step_offset, self.window_seconds)

    def describe(self) -> str:
        kind = "audio clips" if self.signal == "audio" else f"IMU windows ({', '.join(self.channel_names)})"
        return (f"{self.config.model.name} on {self.config.data.source}: {kind} of {self.window_seconds:g} s at "
                f"{self.sample_rate:g} Hz, {len(self.class_names)} classes" + (f"; {self.adapted}" if self.adapted else ""))

    # -- the pipeline ----------------------------------------------------------------------
    def inputs(self, signal: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Model inputs (N, *input_shape), normalized, for windows starting at `starts`.

        audio: signal (T,) at sample_rate -> clips zero-padded at the end -> features;
        imu: signal (T, C) -> (N, C, window)."""
        if self.signal == "audio":
            clips = np.stack([fit_clip(signal[s:s + self.window], self.window) for s in starts])  # (N, window)
            x = featurize_audio(clips, self.sample_rate, self.config.data)
        else:
            x = np.stack([signal[s:s + self.window].T for s in starts])  # (N, C, window)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ConfigError(f"the run's stored pipeline gives inputs of shape {tuple(x.shape[1:])}, but the model "
                              f"was built for {self.input_shape}; the run folder's config.json and classes.json "
                              "disagree — retrain the run")
        return apply_normalization(x, self.normalization)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, *input_shape) -> (N, K) logits, in batches, without gradients."""
        out = []
        with torch.no_grad():
            for i in range(0, len(x), BATCH):
                out.append(self.model(torch.from_numpy(x[i:i + BATCH]).to(self.device)).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.class_names)), np.float32)


def predictor_from_loaded(loaded, run_id: str | None = None, run_name: str = "") -> Predictor:
    """A Predictor from `core.train.load_checkpoint`'s LoadedModel."""
    from core.data.sources import get_source
    from core.models import registry

    cfg, meta = loaded.config, loaded.meta
    signal = get_source(cfg.data.source).signal
    rate = float(meta.get("sample_rate") or (cfg.data.sample_rate if signal == "audio" else 50.0))
    if signal == "audio":
        window = int(round(cfg.data.clip_seconds * rate))
        stride = max(1, window // 2)
    else:
        window = seconds_or_samples(cfg.data.window, rate, "window")
        stride = seconds_or_samples(cfg.data.stride, rate, "stride")
    device = next(loaded.model.parameters()).device
    return Predictor(model=loaded.model, config=cfg, class_names=list(loaded.class_names),
                     normalization=loaded.normalization, meta=meta, signal=signal, sample_rate=rate,
                     window=window, stride=stride, channel_names=list(meta.get("channel_names") or []),
                     input_shape=tuple(int(v) for v in meta["input_shape"]),
                     has_attention=registry.spec(cfg.model.name).has_attention, run_id=run_id,
                     run_name=run_name, checkpoint=loaded.checkpoint_path, epoch=loaded.epoch, device=device)


def load_run_dir(folder: str | Path, which: str = "best", device: str = "cpu", run_id: str | None = None,
                 run_name: str = "") -> Predictor:
    """A Predictor from a run folder (config.json + classes.json + normalization.json + checkpoints/)."""
    from core.train import load_checkpoint

    return predictor_from_loaded(load_checkpoint(folder, which, device), run_id or Path(folder).name, run_name)


def load_run(run_id: str, store=None, which: str = "best", device: str = "cpu") -> Predictor:
    """A Predictor for a stored run by id: the model rebuilt from its config JSON, weights
    loaded with `weights_only=True` (best.pt, else last.pt), normalization as stored."""
    from core.store import Store

    store = store or Store()
    run = store.get_run(run_id)
    if run is None:
        raise ConfigError(f"no run {run_id!r} in {store.path}; see `python -m core runs list`")
    folder = Path(run["run_dir"] or "")
    ckpts = folder / "checkpoints"
    if not ((ckpts / "best.pt").is_file() or (ckpts / "last.pt").is_file()):
        raise ConfigError(f"run {run_id} ({run['status']}) has no checkpoint yet: it is saved at the end of "
                          "each epoch — wait for the first epoch, or pick a completed run")
    return load_run_dir(folder, which, device, run_id=run_id, run_name=run.get("name") or "")


@dataclass
class Ensemble:
    """Runs that answer together: the mean of their window probabilities (see the module doc).

    members: Predictors of the same classes (same order), signal, sample rate, window and stride;
    the first is `primary`, whose pipeline reads the file and whose model explains the answer.
    """

    members: list[Predictor]

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ConfigError("an ensemble needs at least two runs; classify with the one run instead")
        first = self.members[0]
        for m in self.members[1:]:
            checks = (("classes", m.class_names, first.class_names), ("signal", m.signal, first.signal),
                      ("sample rate (Hz)", m.sample_rate, first.sample_rate),
                      ("window (samples)", m.window, first.window), ("stride (samples)", m.stride, first.stride))
            if m.signal == "imu":
                checks += (("channels", m.channel_names, first.channel_names),)
            for what, theirs, ours in checks:
                if theirs != ours:
                    raise ConfigError(f"run {m.run_id} cannot join an ensemble with run {first.run_id}: its {what} "
                                      f"{theirs} differ from {ours}; ensemble runs trained on the same task")

    @property
    def primary(self) -> Predictor:
        return self.members[0]

    @property
    def run_id(self) -> str:
        return "+".join(str(m.run_id) for m in self.members)

    @property
    def run_ids(self) -> list[str]:
        return [str(m.run_id) for m in self.members]

    # the file-reading side is the same for every member: the primary's
    signal = property(lambda self: self.primary.signal)
    sample_rate = property(lambda self: self.primary.sample_rate)
    window = property(lambda self: self.primary.window)
    stride = property(lambda self: self.primary.stride)
    window_seconds = property(lambda self: self.primary.window_seconds)
    class_names = property(lambda self: self.primary.class_names)
    channel_names = property(lambda self: self.primary.channel_names)

    def describe(self) -> str:
        models = ", ".join(f"{m.config.model.name} ({m.features})" for m in self.members)
        return f"ensemble of {len(self.members)} runs: {models}; {self.primary.describe().split(': ', 1)[1]}"


def load_ensemble(run_ids: list[str], store=None, which: str = "best", device: str = "cpu") -> Ensemble:
    """An Ensemble of stored runs (each loaded as by load_run); ConfigError when they do not fit together."""
    from core.store import Store

    store = store or Store()
    if len(set(run_ids)) != len(run_ids):
        raise ConfigError(f"runs {run_ids} name one run twice; an ensemble needs different runs")
    return Ensemble([load_run(r, store, which, device) for r in run_ids])


def _batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def has_batchnorm(model: nn.Module) -> bool:
    return bool(_batchnorm_layers(model))


def adapt_batchnorm(predictor: Predictor, x: np.ndarray, keep: float = 0.0, note: str = "") -> Predictor:
    """A copy of `predictor` whose BatchNorm statistics are re-estimated on `x` (N, *input_shape),
    model inputs already normalized: test-time adaptation to a new speaker, wearer or device
    from its unlabeled examples (AdaBN, Li et al. 2016). Only the BN running means/variances
    change (the mean over batches of BATCH examples); weights, dropout and the original stay as
    they are. keep: weight of the training statistics in the result (0 = the new data's alone).
    ConfigError when the model has no BatchNorm or x holds fewer than 2 examples."""
    import copy

    if not has_batchnorm(predictor.model):
        raise ConfigError(f"run {predictor.run_id}'s model ({predictor.config.model.name}) has no BatchNorm "
                          "layers, so there are no statistics to adapt")
    if len(x) < 2:
        raise ConfigError(f"adapting BatchNorm needs at least 2 examples of the new data, not {len(x)}")
    if not 0.0 <= keep <= 1.0:
        raise ConfigError(f"keep={keep} must be in [0, 1]")
    model = copy.deepcopy(predictor.model).eval()
    layers = _batchnorm_layers(model)
    trained = [(m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    with torch.no_grad():  # equal batches of at most BATCH (never one example: it has no variance)
        for chunk in np.array_split(np.arange(len(x)), math.ceil(len(x) / BATCH)):
            model(torch.from_numpy(np.ascontiguousarray(x[chunk])).to(predictor.device))
    for m, (mean, var, momentum) in zip(layers, trained):
        m.running_mean.mul_(1.0 - keep).add_(keep * mean.to(m.running_mean.device))
        m.running_var.mul_(1.0 - keep).add_(keep * var.to(m.running_var.device))
        m.momentum = momentum
        m.eval()
    return dataclasses.replace(predictor, model=model,
                               adapted=note or f"BatchNorm statistics adapted to {len(x)} unlabeled examples")


def split_probabilities(predictor: Predictor, split: str = "test", bundle=None,
                        adapt_bn: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (N,), labels (N,), probabilities (N, K)) of one run on its own data split: the run's
    DataConfig is loaded again (features from the disk cache; or `bundle`, already loaded from
    that config) and normalized with its stored training statistics, so this is the split the
    run was scored on. adapt_bn: first re-estimate the model's BatchNorm statistics on the
    split's own inputs (adapt_batchnorm; labels are not used)."""
    from core.data import load

    if split not in ("train", "val", "test"):
        raise ConfigError(f"split={split!r}; use train, val or test")
    bundle = bundle if bundle is not None else load(predictor.config.data)
    if list(bundle.class_names) != list(predictor.class_names):
        raise ConfigError(f"run {predictor.run_id}'s data now gives classes {bundle.class_names}, not the "
                          f"{predictor.class_names} it was trained on; the data changed since it was trained")
    ds = getattr(bundle, split)
    if len(ds) == 0:
        raise ConfigError(f"run {predictor.run_id} has no {split} examples (its data.{split}_fraction or groups "
                          "leave that split empty)")
    if ds.featurize is not None:  # a training split with waveform augmentation holds raw clips
        x = featurize_audio(ds.x, predictor.sample_rate, predictor.config.data)
    else:
        x = ds.x
    x = apply_normalization(x, predictor.normalization)
    with _one_blas_thread():
        if adapt_bn:
            predictor = adapt_batchnorm(predictor, x)
        probs = _softmax(predictor.logits(x))
    return np.asarray(ds.ids).astype(str), ds.y.copy(), probs


def evaluate_split(predictor: Predictor | Ensemble, split: str = "test", adapt_bn: bool = False,
                   bundles: dict | None = None) -> dict:
    """Accuracy, macro-F1, confusion matrix and per-class scores of a run or an Ensemble on
    the run's own split (see split_probabilities); an Ensemble's members must share the split's
    examples (e.g. the same test speaker), and it also reports each member's accuracy.
    adapt_bn: each member's BatchNorm statistics re-estimated on the split's inputs first
    (transductive: the unlabeled test examples are seen together, as a new speaker's recordings).
    bundles: the loaded data per data config, filled here; pass the same dict to score the runs
    again (e.g. with and without adapt_bn) without loading their data twice."""
    from core.train.metrics import classification_metrics

    from core.data import load

    members = predictor.members if isinstance(predictor, Ensemble) else [predictor]
    bundles = {} if bundles is None else bundles  # members that share a data config (seeds) load it once
    answers = []
    for m in members:
        key = json.dumps(m.config.data.to_dict(), sort_keys=True)
        if key not in bundles:
            bundles[key] = load(m.config.data)
        answers.append(split_probabilities(m, split, bundles[key], adapt_bn))
    ids, labels = answers[0][0], answers[0][1]
    order = np.argsort(ids)
    aligned = []
    for m, (m_ids, m_labels, m_probs) in zip(members, answers):
        m_order = np.argsort(m_ids)
        if not np.array_equal(m_ids[m_order], ids[order]):
            raise ConfigError(f"run {m.run_id}'s {split} split holds other examples than run {members[0].run_id}'s; "
                              f"ensemble runs that were tested on the same examples")
        aligned.append(m_probs[m_order])
    probs = np.mean(aligned, axis=0)
    y = torch.from_numpy(labels[order])
    m = classification_metrics(torch.from_numpy(np.log(np.clip(probs, 1e-12, 1.0))), y, list(predictor.class_names))
    out = {"split": split, "n": int(len(y)), "accuracy": m.scalars["accuracy"], "macro_f1": m.scalars["macro_f1"],
           "confusion": m.confusion, "per_class": m.per_class, "class_names": list(predictor.class_names),
           "run_ids": [str(x.run_id) for x in members], "adapt_bn": bool(adapt_bn)}
    if len(members) > 1:
        out["member_accuracy"] = {str(x.run_id): float((p.argmax(axis=1) == labels[order]).mean())
                                  for x, p in zip(members, aligned)}
    return out


# ---- results -----------------------------------------------------------------------------
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
    layers: list[LayerAttention] = field(default_factory=list)
    attention: list[dict] = field(default_factory=list)
    saliency: list[dict] = field(default_factory=list)
    run_id: str | None = None
    members: list[dict] = field(default_factory=list)  # an ensemble's members: run_id, label, confidence

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

    def class_track(self, max_points: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The predicted class over time: (times (G,), class index (G,), probability (G,)); at
        each point the class with the highest mean probability over the windows covering it."""
        spans = np.array([[0.0, self.window_seconds]])
        start_s = self.starts / self.sample_rate
        step = min(self.hop_seconds, self.window_seconds) / 4
        curves = [stitch(self.window_probs[:, k:k + 1], spans, start_s, self.duration, max_points, step)
                  for k in range(self.window_probs.shape[1])]
        times = curves[0][0]
        probs = np.nan_to_num(np.stack([c[1] for c in curves]), nan=0.0)  # (K, G)
        return times, probs.argmax(axis=0), probs.max(axis=0)

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
        if self.streams:
            out["streams"] = self.streams
        if self.attention:
            out["attention"] = self.attention
        if self.saliency:
            out["saliency"] = self.saliency
        if self.notes:
            out["notes"] = self.notes
        if self.members:
            out["members"] = self.members
        return out


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


def summarize(probs: np.ndarray, class_names: list[str], top_k: int) -> dict:
    """Top-k, confidence, entropy (nats) and margin of one probability vector."""
    order = np.argsort(-probs)
    k = max(1, min(int(top_k), len(class_names)))
    return {"label": class_names[order[0]], "confidence": float(probs[order[0]]),
            "entropy": float(-(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum()),
            "margin": float(probs[order[0]] - (probs[order[1]] if len(probs) > 1 else 0.0)),
            "top_k": [(class_names[i], float(probs[i])) for i in order[:k]]}


# ---- reading a file ----------------------------------------------------------------------
def detect_kind(path: Path) -> str:
    """"audio" or "csv" from the file's content (never from its name)."""
    size = path.stat().st_size if path.is_file() else -1
    if size < 0:
        raise DataError(f"{path}: no such file")
    if size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(4096)
    if sniff_format(head) is not None:
        return "audio"
    if head[:2] == b"\x1f\x8b":
        return "csv"  # gzip: the CSV reader opens .csv.gz
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text and any(d in text.split("\n", 1)[0] for d in ",;\t|"):
        return "csv"
    raise DataError(f"{path}: is neither audio (WAV/FLAC/OGG/MP3) nor a text CSV (content starts {head[:12]!r}); "
                    "give a recording or an IMU CSV")


def sliding_starts(length: int, window: int, hop: int) -> np.ndarray:
    """Window starts covering the whole signal: every `hop` samples, plus one last window
    (zero-padded) when the tail would be left out; a signal shorter than one window gets one."""
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    starts = window_starts(length, window, hop)
    if starts[-1] + window < length:
        starts = np.append(starts, starts[-1] + hop)
    return starts


def _read_audio(predictor: Predictor, path: Path, notes: list[str]) -> np.ndarray:
    meta = probe_audio(path)
    y = decode_audio(path, predictor.sample_rate, MAX_AUDIO_SECONDS)
    if meta.get("sample_rate") and abs(meta["sample_rate"] - predictor.sample_rate) > 0.5:
        notes.append(f"resampled from {meta['sample_rate']:g} Hz to the run's {predictor.sample_rate:g} Hz")
    if meta.get("channels") == 2:
        notes.append("stereo averaged to mono")
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak < SILENCE_PEAK:
        level = "digital silence" if peak == 0 else f"peak {20 * math.log10(peak):.0f} dBFS"
        raise DataError(f"{path}: is silent ({level}); there is nothing to classify — check the microphone "
                        "or the recording level")
    if len(y) < predictor.window:
        notes.append(f"{len(y) / predictor.sample_rate:.2f} s is shorter than the run's "
                     f"{predictor.window_seconds:g} s clip: zero-padded at the end, as in training")
    return y


def _read_imu(predictor: Predictor, path: Path, hop: int, notes: list[str]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """(signal (T, C) streams end to end, starts (N,), true labels (N,), streams) of an IMU CSV."""
    from core.data.imu_csv import DEFAULT_OPTIONS, estimate_rate, fill_nan_runs, read_header, read_streams

    columns, _ = read_header(path, None)
    missing = [c for c in predictor.channel_names if c not in columns]
    if missing:
        raise DataError(f"{path}: has no column(s) {missing}; run {predictor.run_id} was trained on channels "
                        f"{predictor.channel_names} (the CSV has {columns}). Rename the columns to match")
    opts = {**DEFAULT_OPTIONS, "channels": list(predictor.channel_names)}
    index = {name: i for i, name in enumerate(predictor.class_names)}
    pieces, all_starts, truths, streams = [], [], [], []
    offset = 0
    for values, labels, lines, channels, subject, session, times in read_streams(path, opts, label_default=""):
        rate = estimate_rate(times, opts.get("time") or "time")
        if rate is not None and abs(rate - predictor.sample_rate) > RATE_TOLERANCE * predictor.sample_rate:
            raise DataError(f"{path}: the time column says {rate:.1f} Hz; run {predictor.run_id} was trained at "
                            f"{predictor.sample_rate:g} Hz. Resample the recording to {predictor.sample_rate:g} Hz")
        values = fill_nan_runs(path, values, lines, channels, int(opts["max_nan_run"]))
        name = f"{subject}:{session}"
        if len(values) < predictor.window:
            notes.append(f"stream {name} has {len(values)} rows, fewer than one {predictor.window}-sample window: skipped")
            continue
        ids = np.array([index.get(str(v).strip(), -1) for v in labels], dtype=np.int64)
        starts, true, keep = window_labels(ids, predictor.window, hop, "majority")
        pieces.append(values)
        all_starts.append(starts + offset)
        truths.append(np.where(keep, true, -1))
        streams.append({"name": name, "start": round(offset / predictor.sample_rate, 4),
                        "end": round((offset + len(values)) / predictor.sample_rate, 4), "windows": int(len(starts))})
        offset += len(values)
    if not pieces:
        raise DataError(f"{path}: no stream has a full window of {predictor.window} samples "
                        f"({predictor.window_seconds:g} s at {predictor.sample_rate:g} Hz); record a longer stretch")
    return (np.concatenate(pieces).astype(np.float32), np.concatenate(all_starts), np.concatenate(truths), streams)


# ---- classifying -------------------------------------------------------------------------
def classify_file(predictor: Predictor | Ensemble, path: str | Path, name: str | None = None, top_k: int = 3,
                  hop: float | None = None, aggregate: str = "mean", explain: str = "auto") -> Prediction:
    """Classify one audio file or IMU CSV with a run or an Ensemble (see the module doc). hop:
    seconds between window starts (default: half the clip for audio, the run's stride for IMU).
    explain: "auto" (attention for attention models, Grad-CAM + saliency otherwise), "attention",
    "saliency", "all" or "none". Raises DataError/ConfigError with one clear line."""
    if explain not in EXPLAIN_MODES:
        raise ConfigError(f"explain={explain!r}; use one of {', '.join(EXPLAIN_MODES)}")
    if aggregate not in AGGREGATES:
        raise ConfigError(f"aggregate={aggregate!r}; use one of {', '.join(AGGREGATES)}")
    name = name or str(path)
    signal, starts, truth, streams, notes, hop_samples = _read_windows(predictor, Path(path), name, hop)
    length = len(signal)
    primary = predictor.primary if isinstance(predictor, Ensemble) else predictor
    if primary.adapted:
        notes.append(primary.adapted)
    members = []
    with _one_blas_thread():
        if isinstance(predictor, Ensemble):
            probs, layers, attention, saliency = _run_windows(predictor.primary, signal, starts, length, explain)
            each = [probs] + [_run_windows(m, signal, starts, length, "none")[0] for m in predictor.members[1:]]
            probs = np.mean(each, axis=0)
            for m, p in zip(predictor.members, each):
                own = summarize(aggregate_probs(p, aggregate), predictor.class_names, 1)
                members.append({"run_id": m.run_id, "model": m.config.model.name, "features": m.features,
                                "label": own["label"], "confidence": round(own["confidence"], 4)})
        else:
            probs, layers, attention, saliency = _run_windows(predictor, signal, starts, length, explain)
    clip = aggregate_probs(probs, aggregate)
    s = summarize(clip, predictor.class_names, top_k)
    return Prediction(file=name, label=s["label"], probabilities=dict(zip(predictor.class_names, clip.tolist())),
                      top_k=s["top_k"], confidence=s["confidence"], entropy=s["entropy"], margin=s["margin"],
                      aggregate=aggregate, signal_kind=predictor.signal, sample_rate=predictor.sample_rate,
                      duration=length / predictor.sample_rate, window_seconds=predictor.window_seconds,
                      hop_seconds=hop_samples / predictor.sample_rate, starts=starts, window_probs=probs,
                      class_names=list(predictor.class_names), signal=signal,
                      channel_names=list(predictor.channel_names), window_true=truth, streams=streams, notes=notes,
                      layers=layers, attention=attention, saliency=saliency, run_id=predictor.run_id,
                      members=members)


def _read_windows(predictor: Predictor | Ensemble, path: Path, name: str, hop: float | None):
    """(signal, starts, true labels or None, streams, notes, hop in samples) of one file, checked
    against the run: audio for audio runs, an IMU CSV with the run's channels for IMU runs."""
    hop_samples = predictor.stride if hop is None else int(round(float(hop) * predictor.sample_rate))
    if hop_samples < 1:
        raise ConfigError(f"hop={hop} s is less than one sample at {predictor.sample_rate:g} Hz")
    kind = detect_kind(path)
    claimed = next((ext for ext in AUDIO_EXTENSIONS if name.lower().endswith(ext)), None)
    if claimed and kind != "audio":
        raise DataError(f"{path}: is not audio despite its {claimed} name (its content is text, not "
                        "WAV/FLAC/OGG/MP3); give a real recording")
    if kind == "audio" and predictor.signal != "audio":
        raise DataError(f"{path}: is audio, but run {predictor.run_id} is an IMU model; pick an audio run")
    if kind == "csv" and predictor.signal != "imu":
        raise DataError(f"{path}: is a CSV, but run {predictor.run_id} is an audio model; pick an IMU run "
                        "or give a WAV/FLAC/OGG/MP3 recording")
    notes: list[str] = []
    truth, streams = None, []
    if kind == "audio":
        signal = _read_audio(predictor, path, notes)
        starts = sliding_starts(len(signal), predictor.window, hop_samples)
    else:
        signal, starts, truth, streams = _read_imu(predictor, path, hop_samples, notes)
    if len(starts) > MAX_WINDOWS:
        raise DataError(f"{path}: would make {len(starts)} windows at a {hop_samples / predictor.sample_rate:g} s hop; "
                        f"the limit is {MAX_WINDOWS} per file — use a larger hop or a shorter recording")
    return signal, starts, truth, streams, notes, hop_samples


def adapt_to_files(predictor: Predictor | Ensemble, paths: Iterable[str | Path], hop: float | None = None,
                   names: list[str] | None = None) -> tuple[Predictor | Ensemble, dict]:
    """The run (each member of an Ensemble) with its BatchNorm statistics re-estimated on every
    window of `paths`: a new speaker's, wearer's or device's recordings, unlabeled (adapt_batchnorm).
    Classify the same files with the result. A file that cannot be read is left out and named
    in the report {"files", "windows", "skipped"}; DataError when none can be read."""
    paths = [Path(p) for p in paths]
    names = names or [str(p) for p in paths]
    read, skipped = [], []
    for path, name in zip(paths, names):
        try:
            signal, starts, *_ = _read_windows(predictor, path, name, hop)
            read.append((signal, starts))
        except SigscopeError as e:
            skipped.append(error_line(e, {str(path): name}))
    if not read:
        raise DataError("none of the files could be read, so there is nothing to adapt to: " + "; ".join(skipped))
    windows = int(sum(len(starts) for _, starts in read))
    note = f"BatchNorm statistics adapted to {windows} windows of {len(read)} file(s)"
    members = predictor.members if isinstance(predictor, Ensemble) else [predictor]
    with _one_blas_thread():
        adapted = [adapt_batchnorm(m, np.concatenate([m.inputs(signal, starts) for signal, starts in read]), note=note)
                   for m in members]
    report = {"files": len(read), "windows": windows, "skipped": skipped}
    return (Ensemble(adapted) if isinstance(predictor, Ensemble) else adapted[0]), report


def adapt_to_uploads(predictor: Predictor | Ensemble, uploads: list[tuple[bytes, str]], hop: float | None = None
                     ) -> tuple[Predictor | Ensemble, dict]:
    """adapt_to_files for uploads (bytes, name), each written to a private temp file as in
    classify_bytes; uploads over MAX_UPLOAD_BYTES are left out (classify_bytes refuses them)."""
    kept = [(data, display_name(name)) for data, name in uploads if len(data) <= MAX_UPLOAD_BYTES]
    with _private_copies([data for data, _ in kept]) as paths:
        return adapt_to_files(predictor, paths, hop, [name for _, name in kept])


@contextmanager
def _private_copies(blobs: list[bytes]):
    """Paths of `blobs` written to a fresh private temp folder, each under a fixed name with a
    suffix chosen from its content (so a user's `../../x.wav` or `con.wav` never reaches a
    path); the folder is removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="sigscope-upload-"))
    try:
        paths = [folder / f"upload{i}{upload_suffix(data)}" for i, data in enumerate(blobs)]
        for path, data in zip(paths, blobs):
            path.write_bytes(data)
        yield paths
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _one_blas_thread():
    """numpy's BLAS single-threaded while classifying: its matrices here are small, and idle
    OpenBLAS threads spinning beside torch's made a 30 s clip 2-3x slower on a 2-core CPU."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an optional speed-up (threadpoolctl comes with scikit-learn)
        from contextlib import nullcontext
        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _curve(times: np.ndarray, values: np.ndarray) -> dict:
    return {"times": [round(float(t), 4) for t in times],
            "values": [None if not np.isfinite(v) else round(float(v), 4) for v in values]}


def _run_windows(predictor: Predictor, signal: np.ndarray, starts: np.ndarray, length: int, explain: str):
    """Probabilities (N, K), per-window attention summaries and stitched attention/saliency curves."""
    from core.models.attention import capture_attention

    use_attention = explain in ("attention", "all") or (explain == "auto" and predictor.has_attention)
    use_saliency = explain in ("saliency", "all") or (explain == "auto" and not predictor.has_attention)
    probs, batches = [], []
    model = predictor.model
    cams, sals, cam_layer = [], [], None
    for i in range(0, len(starts), BATCH):
        x = torch.from_numpy(predictor.inputs(signal, starts[i:i + BATCH])).to(predictor.device)
        with torch.no_grad():
            if use_attention:
                with capture_attention(model) as maps:
                    logits = model(x)
                batches.append(attention_summary(maps))
            else:
                logits = model(x)
        p = _softmax(logits.float().cpu().numpy())
        probs.append(p)
        if use_saliency:
            targets = torch.from_numpy(p.argmax(axis=1)).to(predictor.device)
            cam, cam_layer = grad_cam(model, x, targets, cam_layer)
            cams.append(cam)
            sals.append(input_saliency(model, x, targets))
    probs = np.concatenate(probs)
    duration = length / predictor.sample_rate
    start_s = starts / predictor.sample_rate
    layers = _concat_layers(batches)
    attention = []
    for layer in layers:
        spans = predictor.spans(layer.n_tokens)
        entry = {"layer": layer.layer, "kind": layer.kind, "heads": layer.heads, "shape": list(layer.shape),
                 "has_cls": layer.has_cls, "tokens": layer.n_tokens,
                 "token_seconds": round(predictor.input_shape[-1] / layer.n_tokens * predictor.step_seconds, 5)}
        key = "rollout" if layer.kind == "self" else "weights"
        curve = layer.rollout if layer.kind == "self" else layer.weights
        entry[key] = _curve(*stitch(curve, spans, start_s, duration))
        attention.append(entry)
    saliency = []
    if use_saliency:
        if cam_layer is not None:
            cam = np.concatenate(cams)
            saliency.append({"method": "grad_cam", "layer": cam_layer, "tokens": int(cam.shape[1]),
                             **_curve(*stitch(cam, predictor.spans(cam.shape[1]), start_s, duration))})
        sal = np.concatenate(sals)
        saliency.append({"method": "input_gradient", "layer": "input", "tokens": int(sal.shape[1]),
                         **_curve(*stitch(sal, predictor.spans(sal.shape[1]), start_s, duration))})
    return probs, layers, attention, saliency


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


def window_attention(predictor: Predictor, prediction: Prediction, index: int) -> list[LayerAttention]:
    """Full attention matrices of one window of a prediction: per layer (1, H, T', T') or
    (1, T') in `weights_full` (recomputed, so a long file's matrices are never all kept)."""
    from core.models.attention import capture_attention

    if not 0 <= index < len(prediction.starts):
        raise ConfigError(f"window {index} does not exist; the prediction has {len(prediction.starts)} windows")
    x = torch.from_numpy(predictor.inputs(prediction.signal, prediction.starts[index:index + 1])).to(predictor.device)
    with torch.no_grad(), capture_attention(predictor.model) as maps:
        predictor.model(x)
    return attention_summary(maps, keep_full=True)


def classify_files(predictor: Predictor, paths: Iterable[str | Path], **kwargs) -> list[dict]:
    """classify_file for each path as JSON objects; a file that cannot be classified gives
    {"file", "error"} with one line, and the others go on."""
    out = []
    for path in paths:
        try:
            out.append(classify_file(predictor, path, **kwargs).to_json())
        except Exception as e:  # noqa: BLE001 - one bad file never stops the batch
            out.append({"file": str(path), "error": error_line(e)})
    return out


def error_line(error: BaseException, replace: dict[str, str] | None = None) -> str:
    """One line a person can act on; temp paths replaced by the name the user gave."""
    text = str(error) if isinstance(error, SigscopeError) else f"{type(error).__name__}: {error}"
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    return (text.strip().splitlines() or [type(error).__name__])[0]


# ---- uploads -----------------------------------------------------------------------------
_SUFFIX = {"wav": ".wav", "flac": ".flac", "ogg": ".ogg", "mp3": ".mp3"}


def upload_suffix(data: bytes) -> str:
    """A safe suffix chosen from the content: .wav/.flac/.ogg/.mp3, .csv.gz or .csv."""
    kind = sniff_format(data[:4096])
    if kind is not None:
        return _SUFFIX[kind]
    return ".csv.gz" if data[:2] == b"\x1f\x8b" else ".csv"


def classify_bytes(predictor: Predictor, data: bytes, name: str, **kwargs) -> Prediction:
    """Classify an upload. `name` is only a label: the bytes go to a fresh private temp
    folder under a fixed name with a suffix chosen from the content (so `../../x.wav` or
    `con.wav` never reach a path), and the folder is removed afterwards. Uploads over
    MAX_UPLOAD_BYTES are refused before anything is written."""
    label = display_name(name)
    if len(data) > MAX_UPLOAD_BYTES:
        raise DataError(f"{label}: {len(data) / 2**20:.1f} MiB is over the {MAX_UPLOAD_BYTES // 2**20} MiB upload "
                        "limit; cut the recording into shorter files")
    with _private_copies([data]) as (path,):
        try:
            return classify_file(predictor, path, name=label, **kwargs)
        except SigscopeError as e:
            raise type(e)(error_line(e, {str(path): label})) from None


def display_name(name: str, limit: int = 120) -> str:
    """A user-given file name made safe to show: control characters dropped, length capped.
    It is never used as a path."""
    text = "".join(ch for ch in str(name or "upload") if ch.isprintable()).strip() or "upload"
    return text if len(text) <= limit else text[:limit - 1] + "…"
