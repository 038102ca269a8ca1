"""The one typed spec of every choice a run makes.

Each choice is declared once as a `Param` (type, default, range or choices, unit, help,
the conditions under which it applies) where it belongs:

- the sections of `RunConfig` (data, optim, schedule, train, ...) in `core/config.py`, as
  dataclass fields made with `config.param(...)`;
- a zoo model's hyperparameters in its `register(...)` call (`core/models/zoo/`);
- a data source's options in its `SourceSpec` (`core/data/<source>.py`);
- an augmentation's parameters in `core/data/augment.py`; optimizers, schedules and probes
  in their registries under `core/train/`.

Everything else reads these records: the Train and Build forms (`dashboard/forms.py`), CLI
`--set` (`RunConfig.with_overrides`), validation before a run exists (`validate`),
`python -m core options` and docs/OPTIONS.md (`describe_all`), and sweep spaces (`sweep_params`).

    params(cfg)                   # [Entry(key, param, active, value), ...] every choice of this config
    problems(cfg)                 # [Problem(key, value, message), ...]; [] = fine
    cfg = validate(cfg)           # the same config with canonical values, or ConfigError (one line per problem)
    lookup("optim.lr", cfg)       # the Param behind a key (conditional families need the config)

Keys are dotted paths into the config's JSON: `optim.lr`, `model.hparams.depth`,
`data.options.classes`, and for augmentations, which are a list, by name:
`data.augment.jitter.p`, `data.augment.jitter.params.sigma`.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from core.errors import ConfigError

TYPES = ("int", "float", "bool", "choice", "str", "list", "range", "samples")
MAX_TEXT = 500  # longest free-text value (names, paths, patterns)


class _FromSignature:
    """Marks a default that is read from the constructor's signature (zoo models)."""

    def __repr__(self) -> str:
        return "<from signature>"


FROM_SIGNATURE = _FromSignature()


@dataclass(frozen=True)
class When:
    """A condition under which a Param applies: `key op value` on the config, e.g.
    When("data.features", "!=", "raw"). `value` may be a function returning it (a registry's
    current list), evaluated when the condition is. Derived keys (`data.signal`,
    `data.input_kind`, `model.input_kind`, `model.supports_checkpointing`) are computed."""

    key: str
    op: str  # "==" | "!=" | "in" | "not in"
    value: Any

    def __post_init__(self) -> None:
        if self.op not in ("==", "!=", "in", "not in"):
            raise ValueError(f"When {self.key}: op must be ==, !=, in or not in, got {self.op!r}")

    def resolved(self) -> Any:
        value = self.value() if callable(self.value) else self.value
        return tuple(value) if self.op in ("in", "not in") else value

    def holds(self, config: dict) -> bool:
        have, want = value_at(config, self.key), self.resolved()
        if self.op == "==":
            return have == want
        if self.op == "!=":
            return have != want
        return (have in want) if self.op == "in" else (have not in want)

    def describe(self) -> str:
        want = self.resolved()
        if isinstance(want, tuple) and len(want) == 1:
            return f"{self.key} {'==' if self.op == 'in' else '!='} {want[0]!r}"
        if isinstance(want, tuple):
            text = "(" + ", ".join(repr(v) for v in want) + ")"
        else:
            text = repr(want)
        return f"{self.key} {self.op} {text}"


