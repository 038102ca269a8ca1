"""Sweeps: Optuna studies over the same RunConfig, whose search space is the spec (core.spec).

    spec = SweepSpec.from_dict({"base": cfg.to_dict(),
                                "space": {"optim.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                                          "model.hparams.depth": {}},          # {} = a default range
                                "settings": {"trials": 20, "workers": 2, "costs": ["latency_ms"],
                                             "max_latency_ms": 5}})
    name = create_study(spec)                  # every problem first, as one ConfigError
    summary = SweepWorker(name).run()          # ask, refuse what is invalid or over budget, train
                                               # the rest as ordinary run processes, prune, tell
    python -m core sweep worker --study NAME --storage postgresql://...   # another machine joins

How it works:
- A study keeps its whole definition (base config, space, objectives, budgets, sampler,
  pruner) in its user attributes, so a worker on another machine needs only the study's
  name and storage URL.
- Before a sampled config trains, the spec validates it (the registry's message when it is
  invalid, e.g. dim not divisible by heads) and the profiler prices it: parameters, FLOPs,
  estimated latency (ms, one window) and estimated training memory (MB). A config over a
  budget is recorded as pruned with the reason, in well under a second.
- Every trained trial is an ordinary run of the store (with its study and trial number),
  started by a JobManager in its own process. Inside that process a Trainer callback
  (`trial_callback`) reports each epoch's validation metric and stops the run when the
  pruner says so: Optuna's median, successive-halving or Hyperband pruner for one
  objective; for several objectives (which Optuna cannot prune) the project's own rule: a
  trial whose metric at an epoch is worse than the median of the completed trials at that
  epoch stops.
- A trial whose worker died (kill -9, a restart) is noticed by any worker (its process is
  gone, or its heartbeat is older than STALE_SECONDS on another machine), marked failed
  and its parameters queued once more. Stopping a sweep cancels its running trials (they
  are queued again for a resume) and keeps every finished one.
- Storage: the embedded default is Optuna's JournalStorage on one file under the runs
  folder (appends under a file lock: 4 concurrent workers, no "database is locked"; see
  bench/sweep_scaling.py), a `sqlite:///` URL is taken as given, and `postgresql://` is
  for many machines.
"""
from __future__ import annotations

import json
import math
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import spec as typed
from core.config import RunConfig, _Config, param
from core.errors import ConfigError

STALE_SECONDS = 300.0  # a running trial of another machine without a heartbeat this long is dead
HEARTBEAT_SECONDS = 10.0
STUDY_ATTR = "sigscope"
JOURNAL_FILE = "sweeps.journal"

# metric -> (the Trainer's epoch metric, its natural direction, label)
METRICS = {
    "val_accuracy": ("val_accuracy", "max", "validation accuracy"),
    "val_macro_f1": ("val_macro_f1", "max", "validation macro-F1"),
    "val_loss": ("val_loss", "min", "validation loss"),
}
# cost -> (label, unit, budget setting); every cost is known before training and minimized
COSTS = {
    "params": ("parameters", "", "max_params"),
    "flops": ("FLOPs per window", "", "max_flops"),
    "latency_ms": ("estimated latency", "ms", "max_latency_ms"),
    "memory_mb": ("estimated training memory", "MB", "max_memory_mb"),
}
SAMPLERS = {
    "tpe": "Tree-structured Parzen Estimator (one or several objectives; constant liar for parallel trials)",
    "nsga2": "NSGA-II genetic search (several objectives: a Pareto front)",
    "random": "independent random draws (a baseline)",
}
PRUNERS = {
    "median": "stop a trial whose metric is worse than the median of completed trials at the same epoch",
    "successive_halving": "keep the best 1/3 at each rung of epochs (one objective)",
    "hyperband": "several successive-halving brackets (one objective)",
    "none": "every trial trains all its epochs",
}


@dataclass
class SweepSettings(_Config):
    """The sweep's own choices (the space's are the run spec's)."""

    metric: str = param("val_accuracy", "choice", "what the sweep optimizes, per epoch on the validation split",
                        choices=tuple(METRICS), choice_help={k: v[2] for k, v in METRICS.items()}, label="Objective")
    direction: str | None = param(None, "choice", "maximize or minimize the metric", choices=("max", "min"),
                                  nullable=True, null_means="the metric's own: accuracy and F1 up, loss down",
                                  label="Direction")
    costs: list = param([], "list", "costs known before training that are minimized too (several objectives: "
                        "a Pareto front)", item=typed.Param("cost", "choice", choices=tuple(COSTS)), high=len(COSTS),
                        label="Cost objectives")
    max_params: int | None = param(None, "int", "largest parameter count a trial may have", low=1, high=10**12,
                                   nullable=True, null_means="no budget", label="Max parameters")
    max_flops: int | None = param(None, "int", "most FLOPs per window a trial may need", low=1, high=10**15,
                                  nullable=True, null_means="no budget", label="Max FLOPs")
    max_latency_ms: float | None = param(None, "float", "longest estimated latency per window on this machine",
                                         low=1e-6, high=1e6, nullable=True, null_means="no budget", unit="ms",
                                         label="Max latency (ms)")
    max_memory_mb: float | None = param(None, "float", "most estimated training memory", low=1e-3, high=1e9,
                                        nullable=True, null_means="no budget", unit="MB", label="Max memory (MB)")
    sampler: str = param("tpe", "choice", "how the next trial is chosen", choices=tuple(SAMPLERS),
                         choice_help=SAMPLERS, label="Sampler")
    pruner: str = param("median", "choice", "when a trial stops early", choices=tuple(PRUNERS),
                        choice_help=PRUNERS, label="Pruner")
    trials: int = param(20, "int", "trials in the study, those refused before training included", low=1,
                        high=100_000, label="Trials")
    workers: int = param(1, "int", "trials training at once on this machine", low=1, high=64, label="Workers")
    epochs: int = param(10, "int", "epochs per trial (fixed)", low=1, high=100_000, unit="epochs",
                        label="Epochs per trial")
    startup_trials: int = param(3, "int", "completed trials before pruning starts", low=0, high=1000,
                                label="Trials before pruning")
    warmup_epochs: int = param(1, "int", "epochs a trial always trains before it may be pruned", low=0,
                               high=100_000, label="Epochs before pruning")
    seed: int = param(0, "int", "seed of the sampler", low=0, high=2**31 - 1, label="Sampler seed")

    @property
    def goal(self) -> str:
        return self.direction or METRICS[self.metric][1]

    def objectives(self) -> list[tuple[str, str]]:
        """(name, "max"|"min") of every objective: the metric, then the costs."""
        return [(self.metric, self.goal)] + [(c, "min") for c in self.costs]

    def budgets(self) -> dict[str, float]:
        return {cost: getattr(self, setting) for cost, (_, _, setting) in COSTS.items()
                if getattr(self, setting) is not None}


def settings_params() -> list[typed.Param]:
    """Every sweep setting as its typed Param (forms and the CLI read these)."""
    return [p for _, p, _ in typed.section_params(SweepSettings)]


