"""Quantization-aware fine-tuning (QAT): a few epochs from a run's trained weights with the
int8 rounding of ONNX Runtime's static QDQ quantization simulated in the forward pass, for
when plain static int8 loses accuracy.

    result = quantization_aware_finetune(predictor, epochs=3)    # QatResult(model, epochs, history, method)
    result.model                                                  # plain fp32 nn.Module: export + quantize it
    with FakeQuant(model) as fq:                                  # the simulation alone
        fq.calibrate(x)                                           # activation ranges, as ORT's MinMax
        model(x)                                                  # int8-rounded weights and inputs

The path (torch 2.13): torch's core fake-quant ops `torch.fake_quantize_per_channel_affine` and
`torch.fake_quantize_per_tensor_affine` (straight-through gradients) applied through
`torch.nn.utils.parametrize` (weights) and forward pre-hooks (layer inputs). No torch.ao:
its eager and FX flows are deprecated, and the pt2e flow (`prepare_qat_pt2e`) has left torch
for torchao. The scheme is ORT's, so what is trained against is what is deployed:
- Conv/Linear weights (and nn.MultiheadAttention's packed in-projection): per output channel,
  symmetric int8 in [-127, 127], scale = max|w| / 127 (ORT's QInt8 with per_channel=True);
- the inputs of those layers: per tensor, asymmetric uint8, range = min/max over calibration
  windows widened to include 0 (ORT's MinMax calibration and compute_scale_zp).
BatchNorm statistics are frozen (BN in eval mode) rather than folded: see `FreezeBatchNorm`.
After fine-tuning the parametrizations and hooks are removed, so the result is the run's own
architecture with new fp32 weights (its state_dict loads into the registry's model).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from core.errors import ConfigError
from core.train.callbacks import Callback

WEIGHT_QMIN, WEIGHT_QMAX = -127, 127  # ORT's symmetric int8 weights (QInt8, symmetric range)
ACT_QMIN, ACT_QMAX = 0, 255           # ORT's default static activation type (QUInt8)
CALIBRATION_WINDOWS = 256             # training windows the activation ranges come from (as deploy calibrates)
DEFAULT_LR_FRACTION = 0.1             # default lr = this x the run's own optim.lr
CALIBRATION_BATCH = 128


# ---- the fake-quant functions (pure) ------------------------------------------------------
def weight_scales(weight: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """Per-channel symmetric int8 scales along `axis`: max|w| / 127; 1.0 for an all-zero
    channel (ORT's compute_scale_zp). Detached: the scale is not trained."""
    w = weight.detach()
    dims = [d for d in range(w.dim()) if d != axis]
    absmax = w.abs().amax(dim=dims) if dims else w.abs()
    scale = absmax.float() / WEIGHT_QMAX
    return torch.where(scale > torch.finfo(torch.float32).tiny, scale, torch.ones_like(scale))


def fake_quantize_weight(weight: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """`weight` rounded to per-channel symmetric int8 and back (same shape and dtype); the
    gradient passes straight through (every weight lies inside its channel's range)."""
    scale = weight_scales(weight, axis)
    zero_point = torch.zeros(scale.shape, dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero_point, axis, WEIGHT_QMIN, WEIGHT_QMAX)


def activation_qparams(low: float, high: float) -> tuple[float, int]:
    """(scale, zero_point) of per-tensor asymmetric uint8 for the range [low, high], as ORT's
    compute_scale_zp: the range is widened to include 0; a zero range gives (1.0, 0)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = (high - low) / (ACT_QMAX - ACT_QMIN)
    if scale < np.finfo(np.float32).tiny:
        return 1.0, 0
    return float(np.float32(scale)), int(np.round(ACT_QMIN - low / scale))


def fake_quantize_activation(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """`x` rounded to per-tensor uint8 for the range [low, high] and back; straight-through
    gradient inside the range, zero outside (values there are clipped)."""
    scale, zero_point = activation_qparams(low, high)
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, ACT_QMIN, ACT_QMAX)


# ---- the simulation on a module -----------------------------------------------------------
class _WeightFakeQuant(nn.Module):
    """A parametrization: the weight as int8 would store it (when enabled)."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis
        self.enabled = True

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize_weight(weight, self.axis) if self.enabled else weight


@dataclass
class _InputObserver:
    """The per-tensor range of one layer's input (None until calibrated)."""

    low: float | None = None
    high: float | None = None

    def update(self, x: torch.Tensor) -> None:
        lo, hi = float(x.detach().min()), float(x.detach().max())
        self.low = lo if self.low is None else min(self.low, lo)
        self.high = hi if self.high is None else max(self.high, hi)


def _weight_axis(module: nn.Module) -> int | None:
    """The output-channel axis of a layer ORT quantizes statically, or None for other modules."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return 1  # (in, out / groups, *kernel)
    if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
        return 0  # (out, in / groups, *kernel) and (out, in)
    return None


class FakeQuant:
    """Simulates ORT static int8 (QDQ) on `model` in place while attached (a context manager).

    Every Conv/Linear weight is replaced, through a parametrization, by its per-channel int8
    rounding; with `activations`, every such layer's first input is rounded to uint8 with the
    range `calibrate` measured (the float model's min/max, as ORT's MinMax calibrator). LSTM/GRU
    weights stay fp32 (ORT quantizes those only dynamically). Detaching removes every
    parametrization and hook, leaving the original classes and the (trained) fp32 weights."""

    def __init__(self, model: nn.Module, activations: bool = True) -> None:
        self.model = model
        self.activations = activations
        self.observers: dict[str, _InputObserver] = {}
        self._parametrized: list[tuple[nn.Module, str, list[str]]] = []
        self._handles: list = []
        self._collecting = False
        self._enabled = True

    # -- attach / detach ------------------------------------------------------------------
    def attach(self) -> "FakeQuant":
        if self._parametrized or self._handles:
            return self
        for name, module in self.model.named_modules():
            axis = _weight_axis(module)
            if axis is not None and isinstance(getattr(module, "weight", None), nn.Parameter):
                self._parametrize(module, "weight", axis)
                if self.activations:
                    self.observers[name] = _InputObserver()
                    self._handles.append(module.register_forward_pre_hook(self._input_hook(name)))
            elif isinstance(module, nn.MultiheadAttention) and isinstance(module.in_proj_weight, nn.Parameter):
                # the packed q/k/v projection is read by F.multi_head_attention_forward, not a Linear
                self._parametrize(module, "in_proj_weight", 0)
        return self

    def _parametrize(self, module: nn.Module, name: str, axis: int) -> None:
        if parametrize.is_parametrized(module, name):
            return  # already reparametrized (weight norm, ...): left as it is rather than stacked
        order = list(module._parameters)
        parametrize.register_parametrization(module, name, _WeightFakeQuant(axis), unsafe=True)
        self._parametrized.append((module, name, order))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        for module, name, order in reversed(self._parametrized):
            parametrize.remove_parametrizations(module, name, leave_parametrized=False)
            # removal re-registers the parameter last; restore the order (state_dict keys, parameters())
            params = dict(module._parameters)
            module._parameters.clear()
            module._parameters.update({k: params[k] for k in order if k in params})
            module._parameters.update({k: v for k, v in params.items() if k not in order})
        self._handles, self._parametrized = [], []

    def __enter__(self) -> "FakeQuant":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    # -- switches ---------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        for module, name, _ in self._parametrized:
            for p in module.parametrizations[name]:
                if isinstance(p, _WeightFakeQuant):
                    p.enabled = self._enabled

    def _input_hook(self, name: str):
        def hook(module: nn.Module, args: tuple):
            if not args or not torch.is_tensor(args[0]):
                return None
            observer = self.observers[name]
            if self._collecting:
                observer.update(args[0])
                return None
            if self._enabled and observer.low is not None:
                return (fake_quantize_activation(args[0], observer.low, observer.high), *args[1:])
            return None
        return hook

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, batch: int = CALIBRATION_BATCH) -> None:
        """Measure each layer input's range on the float model (fake quant off, eval mode) over
        `x` (N, *input_shape), replacing earlier ranges: what ORT's MinMax calibration will see."""
        was_training, was_enabled = self.model.training, self._enabled
        self.enabled = False
        self._collecting = True
        for observer in self.observers.values():
            observer.low = observer.high = None
        try:
            self.model.eval()
            for i in range(0, len(x), batch):
                self.model(x[i:i + batch])
        finally:
            self._collecting = False
            self.enabled = was_enabled
            self.model.train(was_training)


# ---- fine-tuning with the Trainer -----------------------------------------------------------
@dataclass
class QatResult:
    """model: plain fp32 module (no fake-quant wrappers), eval mode, same inputs/outputs as
    predictor.model; history: per epoch train_loss, val_accuracy (with fake quant on), seconds."""

    model: nn.Module
    epochs: int
    history: list[dict] = field(default_factory=list)
    method: str = ""


def _frozen_batchnorm(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class _QatCallback(Callback):
    """Trainer callback: BatchNorm frozen, activation ranges re-measured at each epoch's start,
    history and progress.

    Why BatchNorm is frozen, not folded: the deployed graph normalizes with the running
    statistics (folded into the conv before ORT quantizes it), so they must not drift with
    fine-tuning batches; and per-channel symmetric rounding commutes with a per-channel BN
    scale (round(w·s / (max|w·s|/127)) = round(w / (max|w|/127))), so rounding the unfolded
    weight with BN frozen trains against exactly the folded weight ORT stores, without tracing
    the graph to find Conv→BN pairs or changing the run's architecture."""

    name = "qat"

    def __init__(self, fake_quant: FakeQuant, calibration: torch.Tensor, epochs: int,
                 progress: Callable[[float, str], None] | None) -> None:
        self.fake_quant = fake_quant
        self.calibration = calibration
        self.epochs = epochs
        self.progress = progress
        self.history: list[dict] = []
        self._started = 0.0

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self._started = time.perf_counter()
        self.fake_quant.calibrate(self.calibration.to(trainer.device))

    def on_step_start(self, trainer, step: int) -> None:
        _frozen_batchnorm(trainer.model)  # the loop set train() at the epoch's start

    def on_step_end(self, trainer, step: int) -> None:
        if self.progress is not None:
            self.progress(min(1.0, step / max(1, trainer.total_steps)),
                          f"QAT epoch {trainer.epoch + 1}/{self.epochs}, step {step}/{trainer.total_steps}, "
                          f"loss {trainer.last_loss:.4f}")

    def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, float]) -> None:
        row = {"epoch": epoch + 1, "train_loss": float(metrics.get("train_loss", math.nan)),
               "val_accuracy": float(metrics.get("val_accuracy", math.nan)),
               "seconds": time.perf_counter() - self._started}
        self.history.append(row)
        if self.progress is not None:
            self.progress((epoch + 1) / self.epochs, f"QAT epoch {epoch + 1}/{self.epochs}: train loss "
                          f"{row['train_loss']:.4f}, val accuracy (int8 simulated) {row['val_accuracy']:.3f}")


def _check_arguments(epochs, lr) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ConfigError(f"epochs={epochs!r}: quantization-aware fine-tuning needs a whole number of epochs "
                          "of at least 1 (2-5 is usual)")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating))
                           or not math.isfinite(float(lr)) or lr <= 0):
        raise ConfigError(f"lr={lr!r}: use a positive learning rate, e.g. {DEFAULT_LR_FRACTION:g} x the run's "
                          "optim.lr, or leave it empty for that default")