@dataclass(frozen=True)
class Param:
    """One typed choice: what a form draws, `--set` parses, validation checks and a sweep samples.

    name: the last part of its key (`lr` of `optim.lr`).
    type: "int" | "float" | "bool" | "choice" | "str" | "list" | "range" | "samples".
        list: a list of `item` values (a comma-separated string is accepted); range: a pair
        [lo, hi] inside [low, high]; samples: a whole number of samples, or seconds as "2.56s".
    default: the value when not given (zoo models: FROM_SIGNATURE, read from the constructor).
    help: one sentence for people (zoo models: from the constructor's docstring when empty).
    low, high: inclusive bounds of numbers (and of a range's ends, a list's length for lists).
    choices: allowed values of a choice (or of a list's items), or a function returning them.
    log: numbers vary on a log scale (widgets and sweeps).
    unit: "epochs", "samples", "Hz", "s", ... shown beside the value.
    nullable: None is allowed; `null_means` says what it means ("no clipping").
    when: conditions under which the choice applies (all must hold); otherwise it is ignored,
        and setting it explicitly (`--set`) is refused with the reason.
    item: the Param of each item of a list.
    resume: may change when a stopped run is resumed (epochs, device, probe cadence).
    label: a widget label (default: the name with spaces).
    choice_help: choice -> one line, or a function returning that dict.
    sweep: whether a sweep may vary it (default: numbers, choices and bools).
    step: widget step for numbers (default: chosen from the range).
    allowed_text: the allowed values in words, where listing the choices would not help.
    advanced: drawn under "More settings" in the forms (limits, chunk sizes, seeds of generators).
    describe_choice: the forms show the chosen option's help under the widget.
    """

    name: str
    type: str
    default: Any = None
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple | Callable[[], Iterable] = ()
    log: bool = False
    unit: str = ""
    nullable: bool = False
    null_means: str = ""
    when: tuple[When, ...] = ()
    item: "Param | None" = None
    resume: bool = False
    label: str = ""
    choice_help: dict | Callable[[], dict] = field(default_factory=dict)
    sweep: bool | None = None
    step: float | None = None
    allowed_text: str = ""
    advanced: bool = False
    describe_choice: bool = False

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"Param {self.name}: type must be one of {', '.join(TYPES)}, got {self.type!r}")
        if self.type == "choice" and not callable(self.choices) and not self.choices:
            raise ValueError(f"Param {self.name}: a choice needs choices")
        if self.type in ("int", "float", "range", "samples") and (self.low is None or self.high is None):
            raise ValueError(f"Param {self.name}: a number needs low and high")
        if self.type == "list" and self.item is None:
            raise ValueError(f"Param {self.name}: a list needs an item Param")
        if self.log and not (self.low and self.low > 0):
            raise ValueError(f"Param {self.name}: a log scale needs low > 0")

    # ---- what is allowed -------------------------------------------------------------------
    def options(self) -> tuple:
        """The allowed choices now (a registry's choices are read when asked)."""
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def helps(self) -> dict:
        """choice -> help line."""
        return dict(self.choice_help() if callable(self.choice_help) else self.choice_help)

    @property
    def sweepable(self) -> bool:
        if self.sweep is not None:
            return self.sweep
        return self.type in ("int", "float", "bool", "choice")

    @property
    def text_label(self) -> str:
        return self.label or self.name.replace("_", " ")

    def allowed(self) -> str:
        """The allowed values in words."""
        null = " or null" + (f" ({self.null_means})" if self.null_means else "") if self.nullable else ""
        if self.allowed_text:
            return self.allowed_text + null
        if self.type == "choice":
            return "one of " + ", ".join(repr(c) for c in self.options()) + null
        if self.type == "bool":
            return "true or false" + null
        if self.type == "str":
            return f"text (up to {MAX_TEXT} characters)" + null
        if self.type == "list":
            size = ""
            if self.low is not None or self.high is not None:
                size = f" of {_fmt(self.low or 0)} to {_fmt(self.high) if self.high is not None else 'any'} items"
            return f"a list{size} of {self.item.allowed()}" + null
        if self.type == "range":
            return f"[lo, hi] with {_fmt(self.low)} <= lo <= hi <= {_fmt(self.high)}" + null
        if self.type == "samples":
            return (f"whole samples in [{_fmt(self.low)}, {_fmt(self.high)}] or seconds such as '2.56s'" + null)
        return f"{self.type} in [{_fmt(self.low)}, {_fmt(self.high)}]" + (f" {self.unit}" if self.unit else "") + null

    def applies(self, config: dict) -> bool:
        return all(w.holds(config) for w in self.when)

    def why_not(self, config: dict) -> str:
        """Why the choice does not apply to `config` (the first condition that fails)."""
        for w in self.when:
            if not w.holds(config):
                return f"it applies only when {w.describe()} (here {w.key} is {value_at(config, w.key)!r})"
        return ""

    # ---- parsing and checking -------------------------------------------------------------
    def coerce(self, value: Any, key: str | None = None) -> Any:
        """The canonical value (strings from the CLI parsed), or ConfigError naming the key,
        the value given and what is allowed. Non-finite numbers are never allowed."""
        key = key or self.name
        if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none") and self.nullable):
            if self.nullable:
                return None
            raise ConfigError(f"{key}=null is not allowed: give {self.allowed()}")
        try:
            return self._coerce(value, key)
        except _Refused as e:
            raise ConfigError(f"{key}={_show(value)} {e}: allowed {self.allowed()}") from None

    def _coerce(self, value: Any, key: str) -> Any:
        kind = self.type
        if kind == "bool":
            return _boolean(value)
        if kind == "choice":
            for c in self.options():
                if value == c and type(value) is not bool or str(value) == str(c):
                    return c
            raise _Refused("is not a known choice")
        if kind == "str":
            if not isinstance(value, str):
                raise _Refused("is not text")
            if len(value) > MAX_TEXT:
                raise _Refused(f"is {len(value)} characters long")
            return value
        if kind == "list":
            items = _as_list(value)
            if self.low is not None and len(items) < self.low or self.high is not None and len(items) > self.high:
                raise _Refused(f"has {len(items)} items")
            return [self.item.coerce(v, f"{key}[{i}]") for i, v in enumerate(items)]
        if kind == "range":
            items = _as_list(value)
            if len(items) != 2:
                raise _Refused("is not a pair [lo, hi]")
            lo, hi = (_number(v, "float") for v in items)
            if not (self.low <= lo <= hi <= self.high):
                raise _Refused("is out of range or inverted")
            return [lo, hi]
        if kind == "samples":
            if isinstance(value, str) and value.strip().lower().endswith("s"):
                seconds = _number(value.strip()[:-1], "float")
                if seconds <= 0:
                    raise _Refused("is not a positive duration")
                return f"{seconds:g}s"
            if isinstance(value, float) and not float(value).is_integer():
                seconds = _number(value, "float")
                if seconds <= 0:
                    raise _Refused("is not a positive duration")
                return seconds
            number = _number(value, "int")
        else:
            number = _number(value, kind)
        if not (self.low <= number <= self.high):
            raise _Refused("is out of range")
        return number

    def sample(self, rng, low: float | None = None, high: float | None = None, choices: Iterable | None = None) -> Any:
        """A random allowed value (a sweep's draw); low/high/choices narrow the range."""
        if self.type == "bool":
            return rng.random() < 0.5
        if self.type == "choice":
            return rng.choice(list(choices) if choices is not None else list(self.options()))
        lo = self.low if low is None else low
        hi = self.high if high is None else high
        if self.log:
            v = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        else:
            v = rng.uniform(lo, hi)
        return int(round(v)) if self.type == "int" else v

    def to_dict(self) -> dict:
        """JSON-able description (`python -m core options --json`)."""
        out = {"name": self.name, "type": self.type, "default": _jsonable(self.default), "help": self.help,
               "low": self.low, "high": self.high, "choices": [_jsonable(c) for c in self.options()],
               "log": self.log, "unit": self.unit, "nullable": self.nullable, "when": [w.describe() for w in self.when],
               "resume": self.resume, "sweep": self.sweepable, "allowed": self.allowed()}
        if self.null_means:
            out["null_means"] = self.null_means
        if self.item is not None:
            out["item"] = self.item.to_dict()
        helps = self.helps()
        if helps:
            out["choice_help"] = {str(k): v for k, v in helps.items()}
        return out