# ---- the search space ---------------------------------------------------------------------
@dataclass
class Dim:
    """One varied choice: a spec key with a range (numbers) or a subset of choices. models:
    the models it applies to when model.name is varied too (empty: every model that has it)."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool | None = None
    choices: list | None = None
    models: list = field(default_factory=list)

    def to_dict(self) -> dict:
        out = {k: v for k, v in (("low", self.low), ("high", self.high), ("log", self.log),
                                 ("choices", self.choices)) if v is not None}
        return {**out, **({"models": list(self.models)} if self.models else {})}


@dataclass
class SweepSpec:
    """A sweep: the base config, the varied choices and the settings (objectives, budgets, ...)."""

    base: dict
    space: dict[str, Dim]
    settings: SweepSettings = field(default_factory=SweepSettings)

    def to_dict(self) -> dict:
        return {"base": self.base, "space": {k: d.to_dict() for k, d in self.space.items()},
                "settings": self.settings.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> SweepSpec:
        if not isinstance(data, dict):
            raise ConfigError("a sweep is a JSON object with 'base', 'space' and 'settings'")
        unknown = sorted(set(data) - {"base", "space", "settings", "title", "description", "preset"})
        if unknown:
            raise ConfigError(f"sweep: unknown field(s) {', '.join(unknown)}; use base, space and settings")
        base = data.get("base") or RunConfig().to_dict()
        if isinstance(base, RunConfig):
            base = base.to_dict()
        return cls(base=base, space=parse_space(data.get("space") or {}),
                   settings=parse_settings(data.get("settings") or {}))


def parse_settings(values: dict) -> SweepSettings:
    """Sweep settings from a dict, every value checked by its Param (ConfigError lists all)."""
    by_name = {p.name: p for p in settings_params()}
    problems, out = [], {}
    for name, value in values.items():
        if name not in by_name:
            problems.append(f"sweep setting {name!r} does not exist; known: {', '.join(by_name)}")
            continue
        try:
            out[name] = by_name[name].coerce(value, f"settings.{name}")
        except ConfigError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError("\n".join(problems))
    return SweepSettings(**out)


def parse_space(space: dict | list) -> dict[str, Dim]:
    """{key: {low, high, log, choices, models}} (or a list of keys: default ranges)."""
    if isinstance(space, list):
        space = {key: {} for key in space}
    if not isinstance(space, dict):
        raise ConfigError("the space is an object {key: {low, high} or {choices}}, e.g. "
                          '{"optim.lr": {"low": 1e-4, "high": 1e-2, "log": true}}')
    out = {}
    for key, body in space.items():
        body = {} if body in (None, True) else body
        if not isinstance(body, dict):
            raise ConfigError(f"space {key}: give {{low, high}}, {{choices}} or {{}} for a default range, not {body!r}")
        bad = sorted(set(body) - {"low", "high", "log", "choices", "models"})
        if bad:
            raise ConfigError(f"space {key}: unknown field(s) {', '.join(bad)}; use low, high, log, choices, models")
        out[key] = Dim(key, body.get("low"), body.get("high"), body.get("log"),
                       list(body["choices"]) if body.get("choices") is not None else None, list(body.get("models") or []))
    return out


def default_dim(p: typed.Param) -> Dim:
    """A range a person would start from: the spec's whole range for small ones, a factor of
    ten (floats) or four (ints) around the default for log-scaled or wide ones."""
    if p.type in ("choice", "bool"):
        return Dim(p.name, choices=list(p.options()) if p.type == "choice" else [False, True])
    d = p.default if isinstance(p.default, (int, float)) and not isinstance(p.default, bool) else None
    low, high = p.low, p.high
    wide = p.type == "int" and high - low > 64
    if d and d > 0 and (p.log or wide):
        factor = 10.0 if p.type == "float" else 4.0
        low, high = max(p.low, d / factor), min(p.high, d * factor)
    if p.type == "int":
        low, high = int(math.ceil(low)), int(math.floor(high))
    return Dim(p.name, low, high, bool(p.log))


def choosable(config: Any) -> list[typed.Entry]:
    """The choices of `config` a sweep may vary (the spec's sweepable ones, and model.name)."""
    entries = typed.sweep_params(config)
    model = next((e for e in typed.params(config) if e.key == "model.name"), None)
    return ([model] if model is not None else []) + entries


def model_choices(base: dict) -> list[str]:
    """The zoo models that take the base data's input (model.name's default choices)."""
    from core.models import registry
    kind = typed.value_at(base, "data.input_kind")
    return [m for m in registry.list_models() if kind is None or registry.spec(m).input_kind == kind]


def model_keys(base: dict, space: dict[str, Dim]) -> set[str]:
    """Model names the space can choose (the base's model when model.name is not varied)."""
    dim = space.get("model.name")
    if dim is None:
        return {base.get("model", {}).get("name")}
    return set(dim.choices) if dim.choices is not None else set(model_choices(base))


def resolved_dims(spec: SweepSpec) -> tuple[list[Dim], list[str]]:
    """The space with every range filled in and checked against the spec: (dims with
    model.name first, problems). Unknown keys, keys the model does not have, inverted or
    out-of-range bounds, unknown choices and fixed choices (epochs, seeds) are problems."""
    problems, dims = [], []
    base = spec.base
    models = sorted(m for m in model_keys(base, spec.space) if m)
    varied = "model.name" in spec.space
    for key, dim in sorted(spec.space.items(), key=lambda kv: kv[0] != "model.name"):
        if key in ("train.epochs",):
            problems.append("train.epochs is fixed in a sweep: set the sweep's epochs per trial instead")
            continue
        owners = dim.models or models
        found = _param_for(key, base, owners)
        if isinstance(found, str):
            problems.append(found)
            continue
        if varied and key.startswith("model.hparams."):  # one dim per model: each has its own range
            for model in owners:
                p = _param_for(key, base, [model])
                if not isinstance(p, str):
                    dims.append(_fill(dim, p, base, [model], problems))
            continue
        if not found.sweepable and key != "model.name":
            problems.append(f"{key} cannot be varied in a sweep ({found.help or 'fixed per run'})")
            continue
        dims.append(_fill(dim, found, base, list(dim.models), problems))
    if not spec.space:
        problems.append("the search space is empty: choose at least one value to vary")
    return dims, problems


def _fill(dim: Dim, p: typed.Param, base: dict, models: list[str], problems: list[str]) -> Dim:
    """The dim with the spec's default range where it gives none, checked against the Param."""
    full = default_dim(p)
    if dim.key == "model.name":
        full.choices = model_choices(base)
    out = Dim(dim.key, dim.low if dim.low is not None else full.low, dim.high if dim.high is not None else full.high,
              dim.log if dim.log is not None else full.log, dim.choices if dim.choices is not None else full.choices,
              models)
    prefix = f"{models[0]}: " if len(models) == 1 and dim.key.startswith("model.hparams.") else ""
    problems += [prefix + message for message in _check_dim(out, p)]
    return out


def _param_for(key: str, base: dict, models: list[str]) -> typed.Param | str:
    """The Param of `key` for the sweep (a message when it does not exist or does not apply)."""
    if key.startswith("model.hparams."):
        from core.models import registry
        name = key.removeprefix("model.hparams.")
        try:
            having = [m for m in models if name in {h.name for h in registry.spec(m).hparams}]
        except ConfigError as e:
            return str(e)
        if not having:
            known = sorted({h.name for m in models for h in registry.spec(m).hparams})
            return f"{key}: {', '.join(models)} has no hyperparameter {name!r} (it has: {', '.join(known)})"
        return typed.lookup(key, {**base, "model": {"name": having[0], "hparams": {}}})
    try:
        p = typed.lookup(key, base)
    except ConfigError as e:
        return str(e)
    entry = next((e for e in typed.params(base) if e.key == key), None)
    if entry is not None and not entry.active:
        return f"{key} does not apply to the base config: {p.why_not(base)}"
    return p


def _check_dim(dim: Dim, p: typed.Param) -> list[str]:
    key = dim.key
    if p.type in ("choice", "bool"):
        if not dim.choices:
            return [f"{key}: choose at least one of {', '.join(map(repr, p.options() if p.type == 'choice' else (False, True)))}"]
        problems = []
        for c in dim.choices:
            try:
                p.coerce(c, key)
            except ConfigError as e:
                problems.append(str(e))
        return problems
    if p.type not in ("int", "float"):
        return [f"{key} is a {p.type}, which a sweep cannot vary"]
    problems = []
    for end in ("low", "high"):
        try:
            setattr(dim, end, p.coerce(getattr(dim, end), f"{key} {end}"))
        except ConfigError as e:
            problems.append(str(e))
    if problems:
        return problems
    if dim.low > dim.high:
        return [f"{key}: the range is inverted (low {dim.low:g} > high {dim.high:g})"]
    if dim.log and dim.low <= 0:
        return [f"{key}: a log scale needs low > 0 (low is {dim.low:g})"]
    return []


def param_name(dim: Dim, model: str | None, varied_models: bool) -> str:
    """The Optuna parameter's name: the spec key (scoped by model when model.name varies,
    as one name cannot have two models' ranges)."""
    if varied_models and dim.key.startswith("model.hparams.") and model:
        return f"{model}.{dim.key.removeprefix('model.hparams.')}"
    return dim.key


def suggest(trial, dims: list[Dim], base: dict) -> dict:
    """Sample one config's overrides through an Optuna trial, define-by-run: a choice is asked
    only where it applies to the config sampled so far (a model's hyperparameters for the
    model chosen, `groups` only with grouped convolutions, ...)."""
    varied = any(d.key == "model.name" for d in dims)
    overrides: dict[str, Any] = {}
    model = base.get("model", {}).get("name")
    current = base
    for dim in dims:
        if dim.key == "model.name":
            model = trial.suggest_categorical("model.name", dim.choices)
            overrides["model.name"] = model
            current = _with(base, overrides)
            continue
        if dim.models and model not in dim.models:
            continue
        if dim.key not in {e.key for e in typed.params(current) if e.active}:
            continue
        name = param_name(dim, model, varied)
        if dim.choices is not None:
            value = trial.suggest_categorical(name, dim.choices)
        elif isinstance(dim.low, int) and isinstance(dim.high, int):
            value = trial.suggest_int(name, dim.low, dim.high, log=bool(dim.log))
        else:
            value = trial.suggest_float(name, float(dim.low), float(dim.high), log=bool(dim.log))
        overrides[dim.key] = value
        current = _with(base, overrides)
    return overrides


def _with(base: dict, overrides: dict) -> dict:
    """The base config dict with overrides set (a new model starts from its own defaults)."""
    start = base
    if "model.name" in overrides and overrides["model.name"] != base.get("model", {}).get("name"):
        start = {**base, "model": {"name": overrides["model.name"], "hparams": {}}}
    return typed.apply_overrides(start, overrides, explicit=False)


def trial_config(spec: SweepSpec, overrides: dict) -> RunConfig:
    """The validated run config of a trial (ConfigError with the registry's message)."""
    return typed.validate(_with(spec.base, {"train.epochs": spec.settings.epochs, **overrides}))


# ---- costs known before training ----------------------------------------------------------------
_SHAPES: dict[str, tuple[tuple, int]] = {}
_COST_CACHE: dict[str, dict] = {}


def input_of(config: RunConfig) -> tuple[tuple, int]:
    """(input shape, classes) of a config's data, read once per data setup in this process."""
    key = json.dumps({k: v for k, v in config.data.to_dict().items() if k != "augment"}, sort_keys=True, default=str)
    if key not in _SHAPES:
        from core.data.pipeline import load
        bundle = load(config.data)
        _SHAPES[key] = (tuple(bundle.input_shape), int(bundle.num_classes))
    return _SHAPES[key]


def costs_of(config: RunConfig, wanted: set[str] | None = None, flops_per_s: float | None = None) -> dict:
    """The profiler's figures for a config before training: params, flops (one window, the
    profiler's convention), latency_ms (flops / (machine FLOP/s x efficiency), one window) and
    memory_mb (estimated training memory at the batch size). Only `wanted` ones are computed."""
    import torch

    from core.models import registry
    from core.profiling.flops import count_flops
    from core.profiling.latency import estimate_latency_ms
    from core.profiling.memory import estimate_training_memory

    wanted = set(COSTS) if wanted is None else set(wanted)
    shape, classes = input_of(config)
    key = json.dumps([config.model.to_dict(), shape, classes, config.train.batch_size, config.optim.name,
                      config.train.amp, config.train.grad_checkpointing, sorted(wanted), flops_per_s], default=str)
    if key in _COST_CACHE:
        return dict(_COST_CACHE[key])
    from core.threads import compute_threads

    torch.manual_seed(0)
    with compute_threads(1, purpose="sweep costs"):
        model = registry.create(config.model.name, shape, classes, **config.model.hparams)
        out: dict[str, float] = {"params": sum(p.numel() for p in model.parameters())}
        if wanted & {"flops", "latency_ms"}:
            model.eval()
            flops = count_flops(model, torch.zeros(1, *shape)).total
            out["flops"] = flops
            out["latency_ms"] = estimate_latency_ms(flops, "cpu", flops_per_s=flops_per_s)
        if "memory_mb" in wanted:
            model.train()
            batch = max(1, config.train.batch_size // max(1, config.train.processes))
            memory = estimate_training_memory(model, shape, batch, config.optim.name, config.train.amp,
                                              config.train.grad_checkpointing)
            out["memory_mb"] = memory.total / 2**20
    _COST_CACHE[key] = out  # what was computed on the way (FLOPs with latency) is kept too
    return dict(out)


def format_cost(cost: str, value: float) -> str:
    label, unit, _ = COSTS[cost]
    if cost in ("params", "flops"):
        return f"{label} {_si(value)}"
    return f"{label} {value:.3g} {unit}"


def _si(value: float) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:.3g}{suffix}"
    return f"{value:.3g}"


def over_budget(costs: dict, budgets: dict) -> str:
    """Why a config is over budget ("" when it fits), e.g. "estimated latency 12.4 ms > 5 ms budget"."""
    reasons = []
    for cost, limit in budgets.items():
        value = costs.get(cost)
        if value is not None and value > limit:
            label, unit, _ = COSTS[cost]
            if cost in ("params", "flops"):
                reasons.append(f"{label} {_si(value)} > {_si(limit)} budget")
            else:
                reasons.append(f"{label} {value:.3g} {unit} > {limit:g} {unit} budget")
    return "; ".join(reasons)


def needed_costs(settings: SweepSettings) -> set[str]:
    return set(settings.costs) | set(settings.budgets())


# ---- checking a sweep before anything runs -----------------------------------------------------
def check(spec: SweepSpec, storage: str | None = None, probe_budget: int = 24) -> list[Dim]:
    """The resolved space, or ConfigError listing every problem: the base config, the space
    (empty, unknown key, a key the model does not have, inverted or out-of-range bounds),
    settings that do not go together, a budget nothing in the space meets and a storage
    URL that is malformed or cannot be reached. Nothing runs before this passes."""
    problems = [f"base config: {p}" for p in _base_problems(spec.base)]
    dims, space_problems = resolved_dims(spec) if not problems else ([], [])
    problems += space_problems
    s = spec.settings
    if len(s.costs) != len(set(s.costs)):
        problems.append("settings.costs: each cost once")
    if s.costs and s.pruner in ("successive_halving", "hyperband"):
        problems.append(f"settings.pruner={s.pruner!r} needs one objective (Optuna cannot prune several); "
                        "use 'median' (the project's rule) or 'none' with cost objectives")
    if s.sampler == "nsga2" and not s.costs:
        problems.append("settings.sampler='nsga2' is for several objectives: add a cost, or use 'tpe'")
    if storage is not None:
        try:
            open_storage(storage)
        except ConfigError as e:
            problems.append(str(e))
    if not problems and s.budgets():
        sample = preview(spec, dims, n=probe_budget)
        if sample["fits"] == 0 and sample["valid"] > 0:
            problems.append(f"no config of the space meets the budget ({', '.join(_budget_text(s))}): of "
                            f"{sample['tried']} sampled (the smallest corner included) the cheapest had "
                            f"{sample['cheapest_text']}; raise the budget or narrow the space to smaller models")
    if not problems and dims:
        sample = preview(spec, dims, n=8)
        if sample["valid"] == 0:
            problems.append("no config of the space is valid: " + sample["first_invalid"])
    if problems:
        raise ConfigError("\n".join(problems))
    return dims


def _budget_text(s: SweepSettings) -> list[str]:
    out = []
    for cost, limit in s.budgets().items():
        label, unit, _ = COSTS[cost]
        out.append(f"{label} <= {_si(limit) if cost in ('params', 'flops') else f'{limit:g} {unit}'}")
    return out


def _base_problems(base: dict) -> list[str]:
    try:
        RunConfig.from_dict(base).validated()
    except ConfigError as e:
        return str(e).splitlines()
    return []


def preview(spec: SweepSpec, dims: list[Dim] | None = None, n: int = 64, seed: int = 0) -> dict:
    """What share of the space is invalid or over budget, by sampling `n` configs (plus the
    smallest corner): tried, valid, fits, invalid / over-budget counts with their first
    reasons, the cheapest config's costs. Costs only; nothing trains."""
    import optuna

    quiet()
    dims = dims if dims is not None else resolved_dims(spec)[0]
    budgets = spec.settings.budgets()
    wanted = needed_costs(spec.settings)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    corner = {d.key: d.low for d in dims if d.choices is None}
    reasons: dict[str, int] = {}
    out = {"tried": 0, "valid": 0, "fits": 0, "invalid": 0, "over_budget": 0, "reasons": reasons,
           "first_invalid": "", "cheapest": None, "cheapest_text": ""}
    for i in range(n + 1):
        trial = study.ask()
        overrides = suggest(trial, dims, spec.base)
        if i == 0:
            overrides.update({k: v for k, v in corner.items() if k in overrides})
        elif n == 0:
            break
        out["tried"] += 1
        try:
            config = trial_config(spec, overrides)
        except ConfigError as e:
            out["invalid"] += 1
            reason = str(e).splitlines()[0]
            out["first_invalid"] = out["first_invalid"] or reason
            reasons[_reason_kind(reason)] = reasons.get(_reason_kind(reason), 0) + 1
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        out["valid"] += 1
        costs = costs_of(config, wanted) if wanted else {}
        over = over_budget(costs, budgets)
        if over:
            out["over_budget"] += 1
            for part in over.split("; "):
                kind = part.split(" > ")[0].rsplit(" ", 2)[0]
                reasons[f"over budget: {kind}"] = reasons.get(f"over budget: {kind}", 0) + 1
        else:
            out["fits"] += 1
        rank = [costs.get(c, 0) / budgets[c] for c in budgets] if budgets else [0]
        if costs and (out["cheapest"] is None or max(rank) < out["cheapest"][0]):
            out["cheapest"] = (max(rank), costs)
            out["cheapest_text"] = ", ".join(format_cost(c, v) for c, v in costs.items() if c in budgets)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    out["cheapest"] = out["cheapest"][1] if out["cheapest"] else None
    return out


def _reason_kind(reason: str) -> str:
    """A class of invalid-config messages, for counting (numbers become N)."""
    import re
    return "invalid: " + re.sub(r"(?<![A-Za-z_\d])-?\d+(\.\d+)?(e-?\d+)?(?![A-Za-z_\d])", "N", reason)[:120]


# ---- storage -------------------------------------------------------------------------------------
_STORAGES: dict[str, Any] = {}
_STORAGE_LOCK = threading.Lock()


def default_storage() -> str:
    """The embedded storage: one journal file in the runs folder."""
    from core import paths
    return f"journal:{paths.runs_dir() / JOURNAL_FILE}"


def redact(url: str) -> str:
    """The URL without its password."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def open_storage(url: str | None = None):
    """The Optuna storage of a URL (cached per process): None or "journal:PATH" (a journal
    file), "sqlite:///PATH", "postgresql://USER:PASS@HOST:PORT/DB" (psycopg 3). A URL that
    is malformed or cannot be reached raises ConfigError saying which and why."""
    url = url or default_storage()
    quiet()
    with _STORAGE_LOCK:
        if url in _STORAGES:
            return _STORAGES[url]
        storage = _open(url)
        _STORAGES[url] = storage
        return storage


def quiet() -> None:
    """Optuna's per-trial INFO lines off (the worker prints its own)."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _open(url: str):
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:")).expanduser()
        if not path.parent.is_dir():
            raise ConfigError(f"storage {url}: folder {path.parent} does not exist")
        try:
            return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
        except OSError as e:
            raise ConfigError(f"storage {url}: cannot open the journal file ({e.strerror or e})") from None
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("sqlite", "postgresql", "postgresql+psycopg", "postgres"):
        raise ConfigError(f"storage {redact(url)!r} is not a storage URL: use journal:PATH, sqlite:///PATH or "
                          "postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    if scheme == "postgres":
        url = "postgresql" + url[len("postgres"):]
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if scheme.startswith("postgres"):
        kwargs["connect_args"] = {"connect_timeout": 5}
    else:
        kwargs["connect_args"] = {"timeout": 60}
        db = Path(url.split(":///", 1)[-1]) if ":///" in url else None
        if db is None or not db.parent.is_dir():
            raise ConfigError(f"storage {url}: give sqlite:///PATH with an existing folder")
    try:
        return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=None)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's errors become one line for a person
        first = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"cannot reach the study storage {redact(url)}: {first[:200]}") from None


