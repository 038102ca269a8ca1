"""Training-memory estimate from a real forward + backward, and the tracker behind it.

`StorageTimeline` is a TorchDispatchMode that sees every tensor an operator returns and
records, for each distinct storage (views share one), when it was allocated and when it
was freed (a weak reference to the storage itself is polled before each operator, so a
storage kept alive only inside autograd's saved tensors still counts as alive). Parameters,
buffers and the input batch exist before tracking starts and are left out.

`estimate_training_memory` runs one forward + loss + backward of the real model at two
small batches (2 and 4) under the requested AMP and checkpointing modes. Every storage's
size is a + b * batch (matched between the two runs by allocation order), so the
activation curve at the requested batch is known exactly without running that batch, and
its peak (activations saved for backward plus backward's working gradients, parameter
gradients left out because they are counted on their own) is the `activations` figure.

total = weights (parameters + buffers) + grads (trainable parameters)
        + optimizer state (adam/adamw: 2 x trainable; sgd with momentum: 1 x)
        + activations (peak over forward + backward at the batch, input batch included)
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from core.errors import ConfigError

_expired = torch.UntypedStorage._expired




def storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


def unique_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors` (views and ties counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            s = t.untyped_storage()
            seen[s._cdata] = s.nbytes()
    return sum(seen.values())


class _Alloc:
    __slots__ = ("alloc", "free", "nbytes", "key", "ref", "weak", "is_grad")

    def __init__(self, alloc: int, nbytes: int, key: int, ref: StorageWeakRef) -> None:
        self.alloc, self.free, self.nbytes, self.key, self.ref = alloc, None, nbytes, key, ref
        self.weak = ref.cdata  # the raw weak handle, polled with _expired (cheaper than ref.expired())
        self.is_grad = False  # ends up as a parameter's .grad (counted on its own)


class StorageTimeline(TorchDispatchMode):
    """Allocation and free times (in operator calls) of every storage created inside.

    `live_bytes()` is what is allocated now; `peak_bytes` the most at any point.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = (), meta: bool = False) -> None:
        super().__init__()
        self.meta = meta  # count meta-device tensors (an estimate made without allocating anything)
        self.exclude = {storage_key(t) for t in exclude if isinstance(t, torch.Tensor)}
        self.allocs: list[_Alloc] = []
        self._live: dict[int, _Alloc] = {}
        self.clock = 0
        self.current = 0
        self.peak_bytes = 0
        self.marks: dict[str, int] = {}

    def _poll(self) -> None:
        expired = _expired
        dead = [a for a in self._live.values() if expired(a.weak)]
        for a in dead:
            a.free = self.clock
            self.current -= a.nbytes
            del self._live[a.key]

    def _is_new(self, s: torch.UntypedStorage) -> bool:
        key = s._cdata
        if key in self.exclude:
            return False
        old = self._live.get(key)
        # a view or in-place result of a storage already tracked is not new
        return old is None or _expired(old.weak) or old.nbytes < s.nbytes()

    def _track(self, s: torch.UntypedStorage) -> None:
        key = s._cdata
        old = self._live.pop(key, None)
        if old is not None:  # same address, but freed or resized inside this operator
            old.free = self.clock
            self.current -= old.nbytes
        a = _Alloc(self.clock, s.nbytes(), key, StorageWeakRef(s))
        self.allocs.append(a)
        self._live[key] = a
        self.current += a.nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.clock += 1
        out = func(*args, **(kwargs or {}))
        storages = [t.untyped_storage() for t in tree_flatten(out)[0]
                    if isinstance(t, torch.Tensor) and (self.meta or t.device.type != "meta")]
        new = [s for s in storages if self._is_new(s)]
        if new:
            # Frees only matter where memory grows: collect them (all happened before
            # this operator's allocations, or its outputs could not reuse the address).
            self._poll()
            for s in new:
                if self._is_new(s):  # two outputs may share one new storage
                    self._track(s)
            if self.current > self.peak_bytes:
                self.peak_bytes = self.current
        return out

    def mark(self, label: str) -> None:
        """Remember the current time under `label` (e.g. "forward_end")."""
        self.clock += 1
        self._poll()
        self.marks[label] = self.clock

    def finish(self) -> None:
        # no gc.collect(): it costs ~0.4 s with torch loaded, and a training step frees
        # by reference counting; anything a cycle keeps alive is alive in training too.
        self.clock += 1
        self._poll()

    def live_bytes(self) -> int:
        self._poll()
        return self.current

    def live_keys(self) -> set[int]:
        return set(self._live)


