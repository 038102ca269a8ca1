"""Which dilations and time steps carried a MiniRocket decision: an exact decomposition of one
class's logit over the model's features, then over dilations, time steps and channels.

    exp = explain_minirocket(model, x, target=1)     # x: one window (C, T) as the model sees it
    exp.by_time          # (T,) logit units per time step of the input
    exp.dilations, exp.by_dilation                   # (D,) dilation in samples, (D,) logit units
    exp.residual         # |sum - (logit - bias)|: float rounding only

MiniRocket's head is linear on standardized PPV features (core/models/zoo/minirocket.py):

    logit_c = b_c + sum_f w'_f (ppv_f - mean_f),   w'_f = W[c, f] / scale_f

so contribution_f = w'_f (ppv_f - mean_f) sums exactly to logit_c - b_c. Each ppv_f is the
mean over the time steps S_f its kernel pools (all T "same"-padded outputs, or only those that
never saw the padding, alternately, as the model pools them) of the indicator
[conv_t > bias_f], with conv_t centred on input step t. Spreading each feature over the steps
it averages,

    m_t = sum_f w'_f ([conv_{f,t} > bias_f] - mean_f) / |S_f|     for t in S_f

gives a per-time-step map with sum_t m_t = sum_f w'_f (ppv_f - mean_f) = logit_c - b_c: a step
counts for the class when the features with positive weight fire there more often than they
did on average over the training series (or those with negative weight fire less). Summing the
features of each dilation gives the per-dilation bars (same total), and splitting each feature
equally over the channels its kernel sums gives a per-channel share (same total).

Contributions are measured from the mean the head subtracts (`model.feature_mean`: the training
features' mean for a gradient-fitted head), or from any `reference` features given; they then
sum to logit - baseline, the baseline being the logit at the reference (b_c by default). A
head stored without a mean (all zeros) measures them from all-zero features: exact still, but
every fired step then counts, so the map says less about what differs from training series.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.errors import ConfigError


@dataclass(frozen=True)
class MiniRocketExplanation:
    """One window's logit for class `target`, decomposed (every part in logit units).

    by_time (T,) is aligned with the input's time axis; by_dilation_time (D, T) sums to it over
    dilations and to by_dilation over time; by_feature (F,) in the model's feature order.
    """

    target: int
    logit: float  # the model's own logit for `target` (its forward pass)
    bias: float  # the head's bias for `target`
    baseline: float  # the logit at the reference features: the bias when the reference is the head's own mean
    reference: str  # what the contributions are measured from, in words
    by_time: np.ndarray  # (T,)
    dilations: np.ndarray  # (D,) int, samples between kernel taps
    by_dilation: np.ndarray  # (D,)
    by_dilation_time: np.ndarray  # (D, T)
    by_channel: np.ndarray  # (C,)
    by_feature: np.ndarray  # (F,)

    @property
    def feature_part(self) -> float:
        """logit - baseline (logit - bias by default): what every decomposition here sums to."""
        return self.logit - self.baseline

    @property
    def residual(self) -> float:
        """The largest gap between a decomposition's sum and logit - bias (float rounding only)."""
        parts = (self.by_time.sum(), self.by_dilation.sum(), self.by_channel.sum(), self.by_feature.sum())
        return float(max(abs(p - self.feature_part) for p in parts))


def is_minirocket(model: nn.Module) -> bool:
    """Whether `model` is explained by this decomposition (its PPV pooling has no gradient:
    Grad-CAM and input saliency say nothing about it)."""
    from core.models.zoo.minirocket import MiniRocket

    return isinstance(model, MiniRocket)