# ---- studies ---------------------------------------------------------------------------------
def study_name(spec: SweepSpec) -> str:
    base = spec.base
    return f"{base.get('model', {}).get('name', 'model')}-{base.get('data', {}).get('source', 'data')}-" \
           f"{time.strftime('%Y%m%d-%H%M%S')}"


def create_study(spec: SweepSpec, name: str | None = None, storage: str | None = None) -> str:
    """Check the sweep (ConfigError lists every problem) and create its study; returns its name.
    An existing study of that name is refused (join it with a worker instead)."""
    import optuna

    check(spec, storage)
    name = name or study_name(spec)
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(name) > 120:
        raise ConfigError(f"study name {name!r}: use letters, digits, '-', '_' and '.' (up to 120)")
    store = open_storage(storage)
    if name in {s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)}:
        raise ConfigError(f"a study named {name!r} already exists in {redact(storage or default_storage())}; "
                          "join it with `python -m core sweep worker --study NAME`, or choose another name")
    directions = ["maximize" if goal == "max" else "minimize" for _, goal in spec.settings.objectives()]
    study = optuna.create_study(storage=store, study_name=name, directions=directions)
    from core.profiling.latency import machine_flops_per_s
    study.set_user_attr(STUDY_ATTR, {"spec": spec.to_dict(), "created_at": time.time(),
                                     "machine_flops_per_s": machine_flops_per_s("cpu"),
                                     "host": socket.gethostname()})
    return name


