"""Live probes: cheap health statistics sampled every N optimizer steps.

Statistics are pure functions of tensors (`dead_unit_fraction`, `zero_fraction`,
`grouped_l2_norms`, ...); each probe is a Callback that calls them on probe steps only.
Forward hooks are attached in `on_step_start` of a probe step and removed before the
backward pass, so other steps pay nothing and recomputation under gradient
checkpointing is never counted twice.

Probe keys written (per layer; a "layer" is a module name, "model" for the whole net):
- grad_norm probe:   grad_norm (per module owning parameters, before clipping);
                     grad_norm_before_clip, grad_norm_after_clip (layer "model")
- dead_relu probe:   for ReLU/ReLU6 modules: dead_fraction (units that output exactly 0
                     for every example of the probe sample; a unit is one output element,
                     channel x position) and zero_fraction (outputs that are exactly 0).
                     GELU/SiLU/Mish/ELU/Hardswish never output exactly 0, so for them:
                     near_zero_unit_fraction and near_zero_fraction with |y| < 1e-3.
                     Activations called as functions (F.relu) have no module to hook
                     and are not seen.
- activations probe: act_mean, act_std, act_max per leaf module (not dropout/identity)
- weights probe:     weight_norm and update_ratio (||w_after - w_before|| / ||w_before||)
                     per module owning parameters; the norm is exact, the ratio is read on a
                     fixed strided sample of at most UPDATE_SAMPLE elements per tensor (exact
                     for smaller ones), so no parameter is copied
- histograms:        grad and weight histograms per module owning parameters, every
                     `histogram_every_n_steps`
- activation_histograms: a histogram of every leaf module's output, every
                     `histogram_every_n_steps`

What a probe step costs: the activation probes (dead units, activation statistics, activation
histograms) share one forward hook per layer (ActivationTap). It keeps the first
`train.probes.sample` examples of the layer's output (a view, no copy) and each statistic is
computed once on that sample however many probes ask for it (LayerSample), so a probe step's
extra work does not grow with the batch. The cadence is scaled to the run's length
(cadence_steps), about 50 probe steps and 20 histogram steps per run;
`bench/probe_overhead.py` measures what that costs against a hand-written loop.

Each probe declares what it stores and how the Monitor draws it (`views`); the Monitor builds
its tabs from those views, so a new probe is one class here plus its entry in PROBES.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import torch
from torch import nn

from core.config import ProbeConfig
from core.errors import ConfigError
from core.train.callbacks import Callback

if TYPE_CHECKING:
    from core.train.trainer import Trainer

RELU_TYPES = (nn.ReLU, nn.ReLU6)
SMOOTH_TYPES = (nn.GELU, nn.SiLU, nn.Mish, nn.ELU, nn.Hardswish, nn.CELU, nn.SELU)
SKIP_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
NEAR_ZERO = 1e-3
MODEL_LAYER = "model"
UPDATE_SAMPLE = 4096  # elements per parameter tensor the update ratio is read on


@dataclass(frozen=True)
class View:
    """How the Monitor draws what a probe stores.

    tab: the Monitor tab it appears in (tabs are made from the views, in PROBES order).
    kind: a figure the dashboard knows how to draw:
        "global_norm":   two keys of layer "model" (before and after clipping) against the run's grad_clip
        "layer_heatmap": one key's value per layer x step (options: log, colorscale, zmin, zmax, colorbar,
                         latest_max: a caption naming the layer with the highest latest value)
        "latest_bars":   the latest value of each key per layer
        "histogram":     histograms of kind `key` ("grad", "weight", "activation") per layer over time
    key: the stored probe key(s), or the histogram kind.
    """

    tab: str
    kind: str
    key: str | tuple[str, ...]
    title: str
    options: dict = field(default_factory=dict)

    @property
    def keys(self) -> tuple[str, ...]:
        return self.key if isinstance(self.key, tuple) else (self.key,)


# ---- pure statistics ------------------------------------------------------------------
# the reference formulas: LayerSample computes the same values on a probe step's sample with
# shared passes, and tests/test_train_probes.py checks the two agree
def dead_unit_fraction(acts: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> scalar: fraction of units (non-batch elements) that are 0 for every sample."""
    alive = (acts != 0).flatten(1).any(dim=0)
    return 1.0 - alive.float().mean()


