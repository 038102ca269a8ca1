"""What a model will cost before it is trained: parameters, FLOPs (with a per-layer table
and a cross-check between two counters), training memory and latency.

    report = profile_model("resnet1d", {"width": 64}, input_shape=(6, 128), batch_size=32)
    report.flops, report.memory["total"], report.to_dict()  # JSON-ready

`profile_module` does the same for any nn.Module. Parameters, FLOPs and the memory
estimate take well under a second for a zoo model at its defaults (the first call in a
process also pays a one-time import of torch's dispatch machinery, ~2 s); the measured
latency runs real forwards at the batch and is optional (`measure_latency=False`, or call
`measure_latency_ms` on its own).

How each figure is made:
- FLOPs: one inference forward (eval, gradients on, MHA fast path off) at batch 1 under
  FlopCounterMode with formulas for attention, LSTM and norms (see core.profiling.flops),
  scaled by the batch. fvcore counts the same forward by tracing as a cross-check.
- memory: see core.profiling.memory (real forward + backward at batches 2 and 4,
  extrapolated storage by storage to the batch).
- latency: see core.profiling.latency; with `operator_latency=True` (CPU, amp off) also
  core.profiling.op_latency's estimate from this machine's per-operator-class rates, under
  latency_ms["by_operator"].

Work is bounded before it starts: `check_profile_memory` makes the memory estimate on a
meta-device copy of the model, where nothing is allocated, and refuses a shape or batch
whose training step would need more than `limits().max_profile_memory_mib` (everything the
profiler runs fits within that step) with the estimate, the limit and how to change it.
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from core.errors import ConfigError
from core.profiling.flops import FLOPS_CONVENTION, by_category, count_flops, counting_conditions, fvcore_count
from core.profiling.latency import EFFICIENCY, estimate_latency_ms, machine_flops_per_s, measure_latency_ms
from core.profiling.memory import MemoryEstimate, estimate_training_memory, preserved_state, training_memory_bound

__all__ = ["ProfileReport", "profile_model", "profile_module", "measure_latency_ms", "FLOPS_CONVENTION",
           "check_profile_memory"]

PROBE_BATCH = 4  # the largest batch of the profiler's own training passes (memory probes at 2 and 4)


@dataclass
class ProfileReport:
    """Everything the profiler found; `to_dict()` is the JSON the CLI prints."""

    model: str
    input_shape: tuple
    batch_size: int
    settings: dict  # optimizer, amp, grad_checkpointing, device, hparams
    params: dict  # {"total", "trainable"}
    flops: int  # forward pass at batch_size
    macs: int
    memory: dict  # bytes: weights, grads, optimizer, activations, total, activations_per_example, ...
    latency_ms: dict  # estimated, measured (None when not measured), machine_flops_per_s, efficiency
    layers: list[dict]  # name, type, depth, output_shape, params, flops, own_flops, share
    unsupported_ops: list[dict]  # op, counter, calls (+ output_elements), note
    cross_check: dict  # fvcore vs FlopCounterMode
    flops_convention: str = FLOPS_CONVENTION
    seconds: dict = field(default_factory=dict)  # time spent per part

    def to_dict(self) -> dict:
        return {"model": self.model, "input_shape": list(self.input_shape), "batch_size": self.batch_size,
                **self.settings,
                "params": self.params, "flops": self.flops, "macs": self.macs,
                "flops_convention": self.flops_convention, "memory": self.memory,
                "latency_ms": self.latency_ms, "layers": self.layers,
                "unsupported_ops": self.unsupported_ops, "cross_check": self.cross_check,
                "seconds": self.seconds}


@contextmanager
def _single_thread() -> Iterator[None]:
    """The counting and memory passes run at batch 1-4, where intra-op threads only add
    synchronisation (and stall badly when other processes share the cores). Only this
    thread runs single-threaded (core.threads): a job beside it keeps its own count."""
    from core.threads import compute_threads

    with compute_threads(1, purpose="profile"):
        yield


def _check_settings(batch_size: int, optimizer: str, amp: str) -> None:
    if int(batch_size) != batch_size or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be a whole number of at least 1")
    from core import spec
    spec.lookup("optim.name").coerce(optimizer, "optimizer")
    spec.lookup("train.amp").coerce(amp, "amp")


def profile_footprint(model: nn.Module, input_shape: tuple, batch_size: int, optimizer: str = "adamw",
                      grad_checkpointing: bool = False, bound: bool = False) -> MemoryEstimate | None:
    """The profiler's own training-memory estimate for `model` (real or on the meta device) at
    this shape and max(batch, probe batch), traced on a meta-device twin: nothing is allocated.
    Everything the profiler runs (probes at batches 2 and 4, a forward at the batch to time it,
    a measured step at the batch when the probes cannot be extrapolated) fits within it.
    `bound`: an upper bound from one traced pass instead of the estimate's two
    (`training_memory_bound`). None when the model cannot run on the meta device."""
    shape = tuple(int(v) for v in input_shape)
    how = training_memory_bound if bound else estimate_training_memory
    try:
        return how(_meta_twin(model), shape, max(int(batch_size), PROBE_BATCH), optimizer=optimizer, amp="off",
                   grad_checkpointing=grad_checkpointing, device="meta")
    except (ConfigError, NotImplementedError, RuntimeError, TypeError, ValueError):
        return None


def check_profile_memory(model: nn.Module | None, input_shape: tuple, batch_size: int, optimizer: str = "adamw",
                         grad_checkpointing: bool = False, name: str | None = None) -> MemoryEstimate | None:
    """ConfigError, before anything is allocated, when training this shape and batch needs more
    than `limits().max_profile_memory_mib` by the profiler's own estimate: the input batch alone
    first (no model needed), then `profile_footprint` of `model` (None: the input check only) —
    its one-pass upper bound, and the two-pass estimate only when the bound is over the limit.
    Returns what let the request through (the bound) or None (no model, or it cannot run on
    the meta device)."""
    from core.limits import how_to_raise, limits

    shape = tuple(int(v) for v in input_shape)
    cap = limits().max_profile_memory_mib
    batch = max(int(batch_size), PROBE_BATCH)
    what = f"profiling {name or type(model).__name__} on input {_shape_text(shape)} at batch {batch_size}"
    tail = (f"(the profiler's own estimate of one training step at batch {batch}), over the limit of {cap:,} MiB: "
            f"give a shorter input or a smaller batch; {how_to_raise('max_profile_memory_mib')}")
    input_bytes = math.prod(shape) * 4 * batch  # float32 inputs
    if input_bytes > cap * 2**20:
        raise ConfigError(f"{what} needs more than {_mib(input_bytes)} for the input batch alone {tail}")
    if model is None:
        return None
    estimate = profile_footprint(model, shape, batch, optimizer, grad_checkpointing, bound=True)
    if estimate is not None and estimate.total > cap * 2**20:  # the bound may be loose: the estimate decides
        estimate = profile_footprint(model, shape, batch, optimizer, grad_checkpointing)
        if estimate is not None and estimate.total > cap * 2**20:
            raise ConfigError(f"{what} needs about {_mib(estimate.total)} {tail}")
    return estimate


def _mib(n: int | float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _shape_text(shape: tuple) -> str:
    return "x".join(str(v) for v in shape)


def _meta_twin(model: nn.Module) -> nn.Module:
    """`model` itself when it lives on the meta device, else a copy whose parameters and buffers
    are meta tensors of the same shapes (nothing allocated)."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.is_meta for t in tensors):
        return model
    memo: dict = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


