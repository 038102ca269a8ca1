"""Cross-field checks of a RunConfig, run by `core.spec.validate` after every value passed
its own Param: each returns (key, message) pairs, the message naming the key, what was given
and what to do. Checks that need the data itself (channel counts, group names) stay with the
loader; everything that can be told from the config alone is told here, before a run exists.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import RunConfig

Found = list[tuple[str, str]]


def run_checks(cfg: "RunConfig", environment: bool = True) -> Found:
    found = _data(cfg) + _model(cfg) + _training(cfg)
    if environment:
        found += _device(cfg)
    return found


def _data(cfg: "RunConfig") -> Found:
    from core.data.augment import AUGMENTATIONS
    from core.data.sources import get_source

    d = cfg.data
    source = get_source(d.source)
    found: Found = []
    if source.needs_path and not d.path:
        found.append(("data.path", f"data.path: source {d.source!r} has no bundled data; give the file or folder "
                                   "of your recordings as data.path"))
    if d.split != "fixed" and d.validation != "none" and d.val_fraction + d.test_fraction >= 1.0:
        found.append(("data.test_fraction", f"data.val_fraction + data.test_fraction = "
                                            f"{d.val_fraction + d.test_fraction:.2f} leaves no training data; "
                                            "keep the sum below 1"))
    audio = source.signal == "audio"
    if audio and d.features != "raw":
        bins = d.n_fft // 2 + 1
        if d.n_mels > bins:
            found.append(("data.n_mels", f"data.n_mels={d.n_mels} exceeds the {bins} FFT bins of "
                                         f"data.n_fft={d.n_fft}; lower n_mels or raise n_fft"))
        if d.features in ("mfcc", "mfcc_deltas"):
            most = d.n_mels - (0 if d.mfcc_c0 else 1)
            if d.n_mfcc > most:
                found.append(("data.n_mfcc", f"data.n_mfcc={d.n_mfcc} must be at most data.n_mels"
                                             f"{'' if d.mfcc_c0 else ' - 1 (c0 is dropped)'} = {most}"))
        clip = int(round(d.clip_seconds * d.sample_rate))
        if clip < d.n_fft // 2 + 1:
            found.append(("data.clip_seconds", f"data.clip_seconds={d.clip_seconds:g} s is {clip} samples at "
                                               f"{d.sample_rate} Hz, shorter than half an FFT (n_fft={d.n_fft}); "
                                               "use longer clips or a smaller n_fft"))
    if d.normalization == "per_utterance" and not (audio and d.features != "raw"):
        found.append(("data.normalization", "data.normalization='per_utterance' needs audio features "
                                            "(data.features logmel, mfcc, mfcc_deltas or stack4); use "
                                            "'per_example' or 'zscore'"))
    if source.windowed and not source.nominal_rate and not d.options.get("sample_rate"):
        for name in ("window", "stride"):
            if not isinstance(getattr(d, name), int):
                found.append((f"data.{name}", f"data.{name}={getattr(d, name)!r} is in seconds, but source "
                                              f"{d.source!r} has no known rate; give samples or "
                                              "data.options.sample_rate"))
    for a in d.augmentations():
        spec = AUGMENTATIONS[a.name]
        if source.signal not in spec.signals:
            found.append((f"data.augment.{a.name}", f"data.augment: {a.name!r} is for {'/'.join(spec.signals)} "
                                                    f"data, and {d.source!r} gives {source.signal}; remove it"))
        elif a.name == "spec_freq_mask" and d.features == "raw":
            found.append((f"data.augment.{a.name}", "data.augment: 'spec_freq_mask' needs frequency rows; use "
                                                    "data.features logmel, mfcc, mfcc_deltas or stack4"))
    return found


def static_length(cfg: "RunConfig") -> int | None:
    """The model input's time length, where the config alone tells it (None otherwise)."""
    from core.data.sources import get_source
    from core.data.windowing import seconds_or_samples
    from core.errors import SigscopeError

    d = cfg.data
    source = get_source(d.source)
    try:
        if source.signal == "audio":
            clip = int(round(d.clip_seconds * d.sample_rate))
            return clip if d.features == "raw" else 1 + clip // d.hop_length
        if source.windowed:
            rate = d.options.get("sample_rate") or source.nominal_rate or 1.0
            return seconds_or_samples(d.window, rate, "window")
    except SigscopeError:
        return None
    return None