def zero_fraction(acts: torch.Tensor) -> torch.Tensor:
    """(...) -> scalar: fraction of outputs that are exactly 0."""
    return (acts == 0).float().mean()


def near_zero_unit_fraction(acts: torch.Tensor, eps: float = NEAR_ZERO) -> torch.Tensor:
    """(B, ...) -> scalar: fraction of units with |y| < eps for every sample (smooth activations)."""
    active = (acts.abs() >= eps).flatten(1).any(dim=0)
    return 1.0 - active.float().mean()


def near_zero_fraction(acts: torch.Tensor, eps: float = NEAR_ZERO) -> torch.Tensor:
    """(...) -> scalar: fraction of outputs with |y| < eps."""
    return (acts.abs() < eps).float().mean()


def activation_stats(acts: torch.Tensor) -> torch.Tensor:
    """(...) -> (3,) tensor [mean, std, max] in float32, no host sync."""
    acts = acts.float()
    std = acts.std() if acts.numel() > 1 else acts.new_zeros(())
    return torch.stack([acts.mean(), std, acts.max()])


def grouped_l2_norms(tensors: list[torch.Tensor], groups: list[int], n_groups: int) -> torch.Tensor:
    """L2 norm of each group of tensors, computed with one foreach pass: (n_groups,) float32.
    `groups[i]` is the group index of `tensors[i]`."""
    if not tensors:
        return torch.zeros(n_groups)
    norms = torch._foreach_norm(tensors)
    squares = torch.stack([n.float() for n in norms]) ** 2
    index = torch.as_tensor(groups, device=squares.device)
    return torch.zeros(n_groups, device=squares.device).index_add_(0, index, squares).sqrt()


def normalized_histogram(values: torch.Tensor, bins: int = 30) -> torch.Tensor:
    """(N,) -> (bins + 2,) [min, max, counts...] without a host sync; edges are
    linspace(min, max, bins + 1)."""
    values = values.detach().float().flatten()
    lo, hi = torch.aminmax(values)
    span = (hi - lo).clamp(min=1e-12)
    counts = torch.histc((values - lo) / span, bins=bins, min=0.0, max=1.0)
    return torch.cat([lo[None], hi[None], counts])


def sample_rows(acts: torch.Tensor, n: int) -> torch.Tensor:
    """The first n examples (rows of dim 0) of a layer's output, as a view; all of it when n <= 0
    or the batch is no larger."""
    return acts if n <= 0 or acts.dim() == 0 or acts.shape[0] <= n else acts[:n]


