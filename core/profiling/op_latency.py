"""Latency from per-operator-class rates, measured once per machine (issue 20's "estimates that hold").

    est = estimate_forward_ms(model, (6, 128), batch_size=32)   # OpEstimate(total_ms=..., by_class={...})

The forward is traced at the dispatcher under a FakeTensorMode that stands for the CPU, so the
operators recorded are those a real CPU forward runs (the MHA fast path, the mkldnn LSTM, CPU
flash attention), with their shapes, and nothing is computed: any batch costs the same.
Each operator is priced by its class, as a + b x multiply-adds with a (seconds per call) and b
(seconds per multiply-add) interpolated from a grid of benchmarks of that class:

- conv (dense and grouped, 1-D): grid over C_in per group, kernel size, C_out per group;
- conv2d: C_in, kernel height, kernel width, C_out;
- depthwise conv: channels, kernel size, output length (oneDNN's depthwise kernels slow down
  on short padded sequences: 5.5 ms for 96 channels, kernel 15, length 32, batch 32, against
  0.35 ms unpadded);
- matmul (mm, addmm, bmm, baddbmm; a linear layer): K, N;
- attention (CPU scaled-dot-product kernels; nn.MultiheadAttention's fast path as its two
  projections and the attention): sequence length, head size;
- recurrent (the mkldnn LSTM layer): hidden size, batch;
- element-wise, norms, pooling, reductions, copies: the time of that very operator at four
  sizes, interpolated by bytes touched (an unknown operator is priced as a copy);
- views and other metadata operators: a fixed cost each; every nn.Module call: a fixed cost;
  float64 convs and matmuls: the fp32 price x the measured fp64 slowdown.

A grid point is timed at two batch sizes in alternation, three rounds, the median of each
(the statistic `measure_latency_ms` reports for a whole forward); the two give a and b.
Between grid points both are interpolated in log space, multilinearly; beyond the grid's ends
they are held, so a larger op keeps the rate of the largest point. A point is measured the
first time an estimate needs it (Rates.point), and the table is cached per machine, torch
version and thread count in `<cache>/op_rates.json` beside the peak FLOP/s
(core.profiling.peak). `bench/latency_classes.py` checks the estimate against measured latency.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

CACHE_FILE = "op_rates.json"
VERSION = 1  # bump when the table's layout or grid changes
MAC_BUDGET = 16_000_000  # multiply-adds per timed call of a grid point (about 0.6 ms at 50 GFLOP/s)
LENGTH = 128  # a conv grid point's output length (its batch makes up the rows)
PLANE = (16, 32)  # a 2-D conv grid point's output height and width

CHANNELS = (1, 8, 32, 128, 512)
CONV_GRID = {"cin": CHANNELS, "k": (1, 3, 9, 27, 81), "cout": CHANNELS[1:]}
CONV2D_GRID = {"cin": CHANNELS, "kh": (1, 3, 9), "kw": (1, 3, 9, 27), "cout": CHANNELS[1:]}
DEPTHWISE_GRID = {"c": (16, 64, 256), "k": (3, 7, 15, 31), "length": (32, 128, 512)}
MATMUL_GRID = {"k": (8, 64, 512, 4096), "n": (8, 64, 512, 4096)}
ATTENTION_GRID = {"s": (16, 64, 256), "d": (8, 32, 128)}
RECURRENT_GRID = {"h": (16, 64, 256), "batch": (1, 8, 64)}
ELEMENT_SIZES = (1 << 12, 1 << 16, 1 << 19, 1 << 22)  # fp32 elements of the input

VIEWS = frozenset({"view", "_unsafe_view", "reshape", "t", "transpose", "permute", "unsqueeze", "squeeze",
                   "expand", "slice", "select", "as_strided", "split", "split_with_sizes", "unbind", "detach",
                   "alias", "empty", "empty_like", "empty_strided", "chunk", "narrow", "lift_fresh", "unflatten",
                   "flatten", "_reshape_alias", "view_as", "contiguous", "lift_fresh_copy", "device", "dim",
                   "sym_size", "sym_stride", "sym_numel", "is_contiguous", "stride", "size", "numel",
                   "_has_compatible_shallow_copy_type", "set_", "zeros", "ones", "scalar_tensor", "arange",
                   "_local_scalar_dense", "item", "resize_", "new_empty", "new_zeros"})
MATMULS = frozenset({"mm", "addmm", "bmm", "baddbmm", "matmul", "linear"})
ATTENTION = frozenset({"_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math",
                       "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                       "scaled_dot_product_attention"})
RECURRENT = frozenset({"mkldnn_rnn_layer"})


# ------------------------------------------------------------------------------ the operators a forward runs

@dataclass
class OpCall:
    """One operator of a forward: its name, class, grid coordinates, bytes touched and FLOPs."""

    name: str
    kind: str  # conv, depthwise, matmul, attention, recurrent, elementwise, view, composite
    coords: tuple = ()  # composite: its parts (OpCalls)
    nbytes: int = 0
    flops: int = 0
    double: bool = False  # float64 arithmetic (priced at the measured fp64/fp32 slowdown)


def _tensors(tree) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _bytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def classify(name: str, args: tuple, out) -> OpCall:
    """The OpCall of one dispatched operator (its arguments and output as the dispatcher saw them)."""
    ins, outs = _tensors(args), _tensors(out)
    nbytes = _bytes(ins) + _bytes(outs)
    if name in VIEWS or not outs and not ins:
        return OpCall(name, "view")
    if name in ("convolution", "_convolution") and len(ins) >= 2 and len(args) > 8:
        x, w, y = ins[0], ins[1], outs[0]
        groups = int(args[8])
        cin_g, cout, kernel = int(w.shape[1]), int(w.shape[0]), int(math.prod(w.shape[2:]))
        rows = int(y.shape[0]) * int(math.prod(y.shape[2:]))
        flops = 2 * rows * cout * cin_g * kernel
        double = x.dtype == torch.float64
        if groups > 1 and cin_g == 1 and cout == groups:
            return OpCall(name, "depthwise", (cout, kernel, int(math.prod(y.shape[2:]))), nbytes, flops, double)
        if w.dim() == 4:
            return OpCall(name, "conv2d", (cin_g, int(w.shape[2]), int(w.shape[3]), cout // groups), nbytes, flops,
                          double)
        return OpCall(name, "conv", (cin_g, kernel, cout // groups), nbytes, flops, double)
    if name in MATMULS and len(ins) >= 2:
        a, b = (ins[-2], ins[-1])
        k, n = int(a.shape[-1]), int(b.shape[-1])
        rows = int(math.prod(a.shape[:-1]))  # bmm: batch x M
        return OpCall(name, "matmul", (k, n), nbytes, 2 * rows * k * n, a.dtype == torch.float64)
    if name in ATTENTION and len(ins) >= 3:
        q, key = ins[0], ins[1]
        s_q, s_k, d = int(q.shape[-2]), int(key.shape[-2]), int(q.shape[-1])
        heads = int(math.prod(q.shape[:-2]))
        return OpCall(name, "attention", (s_k, d), nbytes, 4 * heads * s_q * s_k * d)
    if name == "_native_multi_head_attention" and len(ins) >= 4:  # nn.MultiheadAttention's fast path
        q, k = ins[0], ins[1]
        embed, heads = int(args[3]), int(args[4])
        rows_q, rows_k = int(math.prod(q.shape[:-1])), int(math.prod(k.shape[:-1]))
        s_q, s_k, d = int(q.shape[-2]), int(k.shape[-2]), embed // heads
        parts = (OpCall("addmm", "matmul", (embed, embed), 0, 2 * rows_q * embed * embed),
                 OpCall("addmm", "matmul", (embed, 2 * embed), 0, 2 * rows_k * embed * 2 * embed),
                 OpCall("attention", "attention", (s_k, d), 0, 4 * (rows_q // s_q) * heads * s_q * s_k * d),
                 OpCall("addmm", "matmul", (embed, embed), 0, 2 * rows_q * embed * embed))
        return OpCall(name, "composite", parts, nbytes, sum(p.flops for p in parts))
    if name in RECURRENT and len(ins) >= 3:
        x, w_ih, w_hh = ins[0], ins[1], ins[2]
        steps = int(x.numel() // x.shape[-1])
        batch = int(x.shape[1]) if x.dim() == 3 else 1  # mkldnn_rnn_layer's input is (T, B, I)
        hidden = int(w_hh.shape[-1])
        return OpCall(name, "recurrent", (hidden, batch), nbytes, 2 * steps * (w_ih.numel() + w_hh.numel()))
    return OpCall(name, "elementwise", (), nbytes)


class _Recorder(TorchDispatchMode):
    """Records every operator dispatched below it, as OpCalls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[OpCall] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.namespace != "prim":  # prim.device and the like: questions a fake tensor answers, not kernels
            self.calls.append(classify(func.overloadpacket.__name__, args, out))
        return out