def load(name: str, storage: str | None = None, sampler=None, pruner=None):
    """(study, spec) of an existing study, or ConfigError naming the studies there are."""
    import optuna

    store = open_storage(storage)
    try:
        study = optuna.load_study(study_name=name, storage=store, sampler=sampler, pruner=pruner)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(store, include_best_trial=False)]
        raise ConfigError(f"no study {name!r} in {redact(storage or default_storage())}"
                          + (f"; there are: {', '.join(names[-10:])}" if names else "; it has no studies")) from None
    attrs = study.user_attrs.get(STUDY_ATTR)
    if not attrs:
        raise ConfigError(f"study {name!r} was not made by Sigscope (it has no sweep definition)")
    return study, SweepSpec.from_dict(attrs["spec"])


def list_studies(storage: str | None = None) -> list[dict]:
    import optuna
    return [{"name": s.study_name, "trials": s.n_trials, "started": s.datetime_start,
             "directions": [d.name.lower() for d in s.directions]}
            for s in optuna.get_all_study_summaries(open_storage(storage), include_best_trial=False)]


def build_sampler(settings: SweepSettings, salt: int = 0):
    import optuna

    seed = settings.seed + salt
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, settings.trials // 3)))
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True,
                                      n_startup_trials=min(10, max(5, settings.trials // 4)))


def build_pruner(settings: SweepSettings):
    """Optuna's pruner for one objective (the callback applies the project's median rule
    itself for several objectives)."""
    import optuna

    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials,
                                           n_warmup_steps=settings.warmup_epochs)
    if settings.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, settings.warmup_epochs))
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, settings.warmup_epochs),
                                              max_resource=settings.epochs)
    return optuna.pruners.NopPruner()