class LayerSample:
    """One layer's output on a probe step, sampled once (`sample_rows`); each statistic any probe
    asks of it is computed at most once, so the dead-unit and activation probes share the passes
    over it (mean, std and max once, the fired mask once per threshold)."""

    def __init__(self, acts: torch.Tensor, n: int) -> None:
        self.x = sample_rows(acts.detach(), n).float()
        self._fired_cache: dict[float, torch.Tensor] = {}

    @cached_property
    def moments(self) -> torch.Tensor:
        """[mean, std, max] (std 0 for a single value)."""
        x = self.x
        mean = x.mean()
        # two passes (mean, then the norm of x - mean): as stable as torch.std_mean, which took
        # 0.93 ms on a 16x64x128 sample against 0.12 ms for these two on one CPU thread
        std = torch.linalg.vector_norm(x - mean) / math.sqrt(x.numel() - 1) if x.numel() > 1 else x.new_zeros(())
        return torch.stack([mean, std, x.amax()])

    def _fired(self, eps: float) -> torch.Tensor:
        if eps not in self._fired_cache:
            self._fired_cache[eps] = (self.x != 0) if eps == 0 else (self.x.abs() >= eps)
        return self._fired_cache[eps]

    def silent(self, eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(fraction of units silent for every example, fraction of outputs silent); silent is
        exactly 0 for eps 0, |y| < eps otherwise."""
        fired = self._fired(eps)
        outputs = 1.0 - fired.float().mean()
        if fired.dim() == 0:
            return outputs, outputs
        units = 1.0 - fired.reshape(fired.shape[0], -1).any(dim=0).float().mean()
        return units, outputs

    def histogram(self, bins: int) -> torch.Tensor:
        return normalized_histogram(self.x, bins)


class ActivationTap:
    """One forward hook per layer for every activation probe of a step: the hook samples the
    layer's output once (LayerSample) and hands it to each probe that asked for that layer.

    sample: examples of the batch kept (`train.probes.sample`; 0 = all)."""

    def __init__(self, sample: int = 16) -> None:
        self.sample = int(sample)
        self.subscribers: dict[str, list["_ForwardHookProbe"]] = {}
        self.handles: list = []

    def subscribe(self, probe: "_ForwardHookProbe", name: str, module: nn.Module) -> None:
        """`probe` wants `module`'s output (as layer `name`) on this step's forward pass."""
        if name not in self.subscribers:
            self.subscribers[name] = []
            self.handles.append(module.register_forward_hook(self._hook(name)))
        if probe not in self.subscribers[name]:
            self.subscribers[name].append(probe)

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            acts = _first_tensor(output)
            waiting = [p for p in self.subscribers.get(name, ()) if name not in p.collected]
            if acts is None or not acts.numel() or not waiting:
                return
            with torch.no_grad():
                layer = LayerSample(acts, self.sample)
                for probe in waiting:
                    probe.collected[name] = probe.statistics(module, layer)
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.subscribers = [], {}


def is_probe_step(step: int, every: int) -> bool:
    """Probe steps are 1, every + 1, 2 * every + 1, ... (the first step is always seen)."""
    return every > 0 and (step - 1) % every == 0


# ---- module discovery -------------------------------------------------------------------
def parameter_layers(model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """Modules that own trainable parameters directly, with those parameters."""
    out = []
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            out.append((name or MODEL_LAYER, params))
    return out


def activation_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Activation modules a dead-unit probe can watch (ReLU family and smooth ones)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, RELU_TYPES + SMOOTH_TYPES)]


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules whose outputs are worth describing (dropout and identity skipped)."""
    return [(n or MODEL_LAYER, m) for n, m in model.named_modules()
            if not any(True for _ in m.children()) and not isinstance(m, SKIP_TYPES)]


def _first_tensor(output) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


# ---- probe callbacks ----------------------------------------------------------------------
class Probe(Callback):
    """Base for probes: `every` optimizer steps (0 = never).

    help: one line for the Train form and `python -m core options`.
    cadence: the ProbeConfig field that sets `every` ("every_n_steps" or "histogram_every_n_steps").
    views: what it stores and how the Monitor draws it.
    """

    help: str = ""
    cadence: str = "every_n_steps"
    views: tuple[View, ...] = ()

    def __init__(self, every: int = 10) -> None:
        """every: probe on steps 1, every + 1, ...; 0 turns the probe off."""
        self.every = int(every)

    def active(self, step: int) -> bool:
        return is_probe_step(step, self.every)


class _ParameterProbe(Probe):
    def on_fit_start(self, trainer: "Trainer") -> None:
        self.layers = parameter_layers(trainer.model)
        self.names = [name for name, _ in self.layers]
        self.params = [p for _, ps in self.layers for p in ps]
        self.groups = [i for i, (_, ps) in enumerate(self.layers) for _ in ps]


class GradNormProbe(_ParameterProbe):
    """Per-module gradient L2 norms (one foreach pass) and the global norm before and
    after clipping."""

    name = "grad_norm"
    help = "gradient L2 norm per layer and overall, before and after clipping"
    views = (View("Gradients", "global_norm", ("grad_norm_before_clip", "grad_norm_after_clip"),
                  "Global gradient norm"),
             View("Gradients", "layer_heatmap", "grad_norm", "Gradient L2 norm per layer (before clipping)",
                  {"colorbar": "grad norm", "log": True}))

    def on_after_backward(self, trainer: "Trainer", step: int) -> None:
        if not self.active(step):
            return
        pairs = [(p.grad.detach(), g) for p, g in zip(self.params, self.groups) if p.grad is not None]
        norms = grouped_l2_norms([t for t, _ in pairs], [g for _, g in pairs], len(self.names))
        values = norms.tolist()
        trainer.recorder.probes(step, "grad_norm", {n: v for n, v, has in
                                                    zip(self.names, values, self._has_grad()) if has})
        total = sum(v * v for v in values) ** 0.5
        trainer.recorder.probe(step, MODEL_LAYER, "grad_norm_before_clip", total)

    def _has_grad(self) -> list[bool]:
        return [any(p.grad is not None for p in ps) for _, ps in self.layers]

    def on_before_optimizer_step(self, trainer: "Trainer", step: int) -> None:
        if not self.active(step):
            return
        grads = [p.grad.detach() for p in self.params if p.grad is not None]
        total = float(grouped_l2_norms(grads, [0] * len(grads), 1)[0]) if grads else 0.0
        trainer.recorder.probe(step, MODEL_LAYER, "grad_norm_after_clip", total)


class WeightProbe(_ParameterProbe):
    """Per-module weight L2 norm (exact) and the update/weight ratio of the probe step's update,
    read on a fixed strided sample of each parameter tensor (no parameter is copied)."""

    name = "weights"
    help = "weight norm per layer and the update / weight ratio of each step"
    views = (View("Gradients", "layer_heatmap", "update_ratio", "Update / weight ratio per layer (healthy ≈ 1e-3)",
                  {"colorbar": "update ratio", "log": True, "colorscale": "Cividis"}),)

    def on_fit_start(self, trainer: "Trainer") -> None:
        super().on_fit_start(trainer)
        self.samples = [strided_sample(p.detach()) for p in self.params]

    def on_before_optimizer_step(self, trainer: "Trainer", step: int) -> None:
        self.before = None
        if self.active(step):
            n = len(self.names)
            self.weight_norms = grouped_l2_norms([p.detach() for p in self.params], self.groups, n)
            self.before = torch._foreach_mul(self.samples, 1.0)  # UPDATE_SAMPLE elements per tensor at most

    def on_step_end(self, trainer: "Trainer", step: int) -> None:
        before = getattr(self, "before", None)
        if before is None:
            return
        self.before = None
        n = len(self.names)
        updates = torch._foreach_sub(self.samples, before)
        stacked = torch.stack([self.weight_norms, grouped_l2_norms(before, self.groups, n),
                               grouped_l2_norms(updates, self.groups, n)])
        weight_norms, sampled_norms, update_norms = stacked.tolist()
        trainer.recorder.probes(step, "weight_norm", dict(zip(self.names, weight_norms)))
        trainer.recorder.probes(step, "update_ratio", {name: u / w if w > 0 else 0.0 for name, w, u
                                                       in zip(self.names, sampled_norms, update_norms)})


def strided_sample(t: torch.Tensor, n: int = UPDATE_SAMPLE) -> torch.Tensor:
    """A view of at most n evenly strided elements of t (t itself, flattened, when it is smaller)."""
    if not t.is_contiguous():
        return t  # no flat view of it exists; read all of it
    flat = t.view(-1)
    step = max(1, -(-flat.numel() // n))
    return flat[::step]


class _ForwardHookProbe(Probe):
    """Asks the shared ActivationTap for its layers' outputs on probe steps only and records what
    its `statistics` read from each layer's sample."""

    tap: ActivationTap | None = None  # build_probes gives every hook probe of a run one tap

    def modules(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        raise NotImplementedError

    def statistics(self, module: nn.Module, layer: LayerSample) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def on_fit_start(self, trainer: "Trainer") -> None:
        self.targets = self.modules(trainer.model)
        self.collected: dict[str, dict[str, torch.Tensor]] = {}
        if self.tap is None:
            self.tap = ActivationTap(trainer.config.train.probes.sample)

    def on_step_start(self, trainer: "Trainer", step: int) -> None:
        if not self.active(step):
            return
        self.collected = {}
        for name, module in self.targets:
            self.tap.subscribe(self, name, module)

    def remove_hooks(self) -> None:
        if self.tap is not None:
            self.tap.remove()

    def on_before_backward(self, trainer: "Trainer", step: int) -> None:
        self.remove_hooks()

    def on_step_end(self, trainer: "Trainer", step: int) -> None:
        self.remove_hooks()  # a step that ended early (stop requested) still leaves no hooks
        if not self.collected:
            return
        rows = [(layer, key, value) for layer, stats in self.collected.items() for key, value in stats.items()]
        self.collected = {}
        values = torch.stack([v.float().reshape(()) for _, _, v in rows]).tolist()
        by_key: dict[str, dict[str, float]] = {}
        for (layer, key, _), value in zip(rows, values):
            by_key.setdefault(key, {})[layer] = value
        for key, layers in by_key.items():
            trainer.recorder.probes(step, key, layers)

    def on_fit_end(self, trainer: "Trainer") -> None:
        self.remove_hooks()


class DeadReluProbe(_ForwardHookProbe):
    """Dead units per activation module (exact zeros for ReLU, near-zero for smooth ones)."""

    name = "dead_relu"
    help = "dead units per activation layer (ReLU: exactly 0; GELU/SiLU: |y| < 1e-3 for every example sampled)"
    views = tuple(View("Dead units", "layer_heatmap", key, title, {"colorbar": "fraction", "zmin": 0, "zmax": 1,
                                                                     "colorscale": "Reds", "latest_max": True})
                  for key, title in (
                      ("dead_fraction", "Dead units (ReLU: output exactly 0 for every example of the probe sample)"),
                      ("zero_fraction", "Zero outputs (ReLU: share of outputs that are exactly 0)"),
                      ("near_zero_unit_fraction", "Near-dead units of smooth activations (GELU/SiLU: |y| < 1e-3 "
                                                  "for every example sampled; these never output exactly 0)")))

    def modules(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        return activation_modules(model)

    def statistics(self, module: nn.Module, layer: LayerSample) -> dict[str, torch.Tensor]:
        if isinstance(module, RELU_TYPES):
            return dict(zip(("dead_fraction", "zero_fraction"), layer.silent(0.0)))
        return dict(zip(("near_zero_unit_fraction", "near_zero_fraction"), layer.silent(NEAR_ZERO)))


class ActivationStatsProbe(_ForwardHookProbe):
    """Mean, std and max of every leaf module's output."""

    name = "activations"
    help = "mean, std and max of every layer's output"
    views = (View("Activations", "latest_bars", ("act_mean", "act_std", "act_max"), "Latest activation statistics"),
             View("Activations", "layer_heatmap", "act_std", "Activation std per layer over time",
                  {"colorbar": "std", "log": True, "colorscale": "Viridis"}))

    def modules(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        return leaf_modules(model)

    def statistics(self, module: nn.Module, layer: LayerSample) -> dict[str, torch.Tensor]:
        return dict(zip(("act_mean", "act_std", "act_max"), layer.moments))


class HistogramProbe(_ParameterProbe):
    """Histograms of each parameter-owning module's gradients (before clipping) and weights."""

    name = "histograms"
    help = "histograms of each layer's gradients and weights"
    cadence = "histogram_every_n_steps"
    views = (View("Histograms", "histogram", "grad", "Gradient histogram"),
             View("Histograms", "histogram", "weight", "Weight histogram"))

    def __init__(self, every: int = 50, bins: int = 30) -> None:
        """every: steps between histograms (0 = off); bins: bins per histogram."""
        super().__init__(every)
        self.bins = bins

    def on_after_backward(self, trainer: "Trainer", step: int) -> None:
        if not self.active(step):
            return
        rows, tensors = [], []
        for name, params in self.layers:
            grads = [p.grad.detach().flatten() for p in params if p.grad is not None]
            if grads:
                rows.append((name, "grad"))
                tensors.append(normalized_histogram(torch.cat(grads), self.bins))
            rows.append((name, "weight"))
            tensors.append(normalized_histogram(torch.cat([p.detach().flatten() for p in params]), self.bins))
        if not tensors:
            return
        for (layer, kind), values in zip(rows, torch.stack(tensors).tolist()):
            lo, hi, counts = values[0], values[1], values[2:]
            edges = [lo + (hi - lo) * i / self.bins for i in range(self.bins + 1)]
            trainer.recorder.histogram(step, layer, kind, edges, counts)


class ActivationHistogramProbe(_ForwardHookProbe):
    """A histogram of every leaf module's output on histogram steps (one forward pass seen)."""

    name = "activation_histograms"
    help = "histograms of every layer's output"
    cadence = "histogram_every_n_steps"
    views = (View("Histograms", "histogram", "activation", "Activation histogram"),)

    def __init__(self, every: int = 50, bins: int = 30) -> None:
        """every: steps between histograms (0 = off); bins: bins per histogram."""
        super().__init__(every)
        self.bins = bins

    def modules(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        return leaf_modules(model)

    def statistics(self, module: nn.Module, layer: LayerSample) -> dict[str, torch.Tensor]:
        return {"histogram": layer.histogram(self.bins)}

    def on_step_end(self, trainer: "Trainer", step: int) -> None:
        self.remove_hooks()
        if not self.collected:
            return
        layers = list(self.collected)
        stacked = torch.stack([self.collected[layer]["histogram"] for layer in layers]).tolist()
        self.collected = {}
        for layer, values in zip(layers, stacked):
            lo, hi, counts = values[0], values[1], values[2:]
            edges = [lo + (hi - lo) * i / self.bins for i in range(self.bins + 1)]
            trainer.recorder.histogram(step, layer, "activation", edges, counts)


PROBES: dict[str, type[Probe]] = {cls.name: cls for cls in (
    GradNormProbe, DeadReluProbe, ActivationStatsProbe, WeightProbe, HistogramProbe, ActivationHistogramProbe)}


def register_probe(cls: type[Probe]) -> type[Probe]:
    """Add a probe class to the registry (a class decorator; PROBES lists the built-in ones)."""
    PROBES[cls.name] = cls
    return cls


AUTO_SAMPLES = {"every_n_steps": 50, "histogram_every_n_steps": 20}  # per run, when the cadence is left empty


def cadence_steps(cfg: ProbeConfig, field: str, total_steps: int | None) -> int:
    """Steps between samples of a cadence field: as set, or (empty) the run's length over
    AUTO_SAMPLES[field], at least every step."""
    value = getattr(cfg, field)
    if value is not None:
        return int(value)
    return max(1, round((total_steps or AUTO_SAMPLES[field]) / AUTO_SAMPLES[field]))


def build_probes(cfg: ProbeConfig, total_steps: int | None = None) -> list[Probe]:
    """The probe callbacks a config asks for, each at its cadence (none when probes are disabled);
    an empty cadence is scaled to `total_steps` (cadence_steps)."""
    if not cfg.enabled:
        return []
    unknown = [p for p in cfg.probes if p not in PROBES]
    if unknown:
        raise ConfigError(f"train.probes.probes: unknown probe(s) {unknown}; choose from {', '.join(PROBES)}")
    probes, tap = [], ActivationTap(cfg.sample)
    for name in dict.fromkeys(cfg.probes):
        every = cadence_steps(cfg, PROBES[name].cadence, total_steps)
        if every > 0:
            probe = PROBES[name](every)
            if isinstance(probe, _ForwardHookProbe):
                probe.tap = tap
            probes.append(probe)
    return probes


def views_of(probe_names) -> list[View]:
    """The views of the named probes, in PROBES order."""
    wanted = set(probe_names)
    return [v for name, cls in PROBES.items() if name in wanted for v in cls.views]


def all_views() -> list[View]:
    return [v for cls in PROBES.values() for v in cls.views]
