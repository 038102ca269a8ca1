"""FLOP counting: `torch.utils.flop_counter.FlopCounterMode` as the primary counter (it
works at the dispatcher, so it will outlive TorchScript), fvcore as a cross-check.

Convention: FLOPs = 2 x MACs (one multiply-add = 2 FLOPs). What is counted:
- matmul-like ops (mm, addmm, bmm, baddbmm, convolution): 2 per multiply-add; a bias
  add is not counted (as both counters do);
- attention (`scaled_dot_product_attention`, every backend): QK^T and AV, that is
  2 * (2 * B * H * S_q * S_k * D);
- the backward of convolutions as torch counts it (input gradient + weight gradient, each as
  many multiply-adds as the forward), with a grouped conv's weight gradient divided by its
  groups (torch counts it dense);
- recurrent layers (LSTM via mkldnn/cuDNN kernels): 2 * B * T * (|W_ih| + |W_hh|) per
  layer and direction, the gate matmuls (GRU/RNN on CPU decompose into mm/addmm and are
  counted as such); their backward twice that;
- norms, as fvcore counts them: layer/group/instance norm and batch norm in training
  5 multiply-adds per element with an affine transform (4 without), batch norm in
  inference 2 (1 without); doubled here to FLOPs. Their backward (no counter has one) is
  counted as twice the training forward, the convention a matmul's backward follows.
Element-wise ops (activations, additions, pooling, softmax, dropout) are not counted by
either counter; they are listed in `skipped` with their call counts and output sizes so
nothing vanishes silently.

Both counters miss these out of the box on torch 2.13 (measured): FlopCounterMode gives 0
for LSTM (`aten.mkldnn_rnn_layer`) and CPU SDPA (`_scaled_dot_product_flash_attention_for_cpu`)
and decomposes norms into uncounted element-wise ops; fvcore gives 0 for `aten::lstm`,
`aten::gru` and `aten::scaled_dot_product_attention`. The formulas below close both gaps.
MultiheadAttention under eval() + no_grad() takes a fused fast path neither counter sees,
so counting runs with gradients on and the MHA fast path disabled.

`count_training_flops` counts one training step (forward + backward, as they run) per example:
the numerator of a run's model-FLOPs utilisation (core.train.utilization).
"""
from __future__ import annotations

import math
import warnings
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import (FlopCounterMode, conv_backward_flop, sdpa_backward_flop_count,
                                      sdpa_flop_count)

aten = torch.ops.aten

FLOPS_CONVENTION = "FLOPs = 2 x MACs (one multiply-add = 2 FLOPs)"


# ---------------------------------------------------------------- FlopCounterMode formulas
# FlopCounterMode hands these the shapes (torch.Size) of tensor arguments, other args as-is.

def _numel(shape) -> int:
    return int(math.prod(shape)) if shape is not None else 0


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _rnn_flop(input_shape, weights, hidden_total: int = 0) -> int:
    """2 * steps * sum of gate-matrix sizes; `weights` are the 2-D weight shapes."""
    steps = _numel(input_shape) // int(input_shape[-1])  # T * B (packed or not)
    return 2 * steps * sum(_numel(w) for w in weights if w is not None and len(w) == 2)