class _Refused(ValueError):
    """A value refused by a type check; the message completes "KEY=VALUE ..."."""


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        return value.strip().lower() in ("true", "1", "yes", "on")
    raise _Refused("is not true or false")


def _number(value: Any, kind: str) -> int | float:
    if isinstance(value, bool):
        raise _Refused("is a boolean, not a number")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if kind == "int" and text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise _Refused("is not a number") from None
    if not isinstance(value, (int, float)):
        raise _Refused("is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Refused("is not a finite number")
    if kind == "int":
        if float(value) != int(value):
            raise _Refused("is not a whole number")
        return int(value)
    return float(value)


def _as_list(value: Any) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    raise _Refused("is not a list")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, _FromSignature):
        return None
    return value


# ---- derived values conditions may name --------------------------------------------------
def _source_signal(config: dict) -> str | None:
    from core.data.sources import source_names, get_source
    name = value_at(config, "data.source")
    return get_source(name).signal if name in source_names() else None


def _source_windowed(config: dict) -> bool | None:
    from core.data.sources import source_names, get_source
    name = value_at(config, "data.source")
    return get_source(name).windowed if name in source_names() else None


def _data_input_kind(config: dict) -> str | None:
    from core.data.features import INPUT_KIND
    signal = _source_signal(config)
    if signal == "imu":
        return "imu"
    if signal == "audio":
        return INPUT_KIND.get(value_at(config, "data.features"))
    return None