def _same_normalization(a: dict, b: dict) -> bool:
    if set(a) != set(b):
        return False
    for key in a:
        if key in ("center", "scale"):
            if not np.allclose(np.asarray(a[key], dtype=float), np.asarray(b[key], dtype=float), rtol=1e-5):
                return False
        elif a[key] != b[key]:
            return False
    return True


def calibration_inputs(predictor, bundle, n: int = CALIBRATION_WINDOWS) -> np.ndarray:
    """Up to `n` training windows (a seeded draw from the run's training split, without
    augmentation), featurized and normalized as the model sees them: (n, *input_shape)."""
    from core.data.features import featurize_audio
    from core.data.normalize import apply_normalization

    ds = bundle.train
    rng = np.random.default_rng(predictor.config.train.seed)
    idx = np.sort(rng.permutation(len(ds))[:n])
    x = np.asarray(ds.x[idx], dtype=np.float32)
    if ds.featurize is not None:  # a training split with waveform augmentation holds raw clips
        x = featurize_audio(x, predictor.sample_rate, predictor.config.data)
    return apply_normalization(x, predictor.normalization).astype(np.float32)


def _qat_config(config, epochs: int, lr: float):
    """The run's config with QAT's schedule: same data, optimizer kind, loss and seed; `epochs`
    at `lr` with a cosine decay to lr/100; no probes, early stopping, AMP or checkpointing."""
    from core.config import RunConfig

    cfg = RunConfig.from_dict(config.to_dict())
    cfg.optim = dataclasses.replace(cfg.optim, lr=float(lr))
    cfg.schedule = dataclasses.replace(cfg.schedule, name="cosine", warmup_epochs=0.0, min_lr=float(lr) / 100)
    cfg.train = dataclasses.replace(
        cfg.train, epochs=int(epochs), amp="off", grad_checkpointing=False, processes=1,
        early_stopping=dataclasses.replace(cfg.train.early_stopping, enabled=False),
        probes=dataclasses.replace(cfg.train.probes, enabled=False))
    return cfg


