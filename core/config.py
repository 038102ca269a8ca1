"""Typed dataclasses for every choice a run makes. A run is fully described by its JSON.

    cfg = RunConfig()                                # quick default: synthetic IMU
    cfg = cfg.with_overrides({"train.epochs": 3, "model.hparams.depth": 2})
    RunConfig.from_json(cfg.to_json()) == cfg        # round-trips
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from core.errors import ConfigError


class _Config:
    """to_dict / from_dict for nested dataclasses; unknown keys are refused by name."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Any:
        data = dict(data or {})
        hints = get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown key(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        kwargs = {}
        for name, value in data.items():
            hint = hints.get(name)
            if isinstance(hint, type) and issubclass(hint, _Config) and isinstance(value, dict):
                value = hint.from_dict(value)
            kwargs[name] = value
        return cls(**kwargs)


@dataclass
class AugmentConfig(_Config):
    """One augmentation applied on the fly to training batches only."""

    name: str = "jitter"  # see core.data.augment for the list
    p: float = 0.5  # probability per example
    params: dict = field(default_factory=dict)


@dataclass
class DataConfig(_Config):
    """Which data, how it is windowed, featurized, normalized, augmented and split."""

    source: str = "synthetic_imu"  # see `python -m core data list`
    path: str | None = None  # file or folder; None = the source's bundled/default data
    options: dict = field(default_factory=dict)  # source-specific (e.g. {"classes": "basic6"})
    # windowing of streams (IMU); audio clips use clip_seconds
    window: int = 128  # samples per window
    stride: int = 64  # samples between window starts
    label_mode: str = "majority"  # "majority" | "drop_mixed"
    # audio
    sample_rate: int = 8000
    clip_seconds: float = 1.0
    features: str = "raw"  # "raw" | "logmel" | "mfcc" | "mfcc_deltas" | "stack4"
    n_mels: int = 40
    n_fft: int = 256
    hop_length: int = 64
    n_mfcc: int = 20
    mfcc_c0: bool = True
    # normalization fitted on the training split only
    normalization: str = "zscore"  # "none" | "zscore" | "robust" | "per_example" | "per_utterance"
    # splits
    split: str = "stratified"  # "random" | "stratified" | "subject" | "fixed"
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    test_groups: list = field(default_factory=list)  # subjects/speakers held out when split="subject"
    val_groups: list = field(default_factory=list)
    # split="subject": "groups" = validation is whole held-out groups too; "examples" = a stratified
    # val_fraction of the training groups' examples (keeps every non-test group for training, e.g.
    # leave-one-speaker-out over 5 speakers)
    val_from: str = "groups"
    split_seed: int = 0
    augment: list = field(default_factory=list)  # list of AugmentConfig dicts
    max_examples: int | None = None  # cap (quick runs, tests)

    def augmentations(self) -> list[AugmentConfig]:
        return [a if isinstance(a, AugmentConfig) else AugmentConfig.from_dict(a) for a in self.augment]


@dataclass
class ModelConfig(_Config):
    name: str = "resnet1d"
    hparams: dict = field(default_factory=dict)  # overrides of the registry defaults


@dataclass
class OptimConfig(_Config):
    name: str = "adamw"  # "adam" | "adamw" | "sgd"
    lr: float = 1e-3
    weight_decay: float = 1e-2
    momentum: float = 0.9  # sgd only
    betas: tuple = (0.9, 0.999)


@dataclass
class ScheduleConfig(_Config):
    name: str = "cosine"  # "none" | "cosine" | "onecycle" | "step" | "warmup_exp_cosine" | "plateau"
    warmup_epochs: float = 0.0
    step_size: int = 10  # step
    gamma: float = 0.5  # step / exp decay factor
    min_lr: float = 1e-6
    plateau_patience: int = 3
    plateau_factor: float = 0.5


@dataclass
class EarlyStoppingConfig(_Config):
    enabled: bool = False
    metric: str = "val_loss"
    mode: str = "min"  # "min" | "max"
    patience: int = 5


@dataclass
class ProbeConfig(_Config):
    enabled: bool = True
    every_n_steps: int = 10
    histogram_every_n_steps: int = 50
    probes: list = field(default_factory=lambda: ["grad_norm", "dead_relu", "activations", "weights"])


@dataclass
class TrainConfig(_Config):
    epochs: int = 5
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    amp: str = "off"  # "off" | "fp16" | "bf16"
    grad_checkpointing: bool = False
    grad_clip: float | None = 1.0  # max global L2 norm; None = no clipping
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0  # mixup: blend example pairs and labels, weight ~ Beta(alpha, alpha); 0 = off
    num_workers: int = 0
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    checkpoint_every_epoch: bool = True


@dataclass
class RunConfig(_Config):
    name: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"run config is not valid JSON: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict | None) -> "RunConfig":
        cfg = super().from_dict(data)
        cfg.optim.betas = tuple(cfg.optim.betas)
        return cfg

    def with_overrides(self, overrides: dict[str, Any]) -> "RunConfig":
        """A copy with dotted keys set, e.g. {"train.epochs": 3, "model.hparams.depth": 2}.
        String values (from the CLI) are parsed as JSON where they can be."""
        data = self.to_dict()
        for key, value in overrides.items():
            parts = key.split(".")
            node = data
            for part in parts[:-1]:
                if not isinstance(node, dict) or part not in node:
                    raise ConfigError(f"--set {key}: no section {part!r} in a run config")
                node = node[part]
            leaf = parts[-1]
            free_form = parts[-2:-1] in (["hparams"], ["options"], ["params"])
            if not isinstance(node, dict) or (leaf not in node and not free_form):
                raise ConfigError(f"--set {key}: unknown setting {leaf!r}")
            node[leaf] = parse_value(value)
        return RunConfig.from_dict(data)


def parse_value(value: Any) -> Any:
    """CLI strings -> JSON values where possible ("3" -> 3, "true" -> True, "[1,2]" -> [1, 2])."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def parse_sets(pairs: list[str] | None) -> dict[str, Any]:
    """["a.b=1", "c=x"] -> {"a.b": 1, "c": "x"}; refuses an item without '='."""
    out: dict[str, Any] = {}
    for item in pairs or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: write key=value, e.g. --set hid_dim=256")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value.strip())
    return out