def _model(cfg: "RunConfig") -> Found:
    from core.data.features import INPUT_KIND
    from core.data.sources import get_source
    from core.models import registry

    spec = registry.spec(cfg.model.name)
    source = get_source(cfg.data.source)
    kind = "imu" if source.signal == "imu" else INPUT_KIND[cfg.data.features]
    found: Found = []
    if spec.input_kind != kind:
        fits = [f for f, k in INPUT_KIND.items() if k == spec.input_kind]
        hint = (f"set data.features to {' or '.join(repr(f) for f in fits)}" if source.signal == "audio" and fits
                else f"pick a model that takes {kind} input")
        found.append(("model.name", f"model.name={cfg.model.name!r} takes {spec.input_kind} input, but "
                                    f"data.source={cfg.data.source!r}"
                                    + (f" with data.features={cfg.data.features!r}" if source.signal == "audio" else "")
                                    + f" gives {kind}; {hint}"))
    hp = {**spec.defaults(), **cfg.model.hparams}
    problems = spec.constraints(hp, None) if spec.constraints else []
    length = static_length(cfg)
    if length is not None and spec.min_length is not None and length < spec.min_length(hp):
        problems.append(f"input length {length} is too short at these settings: needs at least "
                        f"{spec.min_length(hp)} time steps (raise data.window or clip_seconds, or lower the depth)")
    found += [("model.hparams", f"model.hparams ({cfg.model.name}): {p}") for p in problems]
    return found


def _training(cfg: "RunConfig") -> Found:
    from core.train.metrics import DIRECTIONS

    t, es = cfg.train, cfg.train.early_stopping
    found: Found = []
    metric = es.metric.split("_", 1)[1] if "_" in es.metric else es.metric
    if DIRECTIONS.get(metric) and DIRECTIONS[metric] != es.mode:
        found.append(("train.early_stopping.mode", f"train.early_stopping.mode={es.mode!r} with metric "
                                                   f"{es.metric!r} would keep the worst epoch; use "
                                                   f"{DIRECTIONS[metric]!r}"))
    no_validation = cfg.data.val_fraction == 0 and not (cfg.data.split == "subject" and cfg.data.val_groups)
    if no_validation and es.enabled and es.metric.startswith("val_"):
        found.append(("train.early_stopping.metric", f"train.early_stopping watches {es.metric!r} but "
                                                     "data.val_fraction=0 leaves no validation split; raise "
                                                     "val_fraction or watch a train_ metric"))
    if no_validation and cfg.schedule.name == "plateau":
        found.append(("schedule.name", "schedule.name='plateau' watches the validation loss but data.val_fraction=0 "
                                       "leaves no validation split; raise val_fraction or pick another schedule"))
    if t.batch_size % t.processes:
        found.append(("train.batch_size", f"train.batch_size={t.batch_size} must be divisible by train.processes="
                                          f"{t.processes}: each process takes an equal share of the global batch"))
    if t.amp == "fp16" and t.device == "cpu":
        found.append(("train.amp", "train.amp='fp16' needs a CUDA GPU and train.device is 'cpu'; use 'bf16' on a CPU"))
    return found


def _device(cfg: "RunConfig") -> Found:
    import torch

    from core.launch import max_processes

    device = cfg.train.device
    most = max_processes(device)
    if cfg.train.processes > most:
        where = "GPU(s)" if device != "cpu" and torch.cuda.is_available() else "CPU core(s)"
        return [("train.processes", f"train.processes={cfg.train.processes} is more than this machine sensibly holds: "
                                    f"it has {most} {where}; use at most {most}")]
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if count == 0:
            return [("train.device", f"train.device={device!r} but no CUDA GPU is visible on this machine; use "
                                     "'auto' or 'cpu'")]
        if index >= count:
            return [("train.device", f"train.device={device!r} but this machine has {count} GPU(s) "
                                     f"(cuda:0..cuda:{count - 1})")]
    if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        return [("train.device", "train.device='mps' but Apple's MPS is not available here; use 'auto' or 'cpu'")]
    return []