def _model_attribute(attribute: str) -> Callable[[dict], Any]:
    def read(config: dict) -> Any:
        from core.models import registry
        name = value_at(config, "model.name")
        return getattr(registry.spec(name), attribute) if name in registry.list_models() else None
    return read


DERIVED: dict[str, Callable[[dict], Any]] = {
    "data.signal": _source_signal,
    "data.windowed": _source_windowed,
    "data.input_kind": _data_input_kind,
    "model.input_kind": _model_attribute("input_kind"),
    "model.supports_checkpointing": _model_attribute("supports_checkpointing"),
}
_MISSING = object()


def value_at(config: dict, key: str, default: Any = None) -> Any:
    """The value at a dotted key of a config dict (derived keys computed); `default` when absent."""
    if key in DERIVED:
        return DERIVED[key](config)
    node: Any = config
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part and all(isinstance(e, dict) for e in node):
            node = next((e for e in node if e.get("name") == part), _MISSING)
            if node is _MISSING:
                return default
        else:
            return default
    return node


# ---- the spec of a whole run config ------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One choice of one config: its key, its Param, whether it applies, and its value."""

    key: str
    param: Param
    active: bool
    value: Any
    scope: str = ""  # the model, source or augmentation a conditional family belongs to


@dataclass(frozen=True)
class Problem:
    """One refused value: the key, the value given, and what is wrong or allowed."""

    key: str
    value: Any
    message: str

    def __str__(self) -> str:
        return self.message


@functools.cache
def section_params(cls: type) -> tuple[tuple[str, Param | None, type | None], ...]:
    """A config dataclass's fields as (name, Param or None, nested config class or None). Made once
    per class: `params` walks every section on each `lookup` and `with_overrides`, and building
    the frozen Params again each time was most of the CPU of a config's overrides (test_spec's
    398 sampled configs took 33 s to collect)."""
    out = []
    for f in dataclasses.fields(cls):
        p = f.metadata.get("param")
        nested = f.metadata.get("section")
        out.append((f.name, dataclasses.replace(p, name=f.name) if p is not None else None, nested))
    return tuple(out)


def families(config: dict) -> list[tuple[str, str, tuple[Param, ...]]]:
    """The conditional families of a config: (key prefix, scope, params) for the chosen
    model's hyperparameters and the chosen source's options."""
    from core.data.sources import source_names, get_source
    from core.models import registry

    out = []
    model = value_at(config, "model.name")
    if model in registry.list_models():
        out.append(("model.hparams", model, registry.spec(model).hparams))
    source = value_at(config, "data.source")
    if source in source_names():
        out.append(("data.options", source, get_source(source).options))
    return out


def augment_params(name: str) -> tuple[Param, ...]:
    """The parameters of one augmentation entry: p, then the augmentation's own params."""
    from core.data.augment import AUGMENTATIONS
    spec = AUGMENTATIONS[name]
    return (AUGMENT_P,) + tuple(dataclasses.replace(p, name=f"params.{p.name}") for p in spec.params)


AUGMENT_P = Param("p", "float", 0.5, "probability that a training example gets this augmentation", low=0.0, high=1.0,
                  step=0.05)


def params(config: Any) -> list[Entry]:
    """Every choice of `config` (a RunConfig or its dict) in declaration order, with its value
    (the default where the config leaves it out) and whether it applies."""
    data = _as_dict(config)
    from core.config import RunConfig

    entries: list[Entry] = []

    def walk(cls: type, node: dict, prefix: str) -> None:
        for name, p, nested in section_params(cls):
            key = f"{prefix}{name}"
            if nested is not None:
                walk(nested, node.get(name) if isinstance(node.get(name), dict) else {}, key + ".")
            elif p is not None:
                entries.append(Entry(key, p, p.applies(data), node.get(name, p.default)))
            if key == "model.name":
                entries.extend(_family(data, "model.hparams"))
            elif key == "data.path":
                entries.extend(_family(data, "data.options"))
            elif key == "data.augment":
                entries.extend(_augment_entries(data))

    walk(RunConfig, data, "")
    return entries


def _family(data: dict, prefix: str) -> list[Entry]:
    out = []
    for family_prefix, scope, members in families(data):
        if family_prefix != prefix:
            continue
        given = value_at(data, prefix) or {}
        for p in members:
            out.append(Entry(f"{prefix}.{p.name}", p, p.applies(data), given.get(p.name, p.default), scope))
    return out