@dataclass
class Trace:
    calls: list[OpCall]
    module_calls: int


def trace_forward(model: nn.Module, input_shape: tuple, batch_size: int = 32,
                  dtype: torch.dtype | None = None) -> Trace:
    """The operators of one inference forward (eval, no grad) at `batch_size`, on fake CPU
    tensors: the same operators a real CPU forward dispatches, nothing computed."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    dtype = dtype or next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    module_calls = [0]

    def count(*_):
        module_calls[0] += 1

    handles = [m.register_forward_pre_hook(count) for m in model.modules()]
    was_training = model.training
    model.eval()
    recorder = _Recorder()
    try:
        with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True) as fake:
            x = fake.from_tensor(torch.empty(batch_size, *input_shape, dtype=dtype))
            with recorder:
                model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return Trace(recorder.calls, module_calls[0])


# ----------------------------------------------------------------------------------------- the rates

def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `repeats` calls after `warmup` (3 calls when one takes over 20 ms)."""
    for _ in range(warmup):
        start = time.perf_counter()
        fn()
        if time.perf_counter() - start > 0.02:
            repeats = min(repeats, 3)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _line(timed: Callable[[int], float], small: int, large: int, macs_per_unit: int, rounds: int = 3) -> list[float]:
    """[seconds per call, seconds per multiply-add] of an operator timed at two sizes (`small`
    and `large` units of `macs_per_unit` each): its time is a + b x MACs, where a covers what a
    call costs whatever its size (weight reorders, primitive look-up, dispatch). The two sizes
    are timed in alternation, `rounds` times, and each keeps its median: a machine whose speed
    drifts moves both alike."""
    pairs = [(timed(small), timed(large)) for _ in range(rounds)]
    t_small, t_large = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    per_unit = (t_large - t_small) / (large - small)
    if per_unit <= 0:  # noise at equal times: all of it per unit
        return [1e-7, t_large / large / macs_per_unit]
    return [max(1e-7, t_small - per_unit * small), per_unit / macs_per_unit]