# ---- trials' states -------------------------------------------------------------------------------
def _identity() -> dict:
    from core.store import process_identity
    pid, host, started = process_identity()
    return {"pid": pid, "host": host, "started": started}


def counted(trial) -> bool:
    """Whether a trial counts toward the study's trials (a failed trial that was retried, or
    one asked after the budget was spent, does not)."""
    return not trial.user_attrs.get("retried") and not trial.user_attrs.get("skipped")


def remaining(study, settings: SweepSettings) -> int:
    return settings.trials - sum(1 for t in study.get_trials(deepcopy=False) if counted(t))


def wants_more(study, settings: SweepSettings) -> bool:
    """Whether a worker should ask for another trial: queued ones (retries, configs a person
    queued) run first; then new ones until the study has its trials."""
    import optuna
    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))) or \
        remaining(study, settings) > 0


def reap(study, store=None, stale: float = STALE_SECONDS) -> list[int]:
    """Running trials whose worker died: marked failed with the reason, their parameters
    queued once more (a retry is not retried again), their run process told to stop.
    Returns the trial numbers reaped."""
    import optuna

    from core.store import process_alive

    reaped = []
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        who = t.user_attrs.get("worker") or {}
        beat = float(t.user_attrs.get("heartbeat") or (t.datetime_start.timestamp() if t.datetime_start else now))
        local = who.get("host") == socket.gethostname()
        dead = (not process_alive(who.get("pid"), who.get("host"), who.get("started"))) if local and who \
            else now - beat > stale
        if not dead:
            continue
        where = f"pid {who.get('pid')} on {who.get('host')}" if who else "unknown"
        retry = not t.user_attrs.get("retry_of") and t.user_attrs.get("retry_of") != 0
        reason = f"its sweep worker ({where}) died" + ("; its parameters were queued again" if retry else
                                                      "; it was already a retry, so it is not retried again")
        try:
            study._storage.set_trial_user_attr(t._trial_id, "reason", reason)
            if retry:
                study._storage.set_trial_user_attr(t._trial_id, "retried", True)
            study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        except (RuntimeError, ValueError):
            continue  # another worker reaped or finished it first
        if retry:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        run_id = t.user_attrs.get("run_id")
        if store is not None and run_id:
            from core.launch import signal_run
            signal_run(store, run_id)
        reaped.append(t.number)
    return reaped


def request_stop(name: str, storage: str | None = None, store=None) -> None:
    """Ask every worker of the study to stop: no new trials; running ones are cancelled and
    queued again for a resume; finished ones stay."""
    study, _ = load(name, storage)
    study.set_user_attr("stop_requested", time.time())
    if store is not None and store.get_sweep(name, storage or default_storage()):
        store.put_sweep(name, storage or default_storage(), status="stopping")