def profile_model(name: str, hparams: dict | None = None, input_shape: tuple | None = None, num_classes: int = 6,
                  batch_size: int = 32, optimizer: str = "adamw", amp: str = "off", grad_checkpointing: bool = False,
                  measure_latency: bool = True, device: str = "cpu", cross_check: bool = True,
                  operator_latency: bool = False) -> ProfileReport:
    """Profile zoo model `name` at `hparams` (defaults for the rest) on `input_shape`
    ((C, T) or (C, F, T), no batch; the model's default input when None).

    Raises ConfigError (one line: which value, what is allowed) for an unknown model, a
    hyperparameter out of range, an input shape the model cannot take, or bad settings.
    """
    from core.models.registry import create, spec

    s = spec(name)
    shape = tuple(int(v) for v in (input_shape if input_shape is not None else s.default_input))
    hp = s.resolve(hparams or {}, shape)
    _check_settings(batch_size, optimizer, amp)
    if grad_checkpointing and not s.supports_checkpointing:
        raise ConfigError(f"model {name!r} does not support gradient checkpointing; profile it without --checkpointing")
    # bounded before anything is allocated: the input alone, then the model's own footprint on the meta device
    check_profile_memory(None, shape, batch_size, optimizer, grad_checkpointing, name)
    with torch.device("meta"):
        skeleton = create(name, shape, num_classes, **hp)
    check_profile_memory(skeleton, shape, batch_size, optimizer, grad_checkpointing, name)
    torch.manual_seed(0)
    model = create(name, shape, num_classes, **hp).to(device)
    report = _profile(model, shape, batch_size, optimizer=optimizer, amp=amp,
                      grad_checkpointing=grad_checkpointing, measure_latency=measure_latency,
                      device=device, cross_check=cross_check, name=name, operator_latency=operator_latency)
    report.settings["hparams"] = hp
    report.settings["num_classes"] = num_classes
    return report


