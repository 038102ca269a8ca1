"""Typed dataclasses for every choice a run makes. A run is fully described by its JSON.

    cfg = RunConfig()                                # quick default: synthetic IMU
    cfg = cfg.with_overrides({"train.epochs": 3, "model.hparams.depth": 2})   # checked, or ConfigError
    RunConfig.from_json(cfg.to_json()) == cfg        # round-trips
    cfg.validated()                                  # canonical values, or ConfigError listing every problem

Each field is declared once with `param(...)`: its type, default, range or choices, unit,
help and the conditions under which it applies (a `core.spec.Param`). Choice lists that
belong to a registry (sources, models, optimizers, schedules, features, probes) are read
from that registry, so no list of choices is written twice. Families that depend on a
choice live with their owner: a model's hyperparameters in its zoo module (`model.hparams`),
a source's options in its source module (`data.options`), an augmentation's parameters in
core/data/augment.py (`data.augment`). `python -m core options` lists them all.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from core.errors import ConfigError
from core.spec import Param, When


def param(default: Any, type: str, help: str, **kw: Any) -> Any:
    """A dataclass field declared by its Param (the field's name fills the Param's)."""
    p = Param(name="", type=type, default=default, help=help, **kw)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"param": p})
    return field(default=default, metadata={"param": p})


def section(cls: type) -> Any:
    """A nested config section (its fields get keys under the section's name)."""
    return field(default_factory=cls, metadata={"section": cls})


MAX_CONFIG_CHARS = 1_000_000  # a run config is a few kB; a file this large is the wrong file


@functools.cache
def _fields_of(cls: type) -> tuple[dict, frozenset]:
    """A config class's type hints and field names, read once (get_type_hints evaluates the
    annotations each time: a third of `with_overrides` before)."""
    return get_type_hints(cls), frozenset(f.name for f in fields(cls))


class _Config:
    """to_dict / from_dict for nested dataclasses; unknown keys are refused by name."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Any:
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected an object of settings, got {type(data).__name__} "
                              f"{json.dumps(data, default=str)[:60]}")
        data = dict(data or {})
        hints, known = _fields_of(cls)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown key(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        kwargs = {}
        for name, value in data.items():
            hint = hints.get(name)
            if isinstance(hint, type) and issubclass(hint, _Config):
                value = hint.from_dict(value)
            kwargs[name] = value
        return cls(**kwargs)


# ---- choices owned by registries (read when asked, so importing config stays cheap) -----------
def _sources() -> list[str]:
    from core.data.sources import source_names
    return source_names()


def _source_help() -> dict:
    from core.data.sources import get_source
    return {n: get_source(n).description for n in _sources()}


def _features() -> tuple:
    from core.data.features import FEATURE_HELP
    return tuple(FEATURE_HELP)


def _feature_help() -> dict:
    from core.data.features import FEATURE_HELP
    return FEATURE_HELP


def _normalizations() -> tuple:
    from core.data.normalize import KIND_HELP
    return tuple(KIND_HELP)


def _normalization_help() -> dict:
    from core.data.normalize import KIND_HELP
    return KIND_HELP


def _splits() -> tuple:
    from core.data.splits import SPLIT_HELP
    return tuple(SPLIT_HELP)


def _split_help() -> dict:
    from core.data.splits import SPLIT_HELP
    return SPLIT_HELP


def _label_modes() -> dict:
    from core.data.windowing import LABEL_MODES
    return LABEL_MODES


def _models() -> list[str]:
    from core.models import registry
    return registry.list_models()


def _model_help() -> dict:
    from core.models import registry
    return {n: registry.spec(n).description for n in registry.list_models()}


def _optimizers() -> dict:
    from core.train.optimizers import OPTIMIZERS
    return {name: s.help for name, s in OPTIMIZERS.items()}


def _users(module: str, registry: str, field_name: str):
    """The names in a registry (module.REGISTRY: name -> spec with `uses`) that read `field_name`."""
    def users() -> tuple:
        import importlib
        entries = getattr(importlib.import_module(module), registry)
        return tuple(n for n, s in entries.items() if field_name in s.uses)
    return users


def _optimizers_using(name: str):
    return _users("core.train.optimizers", "OPTIMIZERS", name)


def _schedules() -> dict:
    from core.train.schedulers import SCHEDULES
    return {name: s.help for name, s in SCHEDULES.items()}


def _schedules_using(name: str):
    return _users("core.train.schedulers", "SCHEDULES", name)


def _probes() -> dict:
    from core.train.probes import PROBES
    return {name: cls.help for name, cls in PROBES.items()}


def _metrics() -> dict:
    from core.train.metrics import DIRECTIONS
    return {f"{split}_{m}": f"{m} on the {'validation' if split == 'val' else 'training'} split "
            f"({'lower' if d == 'min' else 'higher'} is better)"
            for split in ("val", "train") for m, d in DIRECTIONS.items()}


def _validation_help() -> dict:
    from core.data.splits import VALIDATION_HELP
    return VALIDATION_HELP


def _fits() -> dict:
    from core.train.closed_form import FIT_HELP
    return FIT_HELP


def _closed_form_models() -> tuple:
    from core.train.closed_form import closed_form_models
    return closed_form_models()


def _devices() -> tuple:
    return ("auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(16)), "mps")


AUDIO = When("data.signal", "==", "audio")
WINDOWED = When("data.windowed", "==", True)
FEATURED = When("data.features", "!=", "raw")
# train.amp's choices: what each means and the torch dtype it autocasts to (None = fp32)
AMP = {"off": ("fp32", None), "bf16": ("bfloat16 autocast (CPU and recent GPUs)", "bfloat16"),
       "fp16": ("float16 autocast with loss scaling (CUDA GPUs only; fp32 elsewhere)", "float16")}
AMP_HELP = {name: text for name, (text, _) in AMP.items()}


def amp_dtype(amp: str):
    """The torch dtype of a train.amp choice (None = fp32)."""
    import torch
    return getattr(torch, AMP[amp][1]) if AMP[amp][1] else None


@dataclass
class AugmentConfig(_Config):
    """One augmentation applied on the fly to training batches only (see core.data.augment)."""

    name: str = "jitter"
    p: float = 0.5  # probability per example (core.spec.AUGMENT_P)
    params: dict = field(default_factory=dict)


SPLITS = ("train", "val", "test")  # what a DataConfig resolves to (core.data.load), in this order


@dataclass
class DataConfig(_Config):
    """Which data, how it is windowed, featurized, normalized, augmented and split."""

    source: str = param("synthetic_imu", "choice", "where the examples come from (`python -m core data list`)",
                        choices=_sources, choice_help=_source_help, label="Source", describe_choice=True)
    path: str | None = param(None, "str", "a file or folder of your own data", nullable=True,
                             null_means="the source's bundled or default data", label="Path")
    options: dict = field(default_factory=dict)  # the source's own options (its SourceSpec.options)
    window: int | str = param(128, "samples", "length of each window cut from a stream", low=2, high=1_000_000,
                              unit="samples", when=(WINDOWED,), label="Window")
    stride: int | str = param(64, "samples", "samples between window starts (window/2 = 50 % overlap)", low=1,
                              high=1_000_000, unit="samples", when=(WINDOWED,), label="Stride")
    label_mode: str = param("majority", "choice", "how a window spanning two labels is labelled",
                            choices=lambda: tuple(_label_modes()), choice_help=_label_modes, when=(WINDOWED,),
                            label="Mixed windows", advanced=True)
    sample_rate: int = param(8000, "int", "audio is decoded and resampled to this rate", low=1000, high=192_000,
                             unit="Hz", when=(AUDIO,), label="Sample rate (Hz)", step=1000)
    clip_seconds: float = param(1.0, "float", "each recording is padded or cropped to this length", low=0.05,
                                high=60.0, unit="s", when=(AUDIO,), label="Clip (s)", step=0.1)
    features: str = param("raw", "choice", "what the model sees of each clip", choices=_features,
                          choice_help=_feature_help, when=(AUDIO,), label="Features", describe_choice=True)
    n_mels: int = param(40, "int", "mel bands (rows of the spectrogram planes)", low=2, high=512,
                        when=(AUDIO, FEATURED), label="Mel bands")
    n_fft: int = param(256, "int", "FFT size of the short-time Fourier transform", low=16, high=16384,
                       unit="samples", when=(AUDIO, FEATURED), label="FFT size")
    hop_length: int = param(64, "int", "samples between STFT frames", low=1, high=16384, unit="samples",
                            when=(AUDIO, FEATURED), label="Hop (samples)")
    n_mfcc: int = param(20, "int", "MFCC coefficients kept", low=1, high=256,
                        when=(AUDIO, When("data.features", "in", ("mfcc", "mfcc_deltas"))), label="MFCCs")
    mfcc_c0: bool = param(True, "bool", "keep c0 (log energy, which follows loudness) among the MFCCs",
                          when=(AUDIO, When("data.features", "in", ("mfcc", "mfcc_deltas", "stack4"))),
                          label="Keep c0")
    normalization: str = param("zscore", "choice", "how inputs are scaled (statistics from the training split)",
                               choices=_normalizations, choice_help=_normalization_help, label="Normalization")
    split: str = param("stratified", "choice", "how examples are divided into train, validation and test",
                       choices=_splits, choice_help=_split_help, label="Split", describe_choice=True)
    validation: str = param("holdout", "choice", "whether a validation slice is held out of the training data",
                            choices=lambda: tuple(_validation_help()), choice_help=_validation_help,
                            label="Validation", describe_choice=True)
    val_fraction: float = param(0.15, "float", "share of examples (or groups) for validation", low=0.0, high=0.9,
                                when=(When("data.validation", "!=", "none"),), label="Validation share", step=0.05)
    test_fraction: float = param(0.2, "float", "share of examples (or groups) for testing", low=0.0, high=0.9,
                                 when=(When("data.split", "!=", "fixed"),), label="Test share", step=0.05)
    test_groups: list = param([], "list", "subjects/speakers held out for testing (empty: drawn by seed)",
                              item=Param("group", "str", "", "a subject or speaker id"),
                              when=(When("data.split", "==", "subject"),), label="Test groups")
    val_groups: list = param([], "list", "subjects/speakers held out for validation (empty: drawn by seed)",
                             item=Param("group", "str", "", "a subject or speaker id"),
                             when=(When("data.split", "==", "subject"),), label="Validation groups")
    val_from: str = param("groups", "choice", "where validation comes from with a subject split",
                          choices=("groups", "examples"),
                          choice_help={"groups": "whole held-out groups, like the test",
                                       "examples": "a stratified share of the training groups' examples (every "
                                                   "non-test group trains, e.g. leave-one-speaker-out)"},
                          when=(When("data.split", "==", "subject"),), label="Validation from")
    split_seed: int = param(0, "int", "seed of the split (and of max_examples' draw)", low=0, high=2**31 - 1,
                            label="Split seed", advanced=True)
    augment: list = field(default_factory=list)  # AugmentConfig dicts: data.augment.<name>.p / .params.<x>
    max_examples: int | None = param(None, "int", "use at most this many examples, drawn per class (quick runs)",
                                     low=2, high=10**9, nullable=True, null_means="all of them",
                                     label="Max examples", advanced=True)
    folds: int | None = param(None, "int", "cross-validation: the training subjects/speakers are divided into this "
                              "many folds and the run tests on one of them", low=2, high=100, nullable=True,
                              null_means="no cross-validation", label="CV folds", advanced=True, sweep=False)
    fold: int = param(0, "int", "the fold this run tests on (0 to folds - 1); the other folds train", low=0, high=99,
                      when=(When("data.folds", "!=", None),), label="Tested fold", advanced=True, sweep=False)
    # Marks from Explore (core.explore.marks), recorded so the run stays reproducible: window ids
    # left out of the train and validation splits, and window id -> class name relabels there.
    exclude: list = field(default_factory=list)
    relabel: dict = field(default_factory=dict)

    def augmentations(self) -> list[AugmentConfig]:
        return [a if isinstance(a, AugmentConfig) else AugmentConfig.from_dict(a) for a in self.augment]


@dataclass
class ModelConfig(_Config):
    name: str = param("resnet1d", "choice", "the zoo model (`python -m core models`)", choices=_models,
                      choice_help=_model_help, label="Model", describe_choice=True)
    hparams: dict = field(default_factory=dict)  # its hyperparameters (registry spec); defaults fill the rest


@dataclass
class OptimConfig(_Config):
    name: str = param("adamw", "choice", "the optimizer", choices=lambda: tuple(_optimizers()),
                      choice_help=_optimizers, label="Optimizer")
    lr: float = param(1e-3, "float", "learning rate (the peak, for schedules that warm up)", low=1e-7, high=10.0,
                      log=True, label="Learning rate")
    weight_decay: float = param(1e-2, "float", "L2 weight decay (decoupled for adamw)", low=0.0, high=1.0,
                                label="Weight decay", step=1e-3)
    momentum: float = param(0.9, "float", "momentum", low=0.0, high=0.999,
                            when=(When("optim.name", "in", _optimizers_using("momentum")),), label="Momentum",
                            step=0.01)
    betas: tuple = param((0.9, 0.999), "list", "Adam's decay rates of the first and second moments",
                         item=Param("beta", "float", 0.9, "a decay rate", low=0.0, high=0.9999), low=2, high=2,
                         when=(When("optim.name", "in", _optimizers_using("betas")),), label="Betas")


@dataclass
class ScheduleConfig(_Config):
    name: str = param("cosine", "choice", "how the learning rate moves over training",
                      choices=lambda: tuple(_schedules()), choice_help=_schedules, label="Schedule",
                      describe_choice=True)
    warmup_epochs: float = param(0.0, "float", "linear warm-up length (0 = none; warmup_exp_cosine: 0 = its "
                                               "scaled 15/120)", low=0.0, high=10_000.0, unit="epochs",
                                 when=(When("schedule.name", "in", _schedules_using("warmup_epochs")),),
                                 label="Warm-up epochs", step=0.5)
    step_size: int = param(10, "int", "epochs between decays", low=1, high=100_000, unit="epochs",
                           when=(When("schedule.name", "in", _schedules_using("step_size")),),
                           label="Step size (epochs)")
    gamma: float = param(0.5, "float", "factor applied at each step", low=0.01, high=1.0,
                         when=(When("schedule.name", "in", _schedules_using("gamma")),), label="Gamma", step=0.05)
    min_lr: float = param(1e-6, "float", "the learning rate it ends at (or never goes below)", low=0.0, high=10.0,
                          when=(When("schedule.name", "in", _schedules_using("min_lr")),), label="Min lr")
    plateau_patience: int = param(3, "int", "epochs without a better validation loss before lowering the rate",
                                  low=1, high=1000, unit="epochs",
                                  when=(When("schedule.name", "in", _schedules_using("plateau_patience")),),
                                  label="Patience (epochs)")
    plateau_factor: float = param(0.5, "float", "factor applied when the validation loss stalls", low=0.01,
                                  high=0.99, when=(When("schedule.name", "in", _schedules_using("plateau_factor")),),
                                  label="Factor", step=0.05)


@dataclass
class EarlyStoppingConfig(_Config):
    enabled: bool = param(False, "bool", "stop when the watched metric stops improving", label="Early stopping")
    metric: str = param("val_loss", "choice", "the metric that picks the best checkpoint (and stops early)",
                        choices=lambda: tuple(_metrics()), choice_help=_metrics, label="Watch")
    mode: str = param("min", "choice", "whether lower or higher is better for that metric", choices=("min", "max"),
                      label="Better is")
    patience: int = param(5, "int", "epochs without improvement before stopping", low=1, high=10_000,
                          unit="epochs", when=(When("train.early_stopping.enabled", "==", True),), label="Patience")


PROBING = When("train.probes.enabled", "==", True)


@dataclass
class ProbeConfig(_Config):
    enabled: bool = param(True, "bool", "record live health statistics while training", resume=True,
                          label="Probes")
    # empty = scaled to the run's length, so a 30-step run and a 6,000-step run both get curves
    # and heat maps with enough columns (a fixed 50 gave a 30-step run one histogram)
    every_n_steps: int | None = param(None, "int", "optimizer steps between probe samples", low=1, high=10**6,
                                      unit="steps", resume=True, when=(PROBING,), label="Probe every N steps",
                                      nullable=True, null_means="auto: about 50 samples over the run")
    histogram_every_n_steps: int | None = param(None, "int", "optimizer steps between histograms (0 = none)", low=0,
                                                high=10**6, unit="steps", resume=True, when=(PROBING,),
                                                label="Histograms every N steps", nullable=True,
                                                null_means="auto: about 20 histograms over the run")
    # the activation probes read the first `sample` examples of a probe step's batch: their cost and
    # their statistics (a unit is dead when it is 0 for every example seen) do not depend on the batch size
    sample: int = param(16, "int", "examples of a probe step's batch that the activation statistics describe "
                        "(0 = the whole batch)", low=0, high=10**6, unit="examples", resume=True, when=(PROBING,),
                        label="Probe sample")
    probes: list = param(["grad_norm", "dead_relu", "activations", "weights", "histograms"], "list",
                         "which probes run", item=Param("probe", "choice", "grad_norm", "a probe",
                                                        choices=lambda: tuple(_probes()), choice_help=_probes),
                         resume=True, when=(PROBING,), label="Which probes", sweep=False)


@dataclass
class TrainConfig(_Config):
    epochs: int = param(5, "int", "passes over the training split", low=1, high=100_000, unit="epochs",
                        resume=True, label="Epochs")
    fit: str = param("gradient", "choice", "how the weights are found", choices=lambda: tuple(_fits()),
                     choice_help=_fits, when=(When("model.name", "in", _closed_form_models),), label="Fit",
                     describe_choice=True)
    batch_size: int = param(64, "int", "examples per optimizer step", low=1, high=65_536, log=True,
                            label="Batch size")
    seed: int = param(0, "int", "seed of weights, shuffling, dropout and augmentation", low=0, high=2**32 - 1,
                      label="Seed")
    device: str = param("auto", "choice", "where to train: auto = the job's GPU, else cpu", choices=_devices,
                        resume=True, label="Device", sweep=False,
                        allowed_text="'auto', 'cpu', 'cuda', 'cuda:N' (N = 0..15) or 'mps'")
    amp: str = param("off", "choice", "mixed precision", choices=tuple(AMP_HELP), choice_help=AMP_HELP,
                     label="Mixed precision")
    grad_checkpointing: bool = param(False, "bool", "recompute block activations in backward: less memory, "
                                                    "more compute",
                                     when=(When("model.supports_checkpointing", "==", True),),
                                     label="Gradient checkpointing")
    compile: bool = param(False, "bool", "torch.compile the model for the training steps (TorchInductor): a one-time "
                                         "compile of seconds to minutes, then faster steps where it pays. On CPU it "
                                         "mostly does not (bench/throughput.py --compare compile: 0.65-1.29x per "
                                         "step by model), so it is off by default; probe steps and evaluation run "
                                         "the model as written",
                          label="torch.compile", sweep=False, advanced=True)
    grad_clip: float | None = param(1.0, "float", "largest global L2 norm of the gradients", low=1e-6, high=1e6,
                                    log=True, nullable=True, null_means="no clipping", label="Max grad norm")
    label_smoothing: float = param(0.0, "float", "share of each target spread over the other classes", low=0.0,
                                   high=0.9, label="Label smoothing", step=0.05)
    mixup_alpha: float = param(0.0, "float", "mixup: blend example pairs and labels with a Beta(α, α) weight "
                                             "(0 = off; 0.2-0.4 is usual)", low=0.0, high=10.0, label="Mixup α",
                               step=0.1)
    processes: int = param(1, "int", "processes that train the run together (PyTorch DDP under torchrun: one per "
                                     "GPU, or CPU processes sharing the cores); train.batch_size is split among them",
                           low=1, high=64, resume=True, label="Processes per run", sweep=False)
    num_workers: int | None = param(None, "int", "DataLoader worker processes (0 = in the training process)",
                                    low=0, high=64, nullable=True,
                                    null_means="auto: in the training process, and in one worker process (on "
                                               "one of the run's threads) from the next epoch once an epoch's steps "
                                               "waited over 5 % of it for their batches",
                                    resume=True, label="Loader workers", sweep=False, advanced=True)
    early_stopping: EarlyStoppingConfig = section(EarlyStoppingConfig)
    probes: ProbeConfig = section(ProbeConfig)
    checkpoint_every_epoch: bool = param(True, "bool", "save the last checkpoint after every epoch (resume needs "
                                                       "it)", resume=True, label="Checkpoint every epoch",
                                         sweep=False, advanced=True)


@dataclass
class RunConfig(_Config):
    name: str = param("", "str", "a name for the run (empty: model on source)", label="Run name", sweep=False)
    data: DataConfig = section(DataConfig)
    model: ModelConfig = section(ModelConfig)
    optim: OptimConfig = section(OptimConfig)
    schedule: ScheduleConfig = section(ScheduleConfig)
    train: TrainConfig = section(TrainConfig)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        if len(text) > MAX_CONFIG_CHARS:
            raise ConfigError(f"run config is {len(text):,} characters; a run config is a few kB (the limit is "
                              f"{MAX_CONFIG_CHARS:,}): is this the right file?")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"run config is not valid JSON: {e}") from None
        except RecursionError:
            raise ConfigError("run config is not a run config: its JSON is nested thousands of levels deep") from None
        except ValueError as e:  # a number with thousands of digits, ...
            raise ConfigError(f"run config holds a value JSON cannot read here: {str(e).split(';')[0]}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict | None) -> "RunConfig":
        cfg = super().from_dict(data)
        if isinstance(cfg.optim.betas, list):
            cfg.optim.betas = tuple(cfg.optim.betas)
        return cfg

    def with_overrides(self, overrides: dict[str, Any], explicit: bool = True) -> "RunConfig":
        """A validated copy with dotted keys set, e.g. {"train.epochs": 3, "model.hparams.depth": 2,
        "data.augment.jitter.p": 0.3}. String values (from the CLI) are parsed; a key that does not
        exist or does not apply to the result, or any invalid value, raises ConfigError listing
        every problem (see core.spec)."""
        from core import spec
        return spec.validate(spec.apply_overrides(self, overrides, explicit=explicit))

    def validated(self, environment: bool = True) -> "RunConfig":
        """This config with canonical values, or ConfigError with one line per problem."""
        from core import spec
        return spec.validate(self, environment)

    def checks(self, environment: bool = True) -> list[tuple[str, str]]:
        """Cross-field problems as (key, message); the value checks come first (core.spec)."""
        from core.config_checks import run_checks
        return run_checks(self, environment)


def parse_value(value: Any) -> Any:
    """CLI strings -> JSON values where possible ("3" -> 3, "true" -> True, "[1,2]" -> [1, 2])."""
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return value
    return value if isinstance(parsed, float) and parsed != parsed else parsed  # keep "NaN" as text: refused later


def parse_sets(pairs: list[str] | None) -> dict[str, Any]:
    """["a.b=1", "c=x"] -> {"a.b": 1, "c": "x"}; refuses an item without '='."""
    out: dict[str, Any] = {}
    for item in pairs or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: write key=value, e.g. --set train.epochs=10")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value.strip())
    return out