def quantization_aware_finetune(predictor, epochs: int = 3, lr: float | None = None,
                                progress: Callable[[float, str], None] | None = None, bundle=None) -> QatResult:
    """Fine-tune a copy of `predictor.model` (a core.infer Predictor) for `epochs` epochs with
    ORT static int8 simulated (FakeQuant), on the run's own training split through the
    run's Trainer (same loader, augmentation, loss and seed: deterministic), and return the
    plain fp32 result for export and static quantization. lr: default 0.1 x the run's optim.lr,
    decayed by cosine to lr/100. progress(fraction, text): called after each step and epoch.
    bundle: the run's data, already loaded with `core.data.load(predictor.config.data)`.
    predictor.model is not modified."""
    from core.data import load
    from core.train.trainer import Trainer

    _check_arguments(epochs, lr)
    lr = float(lr) if lr is not None else DEFAULT_LR_FRACTION * predictor.config.optim.lr
    bundle = bundle if bundle is not None else load(predictor.config.data)
    if list(bundle.class_names) != list(predictor.class_names):
        raise ConfigError(f"run {predictor.run_id}'s data now gives classes {bundle.class_names}, not the "
                          f"{predictor.class_names} it was trained on; fine-tune a run trained on today's data")
    if not _same_normalization(bundle.normalization, predictor.normalization):
        raise ConfigError(f"run {predictor.run_id}'s training data changed since it was trained (its normalization "
                          "statistics differ); fine-tune a run trained on today's data")

    model = copy.deepcopy(predictor.model).to(predictor.device)
    calibration = torch.from_numpy(calibration_inputs(predictor, bundle))
    fake_quant = FakeQuant(model).attach()
    callback = _QatCallback(fake_quant, calibration, int(epochs), progress)
    try:
        trainer = Trainer(_qat_config(predictor.config, epochs, lr), bundle, model=model, callbacks=[callback],
                          device=predictor.device)
        fit = trainer.fit()
    finally:
        fake_quant.detach()
    if fit.status != "completed":
        raise ConfigError(f"quantization-aware fine-tuning stopped ({fit.status}: {fit.message}); try a lower lr "
                          f"than {lr:g}")
    model.eval()
    method = (f"fake-quant fine-tuning (torch.fake_quantize_per_channel_affine / per_tensor_affine, straight-through "
              f"estimator): Conv/Linear weights per-channel symmetric int8, their inputs per-tensor uint8 with MinMax "
              f"ranges from {len(calibration)} training windows, BatchNorm frozen; {int(epochs)} epochs at lr {lr:g} "
              "(cosine to lr/100)")
    return QatResult(model=model, epochs=int(epochs), history=callback.history, method=method)