def _augment_entries(data: dict) -> list[Entry]:
    from core.data.augment import AUGMENTATIONS
    out = []
    for entry in value_at(data, "data.augment") or []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in AUGMENTATIONS:
            continue
        for p in augment_params(name):
            value = entry.get("p", p.default) if p.name == "p" else (entry.get("params") or {}).get(
                p.name.split(".", 1)[1], p.default)
            out.append(Entry(f"data.augment.{name}.{p.name}", p, True, value, name))
    return out


def lookup(key: str, config: Any = None, listed: dict[str, Param] | None = None) -> Param:
    """The Param behind a dotted key for this config (default: RunConfig()); ConfigError
    naming the nearest known keys when there is none. `listed`: an empty dict the caller keeps
    for several keys of one config, which the first lookup that needs them fills with the
    config's choices by key (`params` walks every section: listed once, not once per key)."""
    plain = _section_param(key)
    if plain is not None:  # a field of the config classes: no need to load the zoo and the data sources
        return plain
    data = _as_dict(config)
    listed = {} if listed is None else listed
    if not listed:
        for e in params(data):
            listed.setdefault(e.key, e.param)
    if key in listed:
        return listed[key]
    parts = key.split(".")
    if parts[:2] == ["data", "augment"] and len(parts) >= 4:
        from core.data.augment import AUGMENTATIONS
        name, rest = parts[2], ".".join(parts[3:])
        if name not in AUGMENTATIONS:
            raise ConfigError(f"{key}: no augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}")
        for p in augment_params(name):
            if p.name == rest:
                return p
        raise ConfigError(f"{key}: augmentation {name!r} has no setting {rest!r}; it has: "
                          f"{', '.join(p.name for p in augment_params(name))}")
    raise ConfigError(_unknown_key(key, data))


def _section_param(key: str) -> Param | None:
    """The Param of a plain field of the config dataclasses (`optim.name`, `train.amp`), the same
    one `params` lists under that key, found without the families (a model's hyperparameters, a
    source's options, augmentations), whose lookup imports the data sources; None otherwise."""
    from core.config import RunConfig

    cls: type | None = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        match = next(((p, nested) for name, p, nested in section_params(cls) if name == part), None)
        if match is None:
            return None
        p, cls = match
        if cls is None:
            return p if i == len(parts) - 1 else None
    return None


def _unknown_key(key: str, data: dict) -> str:
    parts = key.split(".")
    if parts[:2] == ["model", "hparams"] and len(parts) == 3:
        names = [e.key.rsplit(".", 1)[1] for e in params(data) if e.key.startswith("model.hparams.")]
        return (f"{key}: model {value_at(data, 'model.name')!r} has no hyperparameter {parts[2]!r}; "
                f"it has: {', '.join(names) or 'none'}")
    if parts[:2] == ["data", "options"] and len(parts) == 3:
        names = [e.key.rsplit(".", 1)[1] for e in params(data) if e.key.startswith("data.options.")]
        return (f"{key}: data source {value_at(data, 'data.source')!r} has no option {parts[2]!r}; "
                f"it has: {', '.join(names) or 'none'}")
    known = sorted({e.key for e in params(data)})
    near = difflib.get_close_matches(key, known, n=4, cutoff=0.6)
    leaf = parts[-1]
    near += [k for k in known if k.rsplit(".", 1)[-1] == leaf and k not in near][:4]
    hint = f"did you mean {', '.join(near)}? " if near else ""
    return f"{key}: no such setting in a run config; {hint}(`python -m core options` lists every key)"


# ---- checking a whole config ---------------------------------------------------------------
def problems(config: Any, environment: bool = True) -> list[Problem]:
    """Every problem of a config, one per key: wrong types, non-finite numbers, out of range,
    unknown keys or choices, then the cross-field checks (`checks` of each section and of the
    run). environment: also check what this machine must provide (the device)."""
    return _canonical(config, environment)[1]


def validate(config: Any, environment: bool = True, section: str = ""):
    """The RunConfig with every value in canonical form, or ConfigError listing every problem
    (one per line, each naming its key, the value given and what is allowed). section: only
    problems of keys under it count (e.g. "data" for a data config checked on its own)."""
    canonical, found = _canonical(config, environment)
    found = [p for p in found if not section or not p.key or p.key.startswith(section)]
    if found or canonical is None:
        raise ConfigError("\n".join(p.message for p in found))
    return canonical