def set_trials(name: str, storage: str | None, trials: int) -> int:
    """Give a study a new trial budget (more for a study that ran out, fewer to end it sooner).
    Running workers pick it up at their next heartbeat. Returns the old budget."""
    study, spec = load(name, storage)
    old = spec.settings.trials
    settings = parse_settings({**spec.settings.to_dict(), "trials": trials})
    attrs = dict(study.user_attrs[STUDY_ATTR])
    attrs["spec"] = SweepSpec(base=spec.base, space=spec.space, settings=settings).to_dict()
    study.set_user_attr(STUDY_ATTR, attrs)
    return old


def clear_stop(study) -> None:
    if study.user_attrs.get("stop_requested"):
        study.set_user_attr("stop_requested", None)


def stop_requested(study) -> bool:
    return bool(study.user_attrs.get("stop_requested"))


# ---- the worker --------------------------------------------------------------------------------------
class SweepWorker:
    """Runs a study's trials on this machine until the study has all its trials or is stopped.

    workers: trials training at once (each an ordinary run process of a JobManager).
    Several SweepWorkers (processes, machines) can work on one study at once."""

    def __init__(self, name: str, storage: str | None = None, store=None, workers: int | None = None,
                 poll: float = 0.5, log: Callable[[str], None] | None = None, check_memory: bool = True) -> None:
        from core.store import Store

        self.name = name
        self.storage = storage or default_storage()
        self.store = store or Store()
        self.study, self.spec = load(name, self.storage)
        self.workers = int(workers or self.spec.settings.workers)
        self.poll = poll
        self.log = log or (lambda line: None)
        self.check_memory = check_memory
        self.stop_event = threading.Event()
        self.inflight: dict[str, Any] = {}  # run_id -> FrozenTrial-like (number, trial_id)
        self._last_beat = 0.0
        self._last_reap = 0.0
        self.stopping = False  # a stop cancels running trials: they are queued again even when retries

    def run(self) -> dict:
        """Work until done or stopped; returns `summary()` of the study."""
        import optuna

        from core.jobs import JobManager

        settings = self.spec.settings
        self.study = optuna.load_study(study_name=self.name, storage=open_storage(self.storage),
                                       sampler=build_sampler(settings, self._join()))
        dims, problems = resolved_dims(self.spec)
        if problems:
            raise ConfigError("\n".join(problems))
        flops_per_s = self.study.user_attrs[STUDY_ATTR].get("machine_flops_per_s")
        manager = JobManager(self.store, max_workers=self.workers, mode="process", check_memory=self.check_memory)
        self.store.put_sweep(self.name, self.storage, status="running", workers=self.workers,
                             **dict(zip(("owner_pid", "owner_host", "owner_started"), _identity().values())))
        self.stopping = False
        try:
            reap(self.study, self.store)
            while True:
                if not self.stopping and (self.stop_event.is_set() or stop_requested(self.study)):
                    self.stopping = True
                    self.log(f"stopping: cancelling {len(self.inflight)} running trial(s)")
                    for run_id in self.inflight:
                        manager.cancel(run_id)
                self._finish_ended()
                self._housekeeping()
                while not self.stopping and len(self.inflight) < self.workers and wants_more(self.study, settings):
                    self._start_one(manager, dims, flops_per_s)
                if not self.inflight and (self.stopping or not wants_more(self.study, settings)):
                    break
                time.sleep(self.poll)
        finally:
            manager.shutdown(wait=False, cancel=True)
            for run_id in list(self.inflight):
                manager.wait(run_id, timeout=30)
            self._finish_ended(force=True)
            done = not wants_more(self.study, settings) and not self.inflight
            self.store.put_sweep(self.name, self.storage, status="finished" if done else "stopped",
                                 message="" if done else "stopped before all trials ran")
        return summary(self.name, self.storage)

    def _join(self) -> int:
        """This worker's number among those that joined the study: the sampler's seed is the
        study's seed plus it, so a lone worker's draws repeat and two workers' differ."""
        joined = int(self.study.user_attrs.get("joined", 0))
        self.study.set_user_attr("joined", joined + 1)
        return joined

    # ---- one trial ----
    def _start_one(self, manager, dims: list[Dim], flops_per_s: float | None) -> None:
        import optuna

        started = time.perf_counter()
        trial = self.study.ask()
        storage = self.study._storage
        tid = trial._trial_id
        queued = "fixed_params" in self.study._storage.get_trial_system_attrs(tid)
        if not queued and not self._within_budget(trial.number):
            storage.set_trial_user_attr(tid, "skipped", True)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        storage.set_trial_user_attr(tid, "worker", _identity())
        storage.set_trial_user_attr(tid, "heartbeat", time.time())
        overrides = suggest(trial, dims, self.spec.base)
        storage.set_trial_user_attr(tid, "overrides", _jsonable(overrides))
        try:
            config = trial_config(self.spec, overrides)
        except ConfigError as e:
            return self._refuse(trial, "invalid: " + "; ".join(str(e).splitlines()), started)
        wanted = needed_costs(self.spec.settings)
        try:
            costs = costs_of(config, wanted | {"params"}, flops_per_s)
        except Exception as e:  # noqa: BLE001 - a model that cannot be priced cannot be trained either
            return self._refuse(trial, f"invalid: the profiler could not build it ({str(e).splitlines()[0][:200]})",
                                started)
        storage.set_trial_user_attr(tid, "costs", costs)
        over = over_budget(costs, self.spec.settings.budgets())
        if over:
            return self._refuse(trial, over, started)
        columns = {"study": self.name, "trial": trial.number,
                   "sweep": {"storage": self.storage, "trial_id": tid, "study": self.name}}
        run_id = manager.submit(config, name=f"{self.name} #{trial.number}", columns=columns)
        storage.set_trial_user_attr(tid, "run_id", run_id)
        self.inflight[run_id] = trial
        self.log(f"trial {trial.number}: run {run_id} " + ", ".join(f"{k}={_short(v)}" for k, v in overrides.items()))

    def _within_budget(self, number: int) -> bool:
        ahead = [t for t in self.study.get_trials(deepcopy=False) if t.number < number and counted(t)]
        return len(ahead) < self.spec.settings.trials

    def _refuse(self, trial, reason: str, started: float) -> None:
        import optuna

        ms = (time.perf_counter() - started) * 1e3
        self.study._storage.set_trial_user_attr(trial._trial_id, "reason", reason)
        self.study._storage.set_trial_user_attr(trial._trial_id, "stage", f"before training ({ms:.0f} ms)")
        self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        self.log(f"trial {trial.number}: refused before training in {ms:.0f} ms: {reason}")

    def _finish_ended(self, force: bool = False) -> None:
        for run_id, trial in list(self.inflight.items()):
            run = self.store.get_run(run_id)
            if run is None or run["status"] not in ("queued", "running") or force:
                self._tell(trial, run)
                del self.inflight[run_id]

    def _tell(self, trial, run: dict | None) -> None:
        import optuna

        State = optuna.trial.TrialState
        storage, tid = self.study._storage, trial._trial_id
        status = run["status"] if run else "deleted"
        try:
            if storage.get_trial(tid).state.is_finished():
                return  # reaped meanwhile (this worker was thought dead)
            if status == "completed":
                value = objective_value(self.store, run["id"], self.spec.settings)
                if value is None:
                    storage.set_trial_user_attr(tid, "reason", "no validation metric was recorded (empty validation "
                                                               "split?)")
                    self.study.tell(trial, state=State.FAIL)
                    return
                costs = storage.get_trial(tid).user_attrs.get("costs", {})
                values = [value] + [costs[c] for c in self.spec.settings.costs]
                self.study.tell(trial, values if len(values) > 1 else values[0])
                self.log(f"trial {trial.number}: complete, {self.spec.settings.metric}={value:.4g}")
                return
            reason = (run or {}).get("error") or status
            if status == "pruned":
                storage.set_trial_user_attr(tid, "reason", reason)
                self.study.tell(trial, state=State.PRUNED)
            else:
                retry = status in ("cancelled", "interrupted", "queued", "running") and \
                    (trial.user_attrs.get("retry_of") is None or (self.stopping and status == "cancelled"))
                storage.set_trial_user_attr(tid, "reason", f"{status}: {reason}" if not reason.startswith(status)
                                            else reason)
                if retry:
                    storage.set_trial_user_attr(tid, "retried", True)
                self.study.tell(trial, state=State.FAIL)
                if retry:
                    first = trial.user_attrs.get("retry_of")
                    self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number if first is None
                                                                       else first})
            self.log(f"trial {trial.number}: {status}: {reason}")
        except (RuntimeError, ValueError) as e:
            self.log(f"trial {trial.number}: could not record its end ({e})")

    def _housekeeping(self) -> None:
        now = time.time()
        if now - self._last_beat >= HEARTBEAT_SECONDS:
            for trial in self.inflight.values():
                try:
                    self.study._storage.set_trial_user_attr(trial._trial_id, "heartbeat", now)
                except (RuntimeError, ValueError):
                    pass
            self._last_beat = now
        if now - self._last_reap >= HEARTBEAT_SECONDS:
            reap(self.study, self.store)
            self._refresh_budget()
            self._last_reap = now

    def _refresh_budget(self) -> None:
        """The study's trial budget as stored now (`sweep worker --trials N` may have changed it)."""
        try:
            trials = int(self.study.user_attrs[STUDY_ATTR]["spec"]["settings"]["trials"])
        except (KeyError, TypeError, ValueError):
            return
        if trials != self.spec.settings.trials:
            self.log(f"the study's budget is now {trials} trials (was {self.spec.settings.trials})")
            self.spec.settings.trials = trials