def profile_module(model: nn.Module, input_shape: tuple, batch_size: int = 32, optimizer: str = "adamw",
                   amp: str = "off", grad_checkpointing: bool = False, measure_latency: bool = True,
                   device: str = "cpu", cross_check: bool = True, name: str | None = None,
                   operator_latency: bool = False) -> ProfileReport:
    """Profile any nn.Module taking (batch, *input_shape) tensors on `device`.

    The model comes back as it was: train/eval mode, buffers (BN statistics), gradients,
    checkpointing flag and the global RNG state are restored. A shape or batch whose profiling
    would allocate more than `limits().max_profile_memory_mib` is refused first (ConfigError).
    """
    _check_settings(batch_size, optimizer, amp)
    check_profile_memory(model, input_shape, batch_size, optimizer, grad_checkpointing, name)
    return _profile(model, input_shape, batch_size, optimizer=optimizer, amp=amp,
                    grad_checkpointing=grad_checkpointing, measure_latency=measure_latency, device=device,
                    cross_check=cross_check, name=name, operator_latency=operator_latency)


def _profile(model: nn.Module, input_shape: tuple, batch_size: int, optimizer: str, amp: str,
             grad_checkpointing: bool, measure_latency: bool, device: str, cross_check: bool,
             name: str | None, operator_latency: bool = False) -> ProfileReport:
    """profile_module once the memory check has passed."""
    shape = tuple(int(v) for v in input_shape)
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    params = list(model.parameters())
    total = sum(p.numel() for p in _unique(params))
    trainable = sum(p.numel() for p in _unique(params) if p.requires_grad)
    dtype = next((p.dtype for p in params if p.is_floating_point()), torch.float32)
    with _single_thread():
        rows, flop_count = _layer_table(model, shape, batch_size, device, dtype)
    flops = flop_count.total * batch_size
    seconds["flops"] = time.perf_counter() - start

    start = time.perf_counter()
    with _single_thread():
        memory = estimate_training_memory(model, shape, batch_size, optimizer=optimizer, amp=amp,
                                          grad_checkpointing=grad_checkpointing, device=device)
    seconds["memory"] = time.perf_counter() - start

    unsupported = [{"op": op, "counter": "flop_counter", "calls": calls, "output_elements": elems * batch_size,
                    "note": "element-wise, reduction or pooling op: not counted as FLOPs by convention"}
                   for op, (calls, elems) in flop_count.skipped.items()]
    check: dict[str, Any] = {}
    if cross_check:
        start = time.perf_counter()
        with _single_thread():
            check = _cross_check(model, shape, device, dtype, flop_count, batch_size)
        unsupported += [{"op": op, "counter": "fvcore", "calls": calls, "note": "fvcore has no handle for it"}
                        for op, calls in check.pop("_skipped", {}).items()]
        seconds["cross_check"] = time.perf_counter() - start

    latency = {"estimated": estimate_latency_ms(flops, device), "measured": None,
               "machine_flops_per_s": machine_flops_per_s(device), "efficiency": EFFICIENCY,
               "batch_size": batch_size}
    if operator_latency and torch.device(device).type == "cpu" and amp == "off":
        from core.profiling.op_latency import estimate_forward_ms

        start = time.perf_counter()
        latency["by_operator"] = estimate_forward_ms(model, shape, batch_size).to_dict()
        seconds["operator_latency"] = time.perf_counter() - start
    if measure_latency:
        start = time.perf_counter()
        latency["measured"] = measure_latency_ms(model, shape, batch_size, device=device, amp=amp)
        seconds["latency"] = time.perf_counter() - start

    settings = {"optimizer": optimizer, "amp": amp, "grad_checkpointing": grad_checkpointing, "device": device}
    return ProfileReport(model=name or type(model).__name__, input_shape=shape, batch_size=batch_size,
                         settings=settings, params={"total": total, "trainable": trainable},
                         flops=flops, macs=flops // 2, memory=memory.to_dict(), latency_ms=latency,
                         layers=rows, unsupported_ops=unsupported, cross_check=check, seconds=seconds)