def _canonical(config: Any, environment: bool) -> tuple[Any, list[Problem]]:
    from core.config import RunConfig

    try:
        data = _as_dict(config)
        RunConfig.from_dict(data)  # structure: unknown keys, nesting
    except ConfigError as e:
        return None, [Problem("", None, str(e))]
    found: list[Problem] = []
    out = _deep_copy(data)
    for e in params(data):
        try:
            value = e.param.coerce(e.value, e.key)
        except ConfigError as err:
            found.append(Problem(e.key, e.value, str(err)))
            continue
        _set(out, e.key, value)
    found += _unknown_members(data)
    canonical = RunConfig.from_dict(out)  # values a Param refused stay as given (validate raises on them)
    if not found:  # the cross-field checks read values that passed their own Params
        found += [Problem(key, value_at(out, key), msg) for key, msg in canonical.checks(environment)]
    return canonical, found


def _unknown_members(data: dict) -> list[Problem]:
    """Hyperparameters the model lacks, options the source lacks, unknown augmentations."""
    from core.data.augment import AUGMENTATIONS

    out: list[Problem] = []
    known = {e.key for e in params(data)}
    for prefix in ("model.hparams", "data.options"):
        given = value_at(data, prefix)
        if not isinstance(given, dict):
            out.append(Problem(prefix, given, f"{prefix}={_show(given)} must be an object of name: value"))
            continue
        for name in given:
            if f"{prefix}.{name}" not in known:
                out.append(Problem(f"{prefix}.{name}", given[name], _unknown_key(f"{prefix}.{name}", data)))
    augment = value_at(data, "data.augment")
    if not isinstance(augment, list):
        return out + [Problem("data.augment", augment, f"data.augment={_show(augment)} must be a list of "
                                                       "{name, p, params} entries")]
    seen = set()
    for i, entry in enumerate(augment):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or set(entry) - {"name", "p", "params"} or not isinstance(
                entry.get("params", {}), dict):
            out.append(Problem(f"data.augment[{i}]", entry, f"data.augment[{i}]={_show(entry)} must be "
                                                            "{name, p, params}"))
        elif name not in AUGMENTATIONS:
            out.append(Problem(f"data.augment[{i}].name", name, f"data.augment[{i}].name={_show(name)} is not a "
                                                                f"known augmentation: allowed {', '.join(AUGMENTATIONS)}"))
        elif name in seen:
            out.append(Problem(f"data.augment.{name}", name, f"data.augment: {name!r} is listed twice; list each "
                                                             "augmentation once"))
        else:
            seen.add(name)
            own = {p.name.split(".", 1)[1] for p in augment_params(name) if p.name != "p"}
            for param_name in sorted(set(entry.get("params", {})) - own):
                out.append(Problem(f"data.augment.{name}.params.{param_name}", entry["params"][param_name],
                                   f"data.augment.{name}.params.{param_name}: augmentation {name!r} has no parameter "
                                   f"{param_name!r}; it has: {', '.join(sorted(own)) or 'none'}"))
    return out


# ---- overrides (--set, forms) ----------------------------------------------------------------
SELECTORS = ("model.name", "data.source")  # changing one of these resets its family


def apply_overrides(config: Any, overrides: dict[str, Any], explicit: bool = True) -> dict:
    """The config dict with dotted keys set (strings parsed later by `validate`). A key that
    does not exist, or (explicit=True) is set to other than its default where it does not
    apply to the resulting config, is refused.
    Changing model.name resets model.hparams and data.source resets data.options, unless the
    same overrides set them."""
    from core.config import parse_value

    data = _deep_copy(_as_dict(config))
    ordered = sorted(overrides.items(), key=lambda kv: (kv[0] not in SELECTORS, ))
    for key, value in ordered:
        value = parse_value(value)
        if key in SELECTORS and value_at(data, key) != value:
            family = "model.hparams" if key == "model.name" else "data.options"
            if not any(k == family or k.startswith(family + ".") for k in overrides):
                _set(data, family, {})
        _set(data, key, value, create=True)
    found: list[str] = []
    listed: dict[str, Param] = {}  # the resulting config's choices, listed once for all its keys
    for key in overrides:
        if key in ("model.hparams", "data.options", "data.augment", "name") or "[" in key:
            continue
        try:
            p = lookup(key, data, listed)
        except ConfigError as e:
            found.append(str(e))
            continue
        if explicit and not p.applies(data) and not _same(value_at(data, key), p.default):
            found.append(f"{key}: {p.why_not(data)}; leave it out or change that first")
    if found:
        raise ConfigError("\n".join(found))
    return data