def objective_value(store, run_id: str, settings: SweepSettings) -> float | None:
    """A completed trial's value: the best epoch's validation metric (the checkpoint a run keeps)."""
    key = METRICS[settings.metric][0].removeprefix("val_")
    values = [r["value"] for r in store.metric_series(run_id, keys=[key]) if r.get("split") == "val"
              and r["value"] is not None and math.isfinite(r["value"])]
    if not values:
        return None
    return max(values) if settings.goal == "max" else min(values)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _jsonable(data: dict) -> dict:
    return json.loads(json.dumps(data, default=str))


# ---- inside the trial's run process ---------------------------------------------------------------
def trial_callback(run: dict):
    """The Trainer callback of a sweep trial's run: reports each epoch's metric and stops the
    run when the pruner says so (`run` is the run's row, with its `sweep` link)."""
    from core.train.callbacks import Callback

    link = run["sweep"]

    class TrialPruning(Callback):
        name = "sweep_trial"

        def __init__(self) -> None:
            import optuna

            self.study = optuna.load_study(study_name=link["study"], storage=open_storage(link["storage"]),
                                           sampler=optuna.samplers.RandomSampler())
            self.spec = SweepSpec.from_dict(self.study.user_attrs[STUDY_ATTR]["spec"])
            self.settings = self.spec.settings
            self.trial_id = int(link["trial_id"])
            self.curve: list[float] = []

        def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, float]) -> None:
            storage = self.study._storage
            if storage.get_trial(self.trial_id).state.is_finished():
                trainer.request_stop("cancelled", "the sweep ended this trial (its worker was thought dead)")
                return
            value = metrics.get(METRICS[self.settings.metric][0])
            if value is None or not math.isfinite(value):
                return
            self.curve.append(float(value))
            storage.set_trial_user_attr(self.trial_id, "curve", self.curve)
            storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            reason = self.verdict(epoch + 1, float(value))
            if reason:
                trainer.request_stop("pruned", reason)

        def verdict(self, epochs: int, value: float) -> str:
            """Why the trial stops after `epochs` epochs ("" = it goes on)."""
            s = self.settings
            if s.pruner == "none" or epochs >= s.epochs:
                return ""
            label = s.metric
            if len(s.objectives()) == 1:
                import optuna
                trial = optuna.trial.Trial(self.study_with_pruner(), self.trial_id)
                trial.report(value, epochs)
                if not trial.should_prune():
                    return ""
                if s.pruner == "median":
                    median, n = median_at(self.study, epochs, s)
                    return (f"pruned after epoch {epochs}: {label} {value:.4g} is worse than the median {median:.4g} "
                            f"of {n} completed trials at that epoch (median pruner)")
                return (f"pruned after epoch {epochs}: {label} {value:.4g} is not among the best of its rung "
                        f"({s.pruner.replace('_', ' ')} pruner)")
            if epochs < max(1, s.warmup_epochs):
                return ""
            median, n = median_at(self.study, epochs, s)
            if n < max(1, s.startup_trials) or median is None:
                return ""
            worse = value < median if s.goal == "max" else value > median
            if worse:
                return (f"pruned after epoch {epochs}: {label} {value:.4g} is worse than the median {median:.4g} "
                        f"of {n} completed trials at that epoch (Sigscope's median rule: Optuna cannot prune "
                        f"a study with several objectives)")
            return ""

        def study_with_pruner(self):
            self.study.pruner = build_pruner(self.settings)
            return self.study

    return TrialPruning()


def median_at(study, epochs: int, settings: SweepSettings) -> tuple[float | None, int]:
    """The median of completed trials' metric after `epochs` epochs, and how many had one."""
    import optuna

    values = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        curve = t.user_attrs.get("curve") or []
        if len(curve) >= epochs:
            values.append(curve[epochs - 1])
    return (statistics.median(values) if values else None), len(values)


# ---- reading a study ---------------------------------------------------------------------------------
STATE_NAMES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
               "WAITING": "waiting"}


