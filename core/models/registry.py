"""The model registry: one `register(...)` call per zoo model states its input kind and
typed hyperparameters; the dashboard, CLI, profiler and sweeps all read the spec.

Input kinds and the tensor a model takes (batch first):
- "imu":         (B, C, T)    C sensor channels, T samples
- "waveform":    (B, 1, T)    mono audio samples
- "spectrogram": (B, C, F, T) C feature planes (e.g. log-mel, MFCC, delta, delta-delta)

Every model constructor takes `in_channels`, `num_classes`, `seq_len` (and `n_freq` for
spectrograms) plus its own typed hyperparameters; `create` maps an input shape to those.

Defaults live once, in the constructor's signature: `register` reads each hyperparameter's
default from it (and its help from the constructor's `Args:` docstring when the HParam gives
none), and refuses a spec whose hyperparameters and keyword arguments differ.
"""
from __future__ import annotations

import dataclasses
import inspect
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from core.errors import ConfigError
from core.spec import FROM_SIGNATURE, Param

INPUT_KINDS = ("imu", "waveform", "spectrogram")


HParam = Param  # a zoo model's hyperparameter is a core.spec.Param (its default: the constructor's)
DIMS = ("in_channels", "num_classes", "seq_len", "n_freq")  # constructor arguments set from the data


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
    """Add a zoo model. Its hyperparameters' defaults come from the builder's signature and
    their help from its docstring's `Args:` (where the HParam gives none); a hyperparameter
    the constructor lacks, a keyword argument without an HParam, or a default that disagrees
    with the signature is refused here, at import."""
    if name != spec.name:
        raise ValueError(f"register({name!r}): spec is named {spec.name!r}")
    spec = dataclasses.replace(spec, hparams=_from_builder(spec))
    _REGISTRY[name] = spec
    return spec


def _from_builder(spec: ModelSpec) -> tuple[Param, ...]:
    signature = inspect.signature(spec.builder)
    own = [n for n, p in signature.parameters.items() if n not in DIMS and p.kind is p.POSITIONAL_OR_KEYWORD]
    declared = [h.name for h in spec.hparams]
    if sorted(own) != sorted(declared):
        raise ValueError(f"{spec.name}: hyperparameters {declared} differ from the constructor's keyword "
                         f"arguments {own}; declare one HParam per argument")
    docs = docstring_args(spec.builder)
    out = []
    for h in spec.hparams:
        default = signature.parameters[h.name].default
        if default is inspect.Parameter.empty:
            raise ValueError(f"{spec.name}: constructor argument {h.name!r} has no default")
        if not isinstance(h.default, type(FROM_SIGNATURE)) and h.default is not None and h.default != default:
            raise ValueError(f"{spec.name}: HParam {h.name} says default {h.default!r} but the constructor says "
                             f"{default!r}; leave the HParam's default out (the signature owns it)")
        help_text = h.help or docs.get(h.name, "")
        if not help_text:
            raise ValueError(f"{spec.name}: {h.name} has no help: document it under Args: in the constructor")
        out.append(dataclasses.replace(h, default=default, help=help_text))
    return tuple(out)


def docstring_args(obj) -> dict[str, str]:
    """{argument: its description} from a Google-style `Args:` section (continuation lines joined)."""
    doc = inspect.getdoc(obj) or ""
    out: dict[str, str] = {}
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    except StopIteration:
        return out
    current, indent = None, None
    for line in lines[start + 1:]:
        if not line.strip():
            current = None
            continue
        width = len(line) - len(line.lstrip())
        match = re.match(r"^(\s+)(\w+): (.*)$", line)
        if match and (indent is None or width == indent):
            indent, current = width, match.group(2)
            out[current] = match.group(3).strip()
        elif current is not None and indent is not None and width > indent:
            out[current] += " " + line.strip()
        elif width <= (indent or 0):
            break
    return out


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