def _same(a: Any, b: Any) -> bool:
    """Equal as config values (a tuple and a list of the same items are the same)."""
    norm = (lambda v: list(v) if isinstance(v, tuple) else v)
    return norm(a) == norm(b)


def _set(data: dict, key: str, value: Any, create: bool = False) -> None:
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):  # data.augment.<name>...
            entry = next((e for e in node if isinstance(e, dict) and e.get("name") == part), None)
            if entry is None:
                if not create:
                    return
                entry = {"name": part, "p": AUGMENT_P.default, "params": {}}
                node.append(entry)
            node = entry
            continue
        if part not in node or not isinstance(node[part], (dict, list)):
            if not create:
                return
            if part in ("hparams", "options", "params") or i < len(parts) - 2:
                node[part] = {}
            else:
                raise ConfigError(f"{key}: {'.'.join(parts[:i + 1])} is not a section of a run config")
        node = node[part]
    if isinstance(node, list):
        raise ConfigError(f"{key}: name an augmentation's setting, e.g. {key}.p or {key}.params.sigma")
    if not isinstance(node, dict):
        raise ConfigError(f"{key}: {'.'.join(parts[:-1])} is not a section of a run config")
    node[parts[-1]] = value


def _as_dict(config: Any) -> dict:
    if config is None:
        from core.config import RunConfig
        return RunConfig().to_dict()
    if isinstance(config, dict):
        return config
    return config.to_dict()


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_deep_copy(v) for v in data]
    return data


# ---- resume -----------------------------------------------------------------------------------
def check_resume_overrides(overrides: dict[str, Any], config: Any) -> None:
    """Refuse overrides a resumed run cannot take (only Params with resume=True may change)."""
    found = []
    for key in overrides:
        p = lookup(key, config)
        if not p.resume:
            found.append(f"{key}: cannot change when resuming a run (the checkpoint's weights, optimizer state "
                         "and data order depend on it); start a new run with this config instead")
    if found:
        raise ConfigError("\n".join(found))


# ---- listing and sweeping --------------------------------------------------------------------
def describe_all() -> list[dict]:
    """Every key any config can have, with its type, range, default, help and conditions:
    the sections' fields, each model's hyperparameters, each source's options and each
    augmentation's parameters (`python -m core options --json`)."""
    from core.config import RunConfig
    from core.data.augment import AUGMENTATIONS
    from core.data.sources import get_source, source_names
    from core.models import registry

    out: list[dict] = []

    def walk(cls: type, prefix: str) -> None:
        for name, p, nested in section_params(cls):
            if nested is not None:
                walk(nested, f"{prefix}{name}.")
            elif p is not None:
                out.append({"key": f"{prefix}{name}", **p.to_dict()})
            if f"{prefix}{name}" == "model.name":
                for model in registry.list_models():
                    for h in registry.spec(model).hparams:
                        row = {"key": f"model.hparams.{h.name}", **h.to_dict()}
                        row["when"] = [f"model.name == {model!r}"] + row["when"]
                        out.append(row)
            elif f"{prefix}{name}" == "data.path":
                for source in source_names():
                    for o in get_source(source).options:
                        row = {"key": f"data.options.{o.name}", **o.to_dict()}
                        row["when"] = [f"data.source == {source!r}"] + row["when"]
                        out.append(row)
            elif f"{prefix}{name}" == "data.augment":
                for aug_name, aug in AUGMENTATIONS.items():
                    for p2 in augment_params(aug_name):
                        row = {"key": f"data.augment.{aug_name}.{p2.name}", **p2.to_dict()}
                        row["when"] = [f"data.signal in {tuple(aug.signals)!r}"]
                        out.append(row)

    walk(RunConfig, "")
    return out


def sweep_params(config: Any) -> list[Entry]:
    """The choices of `config` a sweep may vary: active, sweepable, and not the selectors
    (model, data source) whose change replaces a whole family."""
    skip = ("model.name", "data.source", "train.device", "train.seed", "data.split_seed", "train.epochs")
    return [e for e in params(config) if e.active and e.param.sweepable and e.key not in skip]