def trials(name: str, storage: str | None = None, study=None) -> list[dict]:
    """Every trial of a study as a row: number, state, value(s), params, costs, reason, run
    (`study`: the study already loaded)."""
    study = study if study is not None else load(name, storage)[0]
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("skipped"):
            continue
        state = STATE_NAMES.get(t.state.name, t.state.name.lower())
        row = {"number": t.number, "state": state, "value": t.values[0] if t.values else None,
               "values": list(t.values) if t.values else None, "params": dict(t.params),
               "overrides": t.user_attrs.get("overrides", {}), "costs": t.user_attrs.get("costs", {}),
               "reason": t.user_attrs.get("reason", ""), "stage": t.user_attrs.get("stage", ""),
               "run_id": t.user_attrs.get("run_id"), "curve": t.user_attrs.get("curve", []),
               "retry_of": t.user_attrs.get("retry_of"), "retried": bool(t.user_attrs.get("retried")),
               "started": t.datetime_start.timestamp() if t.datetime_start else None,
               "finished": t.datetime_complete.timestamp() if t.datetime_complete else None}
        rows.append(row)
    return rows


def summary(name: str, storage: str | None = None, rows: list[dict] | None = None,
            spec: SweepSpec | None = None) -> dict:
    """{"study", "storage", "objectives", "trials": {state: n}, "best": {...} or None,
    "pareto": [...] (several objectives)}. rows, spec: `trials()` and the spec already read."""
    if spec is None or rows is None:
        study, spec = load(name, storage)
        rows = trials(name, storage, study)
    counts = {state: 0 for state in ("complete", "pruned", "failed", "running", "waiting")}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    out = {"study": name, "storage": redact(storage or default_storage()),
           "objectives": [f"{n}:{g}" for n, g in spec.settings.objectives()],
           "trials": counts, "budget": spec.settings.trials, "best": None, "pareto": []}
    complete = [r for r in rows if r["state"] == "complete"]
    if complete:
        goal = spec.settings.goal
        best = (max if goal == "max" else min)(complete, key=lambda r: r["value"])
        out["best"] = _brief(best)
        if spec.settings.costs:
            out["pareto"] = [_brief(r) for r in pareto(complete, spec.settings)]
    return out


def _brief(row: dict) -> dict:
    return {k: row[k] for k in ("number", "value", "values", "overrides", "costs", "run_id")}


def pareto(rows: list[dict], settings: SweepSettings) -> list[dict]:
    """The non-dominated complete trials (every objective in its own direction)."""
    signs = [1 if goal == "max" else -1 for _, goal in settings.objectives()]

    def key(r):
        return [s * v for s, v in zip(signs, r["values"])]

    front = []
    for r in rows:
        mine = key(r)
        if not any(all(o >= m for o, m in zip(key(q), mine)) and key(q) != mine for q in rows):
            front.append(r)
    return sorted(front, key=lambda r: r["values"][1] if len(r["values"]) > 1 else 0)


def best_config(name: str, storage: str | None = None, number: int | None = None,
                epochs: int | None = None) -> RunConfig:
    """The run config of trial `number` (the best complete trial when None), with `epochs`
    (default: the base config's) for a full run."""
    study, spec = load(name, storage)
    rows = trials(name, storage, study)
    if number is None:
        best = summary(name, storage, rows, spec)["best"]
        if best is None:
            raise ConfigError(f"study {name!r} has no complete trial yet")
        number = best["number"]
    row = next((r for r in rows if r["number"] == number), None)
    if row is None:
        raise ConfigError(f"study {name!r} has no trial {number}")
    config = trial_config(spec, row["overrides"])
    config.train.epochs = int(epochs or RunConfig.from_dict(spec.base).train.epochs)
    config.name = f"{name} #{number}"
    return config.validated()


# ---- sweeps as processes (the dashboard starts these) -------------------------------------------------
def worker_command(name: str, storage: str, workers: int, store_path: str | Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "core", "sweep", "worker", "--study", name, "--storage", storage,
           "--workers", str(workers)]
    return cmd + (["--store", str(store_path)] if store_path else [])


def start_worker(store, name: str, storage: str | None = None, workers: int = 1) -> int:
    """Start a detached `python -m core sweep worker` process for a study (its output in
    <runs>/sweeps/NAME.log); returns its pid. It outlives the dashboard that started it."""
    import subprocess

    from core import launch

    storage = storage or default_storage()
    study, _ = load(name, storage)
    clear_stop(study)
    folder = Path(store.runs_dir) / "sweeps"
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(worker_command(name, storage, workers, store.path), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                env=launch.child_env(), cwd=str(Path(__file__).resolve().parents[1]))
    from core.store import process_identity
    pid, host, started = process_identity(proc.pid)
    store.put_sweep(name, storage, status="running", owner_pid=pid, owner_host=host, owner_started=started,
                    workers=workers, log_path=str(log_path), message="")
    threading.Thread(target=proc.wait, daemon=True).start()  # reap the child when it ends
    return proc.pid


def revive(store) -> list[str]:
    """Sweeps of this machine left `running` by a worker process that is gone (a restart):
    start a worker again, which reaps their dead trials and carries on. Returns their names."""
    from core.store import process_alive

    revived = []
    for row in store.list_sweeps():
        if row["status"] not in ("running",) or row["owner_host"] not in (None, socket.gethostname()):
            continue
        if process_alive(row["owner_pid"], row["owner_host"], row["owner_started"]):
            continue
        try:
            start_worker(store, row["name"], row["storage"], int(row["workers"] or 1))
            revived.append(row["name"])
        except ConfigError as e:
            store.put_sweep(row["name"], row["storage"], status="failed", message=str(e))
    return revived


def worker_alive(row: dict | None) -> bool:
    from core.store import process_alive
    return bool(row) and process_alive(row["owner_pid"], row["owner_host"], row["owner_started"])


# ---- presets ---------------------------------------------------------------------------------------
PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets" / "sweeps"


def sweep_presets() -> dict[str, dict]:
    """name -> the preset's JSON (title, description, base preset or config, space, settings)."""
    out = {}
    for path in sorted(PRESETS_DIR.glob("*.json")):
        out[path.stem] = json.loads(path.read_text())
    return out


def preset_spec(name: str) -> SweepSpec:
    """A sweep preset as a SweepSpec (its base: a run preset, plus overrides)."""
    presets = sweep_presets()
    if name not in presets:
        raise ConfigError(f"no sweep preset {name!r}; there are: {', '.join(presets) or 'none'}")
    data = dict(presets[name])
    base = RunConfig()
    if data.get("preset"):
        from core.presets import get
        base = get(data["preset"]).config
    if data.get("overrides"):
        base = base.with_overrides(data["overrides"])
    data["base"] = base.to_dict()
    data.pop("overrides", None)
    return SweepSpec.from_dict(data)


__all__ = [
    "Dim",
    "SweepSettings",
    "SweepSpec",
    "SweepWorker",
    "best_config",
    "check",
    "costs_of",
    "create_study",
    "default_storage",
    "load",
    "open_storage",
    "preset_spec",
    "preview",
    "reap",
    "request_stop",
    "revive",
    "start_worker",
    "summary",
    "sweep_presets",
    "trials",
]