def _unique(params: list[nn.Parameter]) -> list[nn.Parameter]:
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _first_tensor(obj) -> torch.Tensor | None:
    flat, _ = torch.utils._pytree.tree_flatten(obj)
    return next((t for t in flat if isinstance(t, torch.Tensor)), None)


def _record_shapes(model: nn.Module, names: dict[nn.Module, str], shapes: dict[str, list[int]],
                   calls: dict[str, int]) -> list:
    """Hooks that note each module's call count (in first-call order, parents before
    children) and the shape of its first output tensor."""
    def pre_hook(module, args):
        name = names[module]
        calls[name] = calls.get(name, 0) + 1

    def hook(module, args, output):
        t = _first_tensor(output)
        if t is not None:
            shapes[names[module]] = list(t.shape)
    return ([m.register_forward_pre_hook(pre_hook) for m in names] +
            [m.register_forward_hook(hook) for m in names])


def _layer_table(model: nn.Module, shape: tuple, batch_size: int, device: str, dtype: torch.dtype):
    """Per-module rows in call order; FLOPs counted at batch 1 and scaled, output shapes
    from batches 1 and 2 (a dimension that grows with the batch is scaled to it)."""
    names = {m: n for n, m in model.named_modules() if n}
    shapes1: dict[str, list[int]] = {}
    shapes2: dict[str, list[int]] = {}
    calls: dict[str, int] = {}
    with preserved_state(model):
        model.eval()
        handles = _record_shapes(model, names, shapes1, calls)
        try:
            flop_count = count_flops(model, torch.randn(1, *shape, device=device, dtype=dtype))
        finally:
            for h in handles:
                h.remove()
        handles = _record_shapes(model, names, shapes2, {})
        try:
            with torch.no_grad(), counting_conditions():
                model(torch.randn(2, *shape, device=device, dtype=dtype))
        finally:
            for h in handles:
                h.remove()
    total = max(flop_count.total, 1)
    children: dict[str, list[str]] = {}
    for n in names.values():
        parent = n.rsplit(".", 1)[0] if "." in n else ""
        children.setdefault(parent, []).append(n)
    _fill_containers(flop_count.by_module, list(names.values()), children)
    rows = []
    # rows in first-call order; a container never called itself (ModuleList) sits just
    # before its first child, and a module never called at all goes last
    first_call = {n: i for i, n in enumerate(calls)}
    def position(n: str) -> tuple:
        own = first_call.get(n)
        if own is None:
            own = min((i for c, i in first_call.items() if c.startswith(n + ".")), default=len(first_call))
        return (own, n.count("."))
    order = sorted(names.values(), key=position)
    modules = {n: m for m, n in names.items()}
    for n in order:
        m = modules[n]
        inclusive = flop_count.by_module.get(n, 0)
        own = inclusive - sum(flop_count.by_module.get(c, 0) for c in children.get(n, []))
        s1, s2 = shapes1.get(n), shapes2.get(n)
        out_shape = None
        if s1 is not None:
            out_shape = [a + (b - a) * (batch_size - 1) for a, b in zip(s1, s2)] if s2 and len(s2) == len(s1) else s1
        rows.append({"name": n, "type": type(m).__name__, "depth": n.count(".") + 1,
                     "output_shape": out_shape, "params": sum(p.numel() for p in m.parameters()),
                     "flops": inclusive * batch_size, "own_flops": own * batch_size,
                     "share": inclusive / total, "calls": calls.get(n, 0)})
    return rows, flop_count


