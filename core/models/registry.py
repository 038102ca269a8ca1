"""The model registry: one `register(...)` call per zoo model states its input kind and
typed hyperparameters; the dashboard, CLI, profiler and sweeps all read the spec.

Input kinds and the tensor a model takes (batch first):
- "imu":         (B, C, T)    C sensor channels, T samples
- "waveform":    (B, 1, T)    mono audio samples
- "spectrogram": (B, C, F, T) C feature planes (e.g. log-mel, MFCC, delta, delta-delta)

Every model constructor takes `in_channels`, `num_classes`, `seq_len` (and `n_freq` for
spectrograms) plus its own typed hyperparameters; `create` maps an input shape to those.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from core.errors import ConfigError

INPUT_KINDS = ("imu", "waveform", "spectrogram")


@dataclass(frozen=True)
class HParam:
    """One typed hyperparameter: what the UI draws, the CLI parses and sweeps sample."""

    name: str
    type: str  # "int" | "float" | "bool" | "choice"
    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    log: bool = False  # sample/slide on a log scale

    def __post_init__(self) -> None:
        if self.type not in ("int", "float", "bool", "choice"):
            raise ValueError(f"HParam {self.name}: type must be int/float/bool/choice, got {self.type!r}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"HParam {self.name}: a choice needs choices")
        if self.type in ("int", "float") and (self.low is None or self.high is None):
            raise ValueError(f"HParam {self.name}: a number needs low and high")

    def allowed(self) -> str:
        """Human description of the allowed values."""
        if self.type == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.type == "bool":
            return "true or false"
        return f"{self.type} in [{_fmt(self.low)}, {_fmt(self.high)}]"

    def coerce(self, value: Any) -> Any:
        """Parse (strings from the CLI included) and validate one value; raise ConfigError."""
        try:
            if self.type == "bool":
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError
                    value = low in ("true", "1", "yes")
                return bool(value)
            if self.type == "choice":
                for c in self.choices:
                    if value == c or str(value) == str(c):
                        return c
                raise ValueError
            number = float(value)
            if self.type == "int":
                if number != int(number):
                    raise ValueError
                number = int(number)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.name}={value!r} is not valid: allowed {self.allowed()}") from None
        if not (self.low <= number <= self.high):
            raise ConfigError(f"{self.name}={value!r} is out of range: allowed {self.allowed()}")
        return number

    def sample(self, rng: random.Random) -> Any:
        """A random valid value (used by tests and as a sweep's search space)."""
        if self.type == "bool":
            return rng.random() < 0.5
        if self.type == "choice":
            return rng.choice(self.choices)
        if self.log:
            v = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            v = rng.uniform(self.low, self.high)
        return int(round(v)) if self.type == "int" else v

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "default": self.default, "help": self.help,
                "low": self.low, "high": self.high, "choices": list(self.choices), "log": self.log}


def _fmt(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of Sigscope knows about a zoo model."""

    name: str
    builder: Callable[..., nn.Module]
    input_kind: str
    hparams: tuple[HParam, ...]
    description: str = ""
    has_attention: bool = False
    supports_checkpointing: bool = False
    default_input: tuple[int, ...] = (6, 128)  # example input shape without batch
    # Extra cross-parameter checks: f(hparams, input_shape) -> list of problems (empty = ok)
    constraints: Callable[[dict, tuple], list[str]] | None = None
    # Smallest input length (time axis) the model can take at given hparams
    min_length: Callable[[dict], int] | None = None

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"{self.name}: input_kind must be one of {INPUT_KINDS}")

    def defaults(self) -> dict:
        return {h.name: h.default for h in self.hparams}

    def hparam(self, name: str) -> HParam:
        for h in self.hparams:
            if h.name == name:
                return h
        names = ", ".join(h.name for h in self.hparams)
        raise ConfigError(f"model {self.name!r} has no hyperparameter {name!r}; it has: {names}")

    def resolve(self, overrides: dict | None = None, input_shape: tuple | None = None) -> dict:
        """Defaults + overrides, each coerced and validated, then cross-checked."""
        hp = self.defaults()
        for key, value in (overrides or {}).items():
            hp[key] = self.hparam(key).coerce(value)
        shape = tuple(input_shape) if input_shape is not None else self.default_input
        problems = self.check_input(shape, hp)
        if self.constraints:
            problems += self.constraints(hp, shape)
        if problems:
            raise ConfigError(f"model {self.name!r}: " + "; ".join(problems))
        return hp

    def check_input(self, shape: tuple, hp: dict) -> list[str]:
        want = 3 if self.input_kind == "spectrogram" else 2
        layout = "(channels, freq, time)" if want == 3 else "(channels, time)"
        if len(shape) != want or any(int(s) < 1 for s in shape):
            return [f"input shape {tuple(shape)} does not fit a model that takes {self.input_kind} input: "
                    f"give {want} positive sizes {layout} without the batch"]
        if self.input_kind == "waveform" and shape[0] != 1:
            return [f"input shape {tuple(shape)}: a waveform model takes 1 channel (mono)"]
        if self.min_length is not None:
            need = self.min_length(hp)
            if shape[-1] < need:
                return [f"input length {shape[-1]} is too short at these settings: needs at least {need} time steps"]
        return []

    def to_dict(self) -> dict:
        return {"name": self.name, "input_kind": self.input_kind, "description": self.description,
                "has_attention": self.has_attention, "supports_checkpointing": self.supports_checkpointing,
                "default_input": list(self.default_input),
                "hyperparameters": [h.to_dict() for h in self.hparams]}


def dim_divisible_by_heads(hp: dict, shape: tuple) -> list[str]:
    """A ModelSpec constraint for attention models whose token width `dim` is split over `heads`."""
    if hp["dim"] % hp["heads"]:
        return [f"dim={hp['dim']} must be divisible by heads={hp['heads']}; "
                f"pick a dim that is a multiple of {hp['heads']}"]
    return []


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, spec: ModelSpec) -> ModelSpec:
    if name != spec.name:
        raise ValueError(f"register({name!r}): spec is named {spec.name!r}")
    _REGISTRY[name] = spec
    return spec


def _ensure_zoo() -> None:
    import core.models.zoo  # noqa: F401  (importing registers every model)


def list_models() -> list[str]:
    _ensure_zoo()
    return sorted(_REGISTRY)


def spec(name: str) -> ModelSpec:
    _ensure_zoo()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create(name: str, input_shape: tuple | None = None, num_classes: int = 6, **hp: Any) -> nn.Module:
    """Build a model. `input_shape` excludes the batch: (C, T) or (C, F, T)."""
    s = spec(name)
    shape = tuple(int(v) for v in (input_shape or s.default_input))
    params = s.resolve(hp, shape)
    if num_classes < 2:
        raise ConfigError(f"num_classes={num_classes}: a classifier needs at least 2 classes")
    dims: dict[str, int] = {"in_channels": shape[0], "seq_len": shape[-1], "num_classes": int(num_classes)}
    if s.input_kind == "spectrogram":
        dims["n_freq"] = shape[1]
    return s.builder(**dims, **params)


def random_hparams(name: str, rng: random.Random, input_shape: tuple | None = None, tries: int = 50) -> dict:
    """A random valid hyperparameter point (retries until the cross-checks pass)."""
    s = spec(name)
    last = None
    for _ in range(tries):
        hp = {h.name: h.sample(rng) for h in s.hparams}
        try:
            return s.resolve(hp, input_shape)
        except ConfigError as e:
            last = e
    raise ConfigError(f"could not sample valid hyperparameters for {name!r}: {last}")