@torch.no_grad()
def explain_minirocket_batch(model: nn.Module, x: torch.Tensor | np.ndarray,
                             targets: torch.Tensor | np.ndarray | list[int],
                             reference: torch.Tensor | np.ndarray | None = None) -> list[MiniRocketExplanation]:
    """explain_minirocket for each window of x (B, C, T), toward targets[b]."""
    if not is_minirocket(model):
        raise ConfigError(f"the dilation/time decomposition explains minirocket runs only, not {type(model).__name__}")
    transform = model.transform
    x = torch.as_tensor(x).to(model.feature_mean.device, torch.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or tuple(x.shape[1:]) != (transform.in_channels, transform.seq_len):
        raise ConfigError(f"minirocket explains windows of shape ({transform.in_channels}, {transform.seq_len}), "
                          f"got {tuple(x.shape)}")
    targets = [int(t) for t in (targets.tolist() if hasattr(targets, "tolist") else targets)]
    classes = model.head.out_features
    if len(targets) != len(x) or any(not 0 <= t < classes for t in targets):
        raise ConfigError(f"targets {targets} must be one class index in [0, {classes}) per window ({len(x)})")
    logits = model(x).double().cpu()
    weight = (model.head.weight.double() / model.feature_scale.double()[None]).cpu()  # (K, F): w'
    own_mean = model.feature_mean.double().cpu()
    mean = own_mean if reference is None else torch.as_tensor(reference, dtype=torch.float64).flatten().cpu()
    if mean.shape != own_mean.shape or not torch.isfinite(mean).all():
        raise ConfigError(f"reference: give {own_mean.numel()} finite feature values (the training features' mean)")
    bias = model.head.bias.double().cpu()
    baselines = bias + weight @ (mean - own_mean)  # (K,): the logits at the reference features
    reference_words = ("the reference features given" if reference is not None else
                       "the training features' mean" if own_mean.any() else
                       "all-zero features (this run's head stores no training mean)")
    return [_explain_one(model, x[b:b + 1], target, float(logits[b, target]), float(baselines[target]),
                         reference_words, weight[target], mean) for b, target in enumerate(targets)]


def _explain_one(model: nn.Module, x: torch.Tensor, target: int, logit: float, baseline: float, reference: str,
                 weight: torch.Tensor, mean: torch.Tensor) -> MiniRocketExplanation:
    # x (1, C, T); weight, mean (F,) float64 on the CPU
    from core.models.zoo.minirocket import N_KERNELS

    transform = model.transform
    length = transform.seq_len
    steps = torch.arange(length)
    shares = transform.channel_mask.double().cpu()
    shares = shares / shares.sum(-1, keepdim=True).clamp_min(1)  # (D * 84, C): a feature split over its channels
    rows_time, rows_total, features = [], [], []
    by_channel = torch.zeros(transform.in_channels, dtype=torch.float64)
    start = 0
    for j, (dilation, n) in enumerate(transform.plan):
        conv = transform.convolve(x, j)[0]  # (84, T), exactly the model's
        biases = transform.biases[start:start + N_KERNELS * n].view(N_KERNELS, n)
        # which steps each kernel pools (the model's alternation): all, or those clear of the padding
        cropped = (torch.arange(N_KERNELS) + j) % 2 == 1
        clear = (steps >= 4 * dilation) & (steps < length - 4 * dilation)
        pooled = torch.where(cropped[:, None], clear[None], torch.ones(1, length, dtype=torch.bool))  # (84, T)
        fired = ((conv[:, None, :] > biases[:, :, None]).cpu() & pooled[:, None, :]).double()  # (84, n, T)
        w = weight[start:start + N_KERNELS * n].view(N_KERNELS, n)
        m = mean[start:start + N_KERNELS * n].view(N_KERNELS, n)
        pooled_steps = pooled.sum(-1).double()[:, None]  # (84, 1): |S_f|
        contribution = w * (fired.sum(-1) / pooled_steps - m)  # (84, n): w' (ppv - mean)
        per_step = w / pooled_steps
        rows_time.append(torch.einsum("kn,knt->t", per_step, fired)
                         - torch.einsum("kn,kt->t", per_step * m, pooled.double()))
        rows_total.append(contribution.sum())
        features.append(contribution.flatten())
        by_channel += contribution.sum(-1) @ shares[j * N_KERNELS:(j + 1) * N_KERNELS]
        start += N_KERNELS * n
    by_dilation_time = torch.stack(rows_time).numpy()
    return MiniRocketExplanation(
        target=target, logit=logit, bias=float(model.head.bias[target]), baseline=baseline, reference=reference,
        by_time=by_dilation_time.sum(0),
        dilations=transform.dilations.cpu().numpy().astype(int), by_dilation=torch.stack(rows_total).numpy(),
        by_dilation_time=by_dilation_time, by_channel=by_channel.numpy(), by_feature=torch.cat(features).numpy())


def explain_minirocket(model: nn.Module, x: torch.Tensor | np.ndarray, target: int,
                       reference: torch.Tensor | np.ndarray | None = None) -> MiniRocketExplanation:
    """One window x (C, T) or (1, C, T), normalized as the model's input: class `target`'s
    logit decomposed over time steps, dilations, channels and features (see the module doc).
    reference (F,): the features a contribution is measured from (default: the mean the head
    subtracts, `model.feature_mean`); the parts then sum to logit - baseline, baseline being
    the logit at the reference."""
    return explain_minirocket_batch(model, x, [target], reference)[0]