def _fill_containers(by_module: dict[str, int], names: list[str], children: dict[str, list[str]]) -> None:
    """Containers that are never called themselves (ModuleList, ModuleDict) get the sum
    of their children, so every row's FLOPs include what runs inside it."""
    for n in sorted(names, key=lambda n: -n.count(".")):  # deepest first
        if n not in by_module and children.get(n):
            by_module[n] = sum(by_module.get(c, 0) for c in children[n])


def _cross_check(model: nn.Module, shape: tuple, device: str, dtype: torch.dtype, primary, batch_size: int) -> dict:
    """fvcore's count of the same inference forward next to FlopCounterMode's."""
    with preserved_state(model):
        model.eval()
        fv = fvcore_count(model, torch.randn(1, *shape, device=device, dtype=dtype))
        by_module_fv = fv.by_module
    if fv.error:
        return {"fvcore_flops": None, "flop_counter_flops": primary.total * batch_size, "agree": False,
                "error": fv.error, "_skipped": {}}
    fc_cat = by_category(primary.by_operator)
    categories = sorted(set(fc_cat) | set(fv.by_category))
    differences = []
    for path in sorted(set(by_module_fv) | set(primary.by_module)):
        if not path:
            continue
        diff = by_module_fv.get(path, 0) - primary.by_module.get(path, 0)
        kids = [p for p in set(by_module_fv) | set(primary.by_module) if "." in p and p.rsplit(".", 1)[0] == path]
        kid_diff = sum(by_module_fv.get(k, 0) - primary.by_module.get(k, 0) for k in kids)
        if diff != 0 and diff != kid_diff:
            differences.append({"module": path, "fvcore": by_module_fv.get(path, 0) * batch_size,
                                "flop_counter": primary.by_module.get(path, 0) * batch_size})
    fv_total, fc_total = fv.total_flops * batch_size, primary.total * batch_size
    return {"fvcore_flops": fv_total, "flop_counter_flops": fc_total,
            "agree": fv_total == fc_total,
            "relative_difference": abs(fv_total - fc_total) / max(fc_total, 1),
            "by_category": {c: {"fvcore": fv.by_category.get(c, 0) * batch_size,
                                "flop_counter": fc_cat.get(c, 0) * batch_size} for c in categories},
            "differences": differences,
            "note": "fvcore traces with TorchScript and drops work whose result is unused; "
                    "both are given handles for attention, LSTM/GRU and norms",
            "_skipped": fv.skipped}