def _mkldnn_rnn_layer_flop(input_shape, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    # one layer, one direction per call
    return _rnn_flop(input_shape, [w_ih, w_hh])


def _cudnn_rnn_flop(input_shape, weights, *args, out_shape=None, **kwargs) -> int:
    # all layers and directions in one call; weights hold [w_ih, w_hh, (b_ih, b_hh)] each.
    # Layers above the first read the previous layer's output, whose width is already in
    # their w_ih, so the step count alone is shared.
    return _rnn_flop(input_shape, list(weights))


def _mkldnn_rnn_layer_backward_flop(input_shape, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    # gradients through the gates to the input/state and to the weights: twice the forward
    return 2 * _rnn_flop(input_shape, [w_ih, w_hh])


def _cudnn_rnn_backward_flop(input_shape, weights, *args, out_shape=None, **kwargs) -> int:
    return 2 * _rnn_flop(input_shape, list(weights))


def _layer_norm_flop(input_shape, normalized_shape, weight_shape=None, *args, out_shape=None, **kwargs) -> int:
    return 2 * _numel(input_shape) * (5 if weight_shape is not None else 4)


def _group_norm_flop(input_shape, weight_shape=None, *args, out_shape=None, **kwargs) -> int:
    return 2 * _numel(input_shape) * (5 if weight_shape is not None else 4)


def _batch_norm_flop(input_shape, weight_shape=None, *args, out_shape=None, **kwargs) -> int:
    # native_batch_norm / _native_batch_norm_legit(.no_stats): the first bool after the
    # affine tensors says whether it normalises with batch statistics (training).
    training = next((a for a in args if isinstance(a, bool)), False)
    affine = weight_shape is not None
    per_element = (5 if affine else 4) if training else (2 if affine else 1)
    return 2 * _numel(input_shape) * per_element


def _batch_norm_inference_flop(input_shape, weight_shape=None, *args, out_shape=None, **kwargs) -> int:
    return 2 * _numel(input_shape) * (2 if weight_shape is not None else 1)


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                        output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    # torch's formula counts a grouped conv's weight gradient as if the conv were dense (x groups,
    # x channels for a depthwise conv, measured on torch 2.13); its input gradient is right.
    # (torch's exported formula is shape-wrapped: shapes pass through, out_val is the output.)
    args = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed, output_padding, groups)
    grad_input = conv_backward_flop(*args, [output_mask[0], False, False], out_val=out_shape) if output_mask[0] else 0
    grad_weight = conv_backward_flop(*args, [False, output_mask[1], False], out_val=out_shape) if output_mask[1] else 0
    return int(grad_input + grad_weight // max(1, int(groups)))


# A norm's backward, by the same convention as a matmul's: twice its forward (the gradient of
# the input and of the affine parameters), training-mode per-element count.
def _norm_backward_per_element(affine: bool) -> int:
    return 2 * (5 if affine else 4)


def _batch_norm_backward_flop(grad_out_shape, input_shape, weight_shape=None, *args, out_shape=None, **kwargs) -> int:
    return 2 * _numel(input_shape) * _norm_backward_per_element(weight_shape is not None)


def _layer_norm_backward_flop(grad_out_shape, input_shape, normalized_shape, mean_shape, rstd_shape,
                              weight_shape=None, *args, out_shape=None, **kwargs) -> int:
    return 2 * _numel(input_shape) * _norm_backward_per_element(weight_shape is not None)


def _group_norm_backward_flop(grad_out_shape, input_shape, mean_shape, rstd_shape, weight_shape=None, *args,
                              out_shape=None, **kwargs) -> int:
    return 2 * _numel(input_shape) * _norm_backward_per_element(weight_shape is not None)


def _vendor_batch_norm_backward_flop(input_shape, grad_out_shape, weight_shape=None, *args, out_shape=None,
                                     **kwargs) -> int:
    return 2 * _numel(input_shape) * _norm_backward_per_element(weight_shape is not None)


def _custom_mapping() -> dict:
    mapping: dict[Any, Any] = {
        aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flop,
        aten.mkldnn_rnn_layer: _mkldnn_rnn_layer_flop,
        aten._cudnn_rnn: _cudnn_rnn_flop,
        aten.mkldnn_rnn_layer_backward: _mkldnn_rnn_layer_backward_flop,
        aten._cudnn_rnn_backward: _cudnn_rnn_backward_flop,
        aten.native_layer_norm: _layer_norm_flop,
        aten.native_group_norm: _group_norm_flop,
        aten.native_batch_norm: _batch_norm_flop,
        aten._native_batch_norm_legit: _batch_norm_flop,
        aten._native_batch_norm_legit_no_training: _batch_norm_inference_flop,
        aten.convolution_backward: _conv_backward_flop,
        aten.native_batch_norm_backward: _batch_norm_backward_flop,
        aten.native_layer_norm_backward: _layer_norm_backward_flop,
        aten.native_group_norm_backward: _group_norm_backward_flop,
    }
    for name in ("cudnn_batch_norm", "miopen_batch_norm"):
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = _batch_norm_flop
        if hasattr(aten, name + "_backward"):
            mapping[getattr(aten, name + "_backward")] = _vendor_batch_norm_backward_flop
    return mapping


# Ops that move or reinterpret data without arithmetic: not worth listing as skipped.
_FREE_OPS = {
    "view", "_unsafe_view", "reshape", "_reshape_alias", "t", "transpose", "permute", "expand",
    "unsqueeze", "squeeze", "select", "slice", "split", "split_with_sizes", "unsafe_split",
    "chunk", "unbind", "narrow", "as_strided", "alias", "detach", "clone", "contiguous",
    "copy_", "_to_copy", "to", "empty", "empty_like", "empty_strided", "zeros", "zeros_like",
    "ones", "ones_like", "full", "full_like", "new_empty", "new_zeros", "new_ones", "new_full",
    "fill_", "zero_", "cat", "stack", "flatten", "unflatten", "lift_fresh", "arange", "index_select",
    "_local_scalar_dense", "scalar_tensor", "repeat", "expand_as", "view_as", "resize_", "set_",
    "lift_fresh_copy", "_unsafe_index", "index", "gather", "pad", "constant_pad_nd", "bernoulli_",
    "uniform_", "normal_", "randn", "rand", "randint", "empty_permuted", "_has_compatible_shallow_copy_type",
}


class _CountingMode(FlopCounterMode):
    """FlopCounterMode that also records every op it executed without a formula."""

    def __init__(self, custom_mapping: dict) -> None:
        super().__init__(display=False, custom_mapping=custom_mapping)
        self.skipped: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # op -> [calls, output elements]

    def _count_flops(self, func_packet, out, args, kwargs):
        if func_packet not in self.flop_registry:
            name = func_packet.__name__ if hasattr(func_packet, "__name__") else str(func_packet)
            if name not in _FREE_OPS:
                entry = self.skipped[f"aten.{name}"]
                entry[0] += 1
                entry[1] += sum(t.numel() for t in _tensors(out))
        return super()._count_flops(func_packet, out, args, kwargs)


def _tensors(obj) -> list[torch.Tensor]:
    flat, _ = torch.utils._pytree.tree_flatten(obj)
    return [t for t in flat if isinstance(t, torch.Tensor)]


@contextmanager
def counting_conditions() -> Iterator[None]:
    """Gradients on, the fused MHA fast path off: what both counters need to see attention."""
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.enable_grad():
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


@dataclass
class FlopCount:
    """Forward FLOPs of one pass, per module (inclusive of children) and per operator."""

    total: int
    by_module: dict[str, int]  # module path relative to the root ("" = root) -> FLOPs
    by_operator: dict[str, int]  # "aten.mm" -> FLOPs
    skipped: dict[str, tuple[int, int]] = field(default_factory=dict)  # op -> (calls, output elements)


def count_flops(model: nn.Module, example: torch.Tensor) -> FlopCount:
    """Count one forward pass of `model(example)` with FlopCounterMode (+ the formulas above).

    Run it in the mode you want counted (eval for inference FLOPs). Module keys from
    FlopCounterMode ("ClassName.block.0") are turned into paths relative to the root.
    """
    mode = _CountingMode(_custom_mapping())
    with counting_conditions(), mode:
        model(example)
    root = type(model).__name__
    by_module: dict[str, int] = {}
    by_operator: dict[str, int] = defaultdict(int)
    for key, ops in mode.get_flop_counts().items():
        if key == "Global":
            for op, n in ops.items():
                by_operator[_op_name(op)] += int(n)
            continue
        path = key[len(root) + 1:] if key.startswith(root + ".") else ("" if key == root else key)
        by_module[path] = int(sum(ops.values()))
    total = int(mode.get_total_flops())
    skipped = {op: (calls, elems) for op, (calls, elems) in sorted(mode.skipped.items())}
    return FlopCount(total=total, by_module=by_module, by_operator=dict(by_operator), skipped=skipped)


@dataclass
class TrainingFlops:
    """FLOPs of one training step per example: forward and backward, as FlopCounterMode (with
    the formulas above) counts them; the optimizer's update is not counted (model FLOPs)."""

    forward: float  # per example
    backward: float  # per example
    batch: int  # examples in the counted batch
    skipped: dict[str, tuple[int, int]] = field(default_factory=dict)  # ops without a formula (whole batch)

    @property
    def total(self) -> float:
        return self.forward + self.backward

    @property
    def backward_ratio(self) -> float:
        """backward / forward (about 2: gradients for inputs and for weights)."""
        return self.backward / self.forward if self.forward else float("nan")


def count_training_flops(model: nn.Module, example: torch.Tensor) -> TrainingFlops:
    """Count forward + backward of one batch `example` (B, ...) in training mode, per example.

    The backward is counted as it runs, not guessed as 2x the forward: a matmul-like layer costs
    2 per multiply-add for the input gradient and 2 for the weight gradient, and the input
    gradient is not computed for a layer whose input needs none (the first layer, on the data),
    so a lone nn.Linear(i, o) counts 2*i*o forward and 2*i*o backward per example. Norms'
    backward and element-wise ops have no formula (see `skipped`). The loss is the output's sum
    (a loss adds only element-wise work).

    The model is left as it was: train/eval mode, buffers (BatchNorm running statistics),
    parameter gradients and the random number generators (dropout) are restored, so counting
    at the start of a run does not change its training.
    """
    batch = int(example.shape[0])
    was_training = model.training
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    params = [p for p in model.parameters()]
    grads = [p.grad for p in params]
    devices = [example.device] if example.device.type == "cuda" else []
    mode = _CountingMode(_custom_mapping())
    try:
        with torch.random.fork_rng(devices=devices), counting_conditions(), mode:
            for p in params:
                p.grad = None
            model.train()
            output = model(example)
            forward = int(mode.get_total_flops())
            output = output[0] if isinstance(output, (tuple, list)) else output
            output.float().sum().backward()
            total = int(mode.get_total_flops())
    finally:
        model.train(was_training)
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
        for p, g in zip(params, grads):
            p.grad = g
    skipped = {op: (calls, elems) for op, (calls, elems) in sorted(mode.skipped.items())}
    return TrainingFlops(forward=forward / batch, backward=(total - forward) / batch, batch=batch, skipped=skipped)


def training_flops_per_example(model: nn.Module, input_shape: tuple[int, ...], batch: int = 2,
                               device: str | torch.device | None = None) -> float:
    """Forward + backward FLOPs per example of `model` at `input_shape` (no batch dimension),
    counted on a random batch (the values do not change the count; a batch of 2 because
    BatchNorm in training needs more than one value per channel). Drawn from a private
    generator, so the global RNG is untouched; the model is left as it was."""
    generator = torch.Generator().manual_seed(0)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = torch.randn(batch, *tuple(input_shape), generator=generator).to(device)
    return count_training_flops(model, example).total


def _op_name(op) -> str:
    name = getattr(op, "__name__", str(op))
    return name if name.startswith("aten.") else f"aten.{name}"


# --------------------------------------------------------------------------- fvcore
# fvcore handles receive TorchScript values; shapes come from their types.

def _jit_shape(value) -> list[int] | None:
    try:
        return value.type().sizes()
    except Exception:  # not a tensor (None, list, scalar)
        return None


def _jit_list_shapes(value) -> list[list[int]]:
    node = value.node()
    if node.kind() != "prim::ListConstruct":
        return []
    return [s for s in (_jit_shape(v) for v in node.inputs()) if s is not None]


def _fvcore_rnn(inputs, outputs) -> int:
    # aten::lstm/gru/rnn_*(input, hx, params[], has_biases, num_layers, dropout, train, bidirectional, batch_first)
    x = _jit_shape(inputs[0])
    weights = [w for w in _jit_list_shapes(inputs[2]) if len(w) == 2]
    steps = _numel(x) // int(x[-1])
    return steps * sum(_numel(w) for w in weights)  # fvcore unit: 1 per multiply-add


def _fvcore_sdpa(inputs, outputs) -> int:
    q, k, v = (_jit_shape(inputs[i]) for i in range(3))
    batch_heads = _numel(q[:-2])
    return batch_heads * q[-2] * k[-2] * (q[-1] + v[-1])


def _fvcore_conv_mode(inputs, outputs) -> int:
    # aten::_convolution_mode(input, weight, bias, stride, padding: str, dilation, groups),
    # what Conv1d/2d with padding="same"/"valid" traces to; fvcore 0.1.5 has no handle.
    w = _jit_shape(inputs[1])
    out = _jit_shape(outputs[0])
    return _numel(out) * _numel(w[1:])


# FLOP categories shared by both counters so their totals can be compared piece by piece.
def _category(op: str) -> str:
    op = op.replace("aten::", "").replace("aten.", "")
    if "attention" in op:
        return "attention"
    if any(k in op for k in ("lstm", "gru", "rnn")):
        return "recurrent"
    if "norm" in op:
        return "norm"
    if "conv" in op:
        return "conv"
    if op in ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "einsum", "_scaled_mm") or op.startswith("matmul"):
        return "matmul"
    return "other:" + op


def by_category(by_operator: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for op, n in by_operator.items():
        out[_category(op)] += int(n)
    return dict(out)


@dataclass
class FvcoreCount:
    total_flops: int  # fvcore's count x 2, in this module's convention
    by_category: dict[str, int]
    skipped: dict[str, int]  # op -> calls fvcore had no handle for
    by_module: dict[str, int] = field(default_factory=dict)  # module path -> FLOPs (inclusive)
    error: str | None = None


def fvcore_count(model: nn.Module, example: torch.Tensor) -> FvcoreCount:
    """fvcore's count of one forward (TorchScript trace), with handles for LSTM/GRU/SDPA."""
    try:
        with warnings.catch_warnings():  # fvcore's import scripts a helper: torch.jit deprecation noise
            warnings.simplefilter("ignore", DeprecationWarning)
            from fvcore.nn import FlopCountAnalysis
    except ImportError as e:  # pragma: no cover - fvcore is pinned in requirements
        return FvcoreCount(0, {}, {}, error=f"fvcore not importable: {e}")
    analysis = FlopCountAnalysis(model, example)
    analysis.set_op_handle(**{
        "aten::lstm": _fvcore_rnn, "aten::gru": _fvcore_rnn,
        "aten::rnn_tanh": _fvcore_rnn, "aten::rnn_relu": _fvcore_rnn,
        "aten::scaled_dot_product_attention": _fvcore_sdpa,
        "aten::_convolution_mode": _fvcore_conv_mode,
    })
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    try:
        with counting_conditions(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            by_op = {op: 2 * int(n) for op, n in analysis.by_operator().items()}
            skipped = dict(analysis.unsupported_ops())
            by_module = {path: 2 * int(n) for path, n in analysis.by_module().items()}
    except Exception as e:  # tracing can fail on data-dependent control flow
        return FvcoreCount(0, {}, {}, error=f"fvcore could not trace the model: {type(e).__name__}: {e}".splitlines()[0])
    return FvcoreCount(sum(by_op.values()), by_category(by_op), {k: int(v) for k, v in sorted(skipped.items())},
                       by_module=by_module)