@dataclass
class MemoryEstimate:
    """Training memory in bytes; `activations` = peak over forward + backward at the batch."""

    weights: int
    grads: int
    optimizer: int
    activations: int
    activations_per_example: int
    activations_saved: int  # held for backward at the end of forward (input included)
    input_batch: int
    batch_size: int
    amp: str
    grad_checkpointing: bool

    @property
    def total(self) -> int:
        return self.weights + self.grads + self.optimizer + self.activations

    def to_dict(self) -> dict:
        return {"weights": self.weights, "grads": self.grads, "optimizer": self.optimizer,
                "activations": self.activations, "total": self.total,
                "activations_per_example": self.activations_per_example,
                "activations_saved_for_backward": self.activations_saved,
                "input_batch": self.input_batch, "batch_size": self.batch_size,
                "amp": self.amp, "grad_checkpointing": self.grad_checkpointing}


def training_loss(output, num_classes: int | None = None) -> torch.Tensor:
    """Cross-entropy on random labels for (B, K) logits, else the mean of every float output."""
    if isinstance(output, torch.Tensor) and output.dim() == 2 and output.is_floating_point():
        k = output.shape[1]
        target = torch.randint(0, k, (output.shape[0],), device=output.device)
        return nn.functional.cross_entropy(output.float(), target)
    flat = [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not flat:
        raise ConfigError("the model returned no floating-point tensor, so there is nothing to back-propagate")
    return sum(t.float().mean() for t in flat)


def autocast_context(amp: str, device: str):
    from core.config import AMP, amp_dtype
    if amp not in AMP:
        raise ConfigError(f"amp={amp!r} is not valid: allowed {', '.join(repr(a) for a in AMP)}")
    dtype = amp_dtype(amp)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Run passes on `model` without leaving a trace: mode, buffers (BN statistics),
    existing gradients, checkpointing flag and the global RNG come back as they were."""
    training = {m: m.training for m in model.modules()}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    grads = {p: p.grad for p in model.parameters()}
    ckpt = getattr(model, "grad_checkpointing", None)
    devices = [torch.device(d) for d in {p.device for p in model.parameters()} if torch.device(d).type == "cuda"]
    with torch.random.fork_rng(devices=[d.index or 0 for d in devices]):
        try:
            yield
        finally:
            for m, flag in training.items():
                m.training = flag
            with torch.no_grad():
                for name, b in model.named_buffers():
                    if name in buffers:
                        b.copy_(buffers[name])
            for p, g in grads.items():
                p.grad = g
            if ckpt is not None and hasattr(model, "set_grad_checkpointing"):
                model.set_grad_checkpointing(bool(ckpt))


def run_forward_backward(model: nn.Module, example: torch.Tensor, amp: str, device: str) -> StorageTimeline:
    """One training forward + loss + backward of `model` on `example`, tracked.
    Parameter gradients are cleared first (as `zero_grad(set_to_none=True)` does)."""
    params = list(model.parameters())
    for p in params:
        p.grad = None
    exclude = params + list(model.buffers()) + [example]
    timeline = StorageTimeline(exclude, meta=example.is_meta)
    with timeline:
        with autocast_context(amp, device):
            out = model(example)
            loss = training_loss(out)
        timeline.mark("forward_end")
        loss.backward()
        del out, loss
    timeline.finish()
    grad_keys = {storage_key(p.grad) for p in params if p.grad is not None}
    for a in timeline.allocs:
        a.is_grad = a.free is None and a.key in grad_keys
    for p in params:
        p.grad = None
    return timeline


def _curve_peak(sizes: list[tuple[int, int | None, float]], t_end: int, at: int | None = None) -> float:
    """Peak of live bytes over time given (alloc, free, size) intervals, frees before allocs
    at the same time; or the live bytes at time `at` when given."""
    delta: dict[int, float] = {}
    for alloc, free, size in sizes:
        delta[alloc] = delta.get(alloc, 0.0) + size
        if free is not None:
            delta[free] = delta.get(free, 0.0) - size
    if at is not None:
        return sum(d for t, d in delta.items() if t <= at)
    live = peak = 0.0
    # a free recorded at time t happened before the allocations of time t
    frees: dict[int, float] = {}
    allocs: dict[int, float] = {}
    for alloc, free, size in sizes:
        allocs[alloc] = allocs.get(alloc, 0.0) + size
        if free is not None:
            frees[free] = frees.get(free, 0.0) + size
    for t in sorted(set(allocs) | set(frees)):
        live -= frees.get(t, 0.0)
        live += allocs.get(t, 0.0)
        peak = max(peak, live)
    return peak


def estimate_training_memory(model: nn.Module, input_shape: tuple, batch_size: int, optimizer: str = "adamw",
                             amp: str = "off", grad_checkpointing: bool = False, device: str = "cpu",
                             small_batches: tuple[int, int] | None = None) -> MemoryEstimate:
    """Estimate the memory one training step of `model` needs at `batch_size`.

    Runs forward + backward twice at `small_batches` (real tensors on `device`; batches 2
    and 4: at batch 1 some layers cannot train (BatchNorm over a pooled vector) and some
    ops return views where larger batches copy) and scales each storage linearly in the
    batch; falls back to one run at `batch_size` when the two runs' operator sequences
    differ (data-dependent control flow).
    """
    weights, grads, state, elem = _static_bytes(model, optimizer, batch_size, amp, device)
    params = list(model.parameters())
    input_bytes = int(batch_size * _prod(input_shape) * elem)

    with preserved_state(model):
        _training_mode(model, grad_checkpointing)
        batches = small_batches or (2, 4)
        runs = []
        for b in batches:
            torch.manual_seed(0)
            example = torch.randn(b, *input_shape, device=device, dtype=elem_dtype(params))
            runs.append(run_forward_backward(model, example, amp, device))
        fitted = _fit(runs, batches, batch_size)
        if fitted is None:  # the two runs did different work: measure the batch itself
            torch.manual_seed(0)
            example = torch.randn(batch_size, *input_shape, device=device, dtype=elem_dtype(params))
            run = run_forward_backward(model, example, amp, device)
            fitted = _fit([run, run], (batch_size, batch_size + 1), batch_size)
    peak, per_example, saved = fitted
    return MemoryEstimate(weights=weights, grads=grads, optimizer=state,
                          activations=int(round(peak)) + input_bytes,
                          activations_per_example=int(round(per_example)) + input_bytes // batch_size,
                          activations_saved=int(round(saved)) + input_bytes, input_batch=input_bytes,
                          batch_size=batch_size, amp=amp, grad_checkpointing=grad_checkpointing)


def training_memory_bound(model: nn.Module, input_shape: tuple, batch_size: int, optimizer: str = "adamw",
                          amp: str = "off", grad_checkpointing: bool = False, device: str = "cpu",
                          probe_batch: int = 2) -> MemoryEstimate:
    """An upper bound on `estimate_training_memory` from one tracked pass at `probe_batch`
    instead of two: every storage of a step is a + b·B bytes with a, b >= 0, which for
    B >= p is at most (a + b·p)·B/p, so the peak at the batch is at most the peak at p times
    B/p. Tight where activations grow with the batch (they almost always do); used to let
    small requests through at half the cost of the estimate."""
    weights, grads, state, elem = _static_bytes(model, optimizer, batch_size, amp, device)
    params = list(model.parameters())
    input_bytes = int(batch_size * _prod(input_shape) * elem)
    scale = max(1.0, batch_size / probe_batch)
    with preserved_state(model):
        _training_mode(model, grad_checkpointing)
        torch.manual_seed(0)
        example = torch.randn(probe_batch, *input_shape, device=device, dtype=elem_dtype(params))
        run = run_forward_backward(model, example, amp, device)
    sizes = [(a.alloc, a.free, float(a.nbytes)) for a in run.allocs if not a.is_grad]
    peak = _curve_peak(sizes, run.clock) * scale
    saved = _curve_peak(sizes, run.clock, at=run.marks.get("forward_end", run.clock)) * scale
    return MemoryEstimate(weights=weights, grads=grads, optimizer=state, activations=int(round(peak)) + input_bytes,
                          activations_per_example=int(round(peak / batch_size)) + input_bytes // batch_size,
                          activations_saved=int(round(saved)) + input_bytes, input_batch=input_bytes,
                          batch_size=batch_size, amp=amp, grad_checkpointing=grad_checkpointing)


def _static_bytes(model: nn.Module, optimizer: str, batch_size: int, amp: str, device: str) -> tuple[int, int, int, int]:
    """Weights, gradients and optimizer state in bytes, and the element size, after the
    settings are checked."""
    from core.train.optimizers import OPTIMIZERS
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer={optimizer!r} is not valid: allowed {', '.join(OPTIMIZERS)}")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be at least 1")
    autocast_context(amp, device)  # validates amp
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    grads = unique_bytes(trainable)
    spec = OPTIMIZERS[optimizer]
    state = spec.state_copies * grads + spec.state_scalars * 4 * len(trainable)  # fp32 `step` scalars
    elem = torch.empty((), dtype=next((p.dtype for p in params), torch.float32)).element_size()
    return unique_bytes(params + list(model.buffers())), grads, state, elem


def _training_mode(model: nn.Module, grad_checkpointing: bool) -> None:
    model.train()
    if grad_checkpointing:
        if not hasattr(model, "set_grad_checkpointing"):
            raise ConfigError(f"{type(model).__name__} does not support gradient checkpointing "
                              "(it has no set_grad_checkpointing); profile without it")
        model.set_grad_checkpointing(True)


def elem_dtype(params: list[torch.Tensor]) -> torch.dtype:
    return next((p.dtype for p in params if p.is_floating_point()), torch.float32)


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _fit(runs: list[StorageTimeline], batches: tuple[int, int], target: int):
    """(peak at target, bytes per example at that peak, live at forward end) or None."""
    r1, r2 = runs
    if len(r1.allocs) != len(r2.allocs) or any(a.alloc != b.alloc or a.is_grad != b.is_grad
                                                for a, b in zip(r1.allocs, r2.allocs)):
        return None
    b1, b2 = batches
    intervals, slopes = [], []
    for a, b in zip(r1.allocs, r2.allocs):
        if a.is_grad:
            continue
        slope = (b.nbytes - a.nbytes) / (b2 - b1) if r1 is not r2 else 0.0
        size = max(0.0, a.nbytes + slope * (target - b1))
        intervals.append((a.alloc, a.free, size))
        slopes.append((a.alloc, a.free, slope))
    peak = _curve_peak(intervals, r1.clock)
    # per example: growth of the peak from target to target + 1
    bumped = [(al, fr, s + sl) for (al, fr, s), (_, _, sl) in zip(intervals, slopes)]
    per_example = _curve_peak(bumped, r1.clock) - peak if r1 is not r2 else peak / max(target, 1)
    saved = _curve_peak(intervals, r1.clock, at=r1.marks.get("forward_end", r1.clock))
    return peak, per_example, saved