def _batches(macs_per_row: int, length: int) -> tuple[int, int]:
    """The two batch sizes a grid point is timed at: up to 16 within four times the MAC budget,
    and a quarter of that."""
    large = max(2, min(16, 4 * MAC_BUDGET // max(1, macs_per_row * length)))
    return max(1, large // 4), large


def _timed_by_batch(fn: Callable[[torch.Tensor], object], make: Callable[[int], torch.Tensor]) -> Callable[[int], float]:
    inputs: dict[int, torch.Tensor] = {}

    def timed(batch: int) -> float:
        x = inputs.setdefault(batch, make(batch))
        return median_seconds(lambda: fn(x))
    return timed


def _measure_conv(cin: int, k: int, cout: int, dtype: torch.dtype = torch.float32) -> list[float]:
    conv = nn.Conv1d(cin, cout, k, padding=k // 2).to(dtype)
    small, large = _batches(cin * k * cout, LENGTH)
    return _line(_timed_by_batch(conv, lambda b: torch.randn(b, cin, LENGTH, dtype=dtype)), small, large,
                 LENGTH * cin * k * cout)


def _measure_conv2d(cin: int, kh: int, kw: int, cout: int) -> list[float]:
    conv = nn.Conv2d(cin, cout, (kh, kw), padding=(kh // 2, kw // 2))
    small, large = _batches(cin * kh * kw * cout, PLANE[0] * PLANE[1])
    return _line(_timed_by_batch(conv, lambda b: torch.randn(b, cin, *PLANE)), small, large,
                 PLANE[0] * PLANE[1] * cin * kh * kw * cout)


def _measure_depthwise(c: int, k: int, length: int) -> list[float]:
    conv = nn.Conv1d(c, c, k, padding=k // 2, groups=c)
    small, large = _batches(c * k, length)
    return _line(_timed_by_batch(conv, lambda b: torch.randn(b, c, length)), small, large, length * c * k)


def _measure_matmul(k: int, n: int) -> list[float]:
    weight, bias = torch.randn(k, n), torch.randn(n)
    small, large = _batches(k * n, 128)
    return _line(_timed_by_batch(lambda x: torch.addmm(bias, x, weight), lambda b: torch.randn(b * 128, k)),
                 small, large, 128 * k * n)


def _measure_attention(s: int, d: int) -> list[float]:
    sdpa = nn.functional.scaled_dot_product_attention
    heads = max(8, min(64, MAC_BUDGET // (2 * s * s * d)))
    return _line(_timed_by_batch(lambda q: sdpa(q, q, q), lambda h: torch.randn(1, h, s, d)), 2, heads,
                 2 * s * s * d)


def _measure_recurrent(h: int, batch: int) -> list[float]:
    lstm = nn.LSTM(h, h, batch_first=True)
    steps = max(16, min(256, MAC_BUDGET // (8 * h * h * batch)))
    return _line(_timed_by_batch(lstm, lambda t: torch.randn(batch, t, h)), 4, steps, batch * 8 * h * h)


def _element_cases() -> dict[str, Callable[[torch.Tensor], object]]:
    """aten operator name -> a call on a (8, 64, L) fp32 input that dispatches it."""
    f = nn.functional
    bn, ln, gn = nn.BatchNorm1d(64).eval(), nn.LayerNorm(64), nn.GroupNorm(8, 64)
    return {"relu": torch.relu, "gelu": f.gelu, "silu": f.silu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "hardtanh": lambda x: f.hardtanh(x, 0.0, 6.0), "add": lambda x: x + x, "mul": lambda x: x * x,
            "div": lambda x: x / 3.0, "sub": lambda x: x - x, "gt": lambda x: x > 0, "clone": torch.clone,
            "_to_copy": lambda x: x.double(), "constant_pad_nd": lambda x: f.pad(x, (4, 4)),
            "cat": lambda x: torch.cat([x, x], 1), "mean": lambda x: x.mean(-1), "sum": lambda x: x.sum(-1),
            "amax": lambda x: x.amax(-1), "_softmax": lambda x: torch.softmax(x, -1), "native_batch_norm": bn,
            "native_layer_norm": lambda x: ln(x.view(-1, 64)), "native_group_norm": gn,
            "max_pool2d_with_indices": lambda x: f.max_pool1d(x, 3, 2, 1),
            "avg_pool2d": lambda x: f.avg_pool1d(x, 3, 2, 1), "copy_": lambda x: x.transpose(1, 2).contiguous()}


ELEMENT_OPS = tuple(_element_cases())


def _measure_elementwise(name: str) -> list[list[float]]:
    """[[bytes touched, seconds], ...] of operator `name` at ELEMENT_SIZES input elements."""
    fn = _element_cases()[name]
    points = []
    for size in ELEMENT_SIZES:
        x = torch.randn(8, 64, max(1, size // 512))
        recorder = _Recorder()
        with recorder:
            fn(x)
        nbytes = max((c.nbytes for c in recorder.calls if c.name == name), default=0) or 2 * _bytes([x])
        points.append([nbytes, median_seconds(lambda: fn(x))])
    return points


def _measure_fixed(name: str) -> float:
    one = torch.randn(1)
    if name == "module":
        idn = nn.Identity()
        return median_seconds(lambda: idn(one), repeats=51)
    if name == "view":
        return median_seconds(lambda: one.view(1), repeats=51)
    if name == "double":  # fp64 / fp32 time of a conv per multiply-add
        return max(1.0, _measure_conv(64, 3, 64, torch.float64)[1] / _measure_conv(64, 3, 64)[1])
    raise KeyError(name)


GRIDS = {"conv": CONV_GRID, "conv2d": CONV2D_GRID, "depthwise": DEPTHWISE_GRID, "matmul": MATMUL_GRID,
         "attention": ATTENTION_GRID, "recurrent": RECURRENT_GRID}
MEASURE = {"conv": _measure_conv, "conv2d": _measure_conv2d, "depthwise": _measure_depthwise,
           "matmul": _measure_matmul, "attention": _measure_attention, "recurrent": _measure_recurrent}


@dataclass
class Rates:
    """This machine's table: grid point -> [seconds per call, seconds per multiply-add] for each
    class in GRIDS; operator name -> [[bytes, seconds], ...] for element-wise operators; fixed
    costs (seconds per view, per module call; fp64's slowdown). Points are measured the first
    time an estimate needs them (`point`), so the table fills in as models are priced."""

    tables: dict = field(default_factory=lambda: {kind: {} for kind in GRIDS})
    elementwise: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)
    threads: int = 1
    seconds: float = 0.0  # wall seconds spent measuring it so far
    key: str = ""
    version: int = VERSION
    added: int = 0  # points measured since it was loaded (not stored)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("tables", "elementwise", "fixed", "threads", "seconds", "key", "version")}

    @classmethod
    def from_dict(cls, data: dict) -> "Rates":
        rates = cls(**{k: data[k] for k in ("tables", "elementwise", "fixed", "threads", "seconds", "key", "version")
                       if k in data})
        for kind in GRIDS:
            rates.tables.setdefault(kind, {})
        return rates

    def _measured(self, fn: Callable, *args):
        from core.threads import compute_threads

        start = time.perf_counter()
        with torch.no_grad(), compute_threads(self.threads, "latency calibration"):
            value = fn(*args)
        self.seconds += time.perf_counter() - start
        self.added += 1
        return value

    def point(self, kind: str, coords: tuple) -> list[float]:
        key = _key(*coords)
        table = self.tables[kind]
        if key not in table:
            table[key] = self._measured(MEASURE[kind], *coords)
        return table[key]

    def element(self, name: str) -> list[list[float]]:
        name = name if name in ELEMENT_OPS else "clone"
        if name not in self.elementwise:
            self.elementwise[name] = self._measured(_measure_elementwise, name)
        return self.elementwise[name]

    def constant(self, name: str) -> float:
        if name not in self.fixed:
            self.fixed[name] = self._measured(_measure_fixed, name)
        return self.fixed[name]


def _key(*coords) -> str:
    return ",".join(str(int(c)) for c in coords)


_MEMO: dict[tuple[str, str], Rates] = {}  # (cache file, key) -> the table


def _cache_key(threads: int) -> str:
    from core.profiling.peak import cache_key

    return f"{cache_key('cpu', threads)}|v{VERSION}"


def machine_rates(threads: int | None = None, *, cache_dir: str | Path | None = None) -> Rates:
    """This machine's table for `threads` torch threads (None: the current count), as far as it
    has been measured (cached on disk; `save_rates` stores what an estimate added)."""
    from core.profiling.peak import cache_path, read_cache

    threads = max(1, int(threads or torch.get_num_threads()))
    key = _cache_key(threads)
    path = cache_path(cache_dir, CACHE_FILE)
    if (str(path), key) in _MEMO:
        return _MEMO[(str(path), key)]
    entry = read_cache(path).get(key)
    rates = None
    if isinstance(entry, dict) and entry.get("version") == VERSION:
        try:
            rates = Rates.from_dict(entry)
        except TypeError:  # a damaged entry: measured again
            rates = None
    rates = rates or Rates(threads=threads, key=key)
    _MEMO[(str(path), key)] = rates
    return rates


def save_rates(rates: Rates, cache_dir: str | Path | None = None) -> None:
    """Store the table when points were added; a folder that cannot be written keeps the
    in-process table only."""
    from core.profiling.peak import cache_path, write_cache_entry

    if rates.added and write_cache_entry(cache_path(cache_dir, CACHE_FILE), rates.key, rates.to_dict()):
        rates.added = 0


# ---------------------------------------------------------------------------------- the estimate

def _weighted_corners(grid: tuple[tuple, ...], point: tuple) -> list[tuple[tuple, float]]:
    """The grid points around `point` and their multilinear weights in log coordinates (a point
    beyond the grid's ends is held at the end)."""
    axes = []
    for values, x in zip(grid, point):
        logs = [math.log(v) for v in values]
        lx = min(max(math.log(max(x, 1e-9)), logs[0]), logs[-1])
        i = min(len(values) - 2, max(0, sum(1 for value in logs[1:] if lx > value)))
        frac = (lx - logs[i]) / (logs[i + 1] - logs[i])
        axes.append([(values[i], 1.0 - frac), (values[i + 1], frac)])
    corners = [((), 1.0)]
    for axis in axes:
        corners = [(c + (v,), w * wv) for c, w in corners for v, wv in axis if wv > 0]
    return corners


def _grid_seconds(kind: str, call: OpCall, rates: Rates) -> float:
    """a + b x MACs, a and b interpolated in log space between the grid points around the call."""
    per_call = per_mac = 0.0
    for corner, weight in _weighted_corners(tuple(GRIDS[kind].values()), call.coords):
        a, b = rates.point(kind, corner)
        per_call += weight * math.log(a)
        per_mac += weight * math.log(b)
    return math.exp(per_call) + math.exp(per_mac) * call.flops / 2


def _element_seconds(points: list, nbytes: int) -> float:
    """Seconds for `nbytes` by log-log interpolation between the measured sizes (linear in
    bytes beyond the largest, the smallest's time below it)."""
    if nbytes <= points[0][0]:
        return points[0][1]
    for (b0, t0), (b1, t1) in zip(points, points[1:]):
        if nbytes <= b1:
            frac = math.log(nbytes / b0) / math.log(b1 / b0)
            return math.exp(math.log(t0) + frac * math.log(t1 / t0))
    b, t = points[-1]
    return t * nbytes / b


def op_seconds(call: OpCall, rates: Rates) -> float:
    """The predicted time of one operator (measuring the grid points it needs the first time)."""
    if call.kind == "view":
        return rates.constant("view")
    if call.kind == "composite":
        return sum(op_seconds(part, rates) for part in call.coords)
    if call.kind in GRIDS:
        return _grid_seconds(call.kind, call, rates) * (rates.constant("double") if call.double else 1.0)
    return _element_seconds(rates.element(call.name), call.nbytes)


@dataclass
class OpEstimate:
    total_ms: float
    by_class: dict[str, float]  # class -> ms (module calls under "module")
    operators: int
    calibration_s: float = 0.0  # seconds this estimate spent measuring grid points it lacked

    def to_dict(self) -> dict:
        return {"total_ms": self.total_ms, "by_class": self.by_class, "operators": self.operators,
                "calibration_s": self.calibration_s}


def estimate_trace_ms(trace: Trace, rates: Rates) -> OpEstimate:
    before = rates.seconds
    by_class: dict[str, float] = {}
    for call in trace.calls:
        by_class[call.kind] = by_class.get(call.kind, 0.0) + op_seconds(call, rates) * 1e3
    by_class["module"] = trace.module_calls * rates.constant("module") * 1e3
    return OpEstimate(sum(by_class.values()), by_class, len(trace.calls), rates.seconds - before)


def estimate_forward_ms(model: nn.Module, input_shape: tuple, batch_size: int = 32, threads: int | None = None,
                        rates: Rates | None = None, cache_dir: str | Path | None = None) -> OpEstimate:
    """Predicted median wall time (ms) of one inference forward at `batch_size` on this CPU with
    `threads` torch threads (None: the current count). Grid points the table lacks are measured
    now and stored."""
    rates = rates or machine_rates(threads, cache_dir=cache_dir)
    estimate = estimate_trace_ms(trace_forward(model, input_shape, batch_size), rates)
    save_rates(rates, cache_dir)
    return estimate
