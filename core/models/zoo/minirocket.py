"""minirocket: MiniRocket (Dempster, Schmidt & Webb, KDD 2021) — 84 fixed length-9 kernels
(weight -1 at six positions, 2 at three), dilations spread exponentially up to (T - 1) / 8,
biases from quantiles of the convolution output on training series, proportion-of-positive-
values (PPV) pooling: about 10,000 features, then a linear head.

It follows aeon's `MiniRocket` (aeon/transformations/collection/convolution_based/
_minirocket.py, adapted from the authors' code) step by step: the same dilations and features
per dilation, the same low-discrepancy quantiles, the same channel combinations and the same
random series per bias for a seed (aeon's numba `randint` draws what numpy's RandomState
draws), so fitted on the same series with the same seed its features are aeon's, up to float
rounding where a value sits on a bias.

The kernels, dilations, channel choices and biases are buffers: a run's checkpoint carries
them, and `fit_to_data` (called by the Trainer once before the first epoch) fits them.
Two ways to fit the head (`train.fit`): "gradient", the Trainer's loop like any model (on
features standardized with training statistics), or "ridge", closed form with a
cross-validated ridge as the paper does (core/train/closed_form.py).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ConfigError
from core.models.base import ZooModel
from core.models.blocks._checks import check_int
from core.models.registry import HParam, ModelSpec, register

KERNEL_LENGTH = 9
KERNEL_INDICES = tuple(combinations(range(KERNEL_LENGTH), 3))  # where the weight is 2: all C(9, 3) = 84
N_KERNELS = len(KERNEL_INDICES)
MAX_COMBINED_CHANNELS = 9  # a kernel sums at most this many channels (aeon: min(C, 9))
_EPS = 1e-8
_COMPARE_CHUNK = 2**24  # elements of one PPV comparison (64 MiB as float32)


def kernel_weights() -> torch.Tensor:
    """(84, 9): -1 everywhere and 2 at three positions (every choice of three); each row sums to 0."""
    weights = torch.full((N_KERNELS, KERNEL_LENGTH), -1.0)
    for k, positions in enumerate(KERNEL_INDICES):
        weights[k, list(positions)] = 2.0
    return weights


def fit_dilations(seq_len: int, num_features: int, max_dilations_per_kernel: int) -> tuple[list[int], list[int]]:
    """aeon's `_fit_dilations`: dilations floor(2**e) for e evenly spaced in [0, log2((T-1)/8)]
    (repeats merged), and how many biases (features) each dilation gets per kernel."""
    per_kernel = num_features // N_KERNELS
    true_max = min(per_kernel, max_dilations_per_kernel)
    multiplier = per_kernel / true_max
    max_exponent = np.log2((seq_len - 1) / (KERNEL_LENGTH - 1))
    dilations, counts = np.unique(np.logspace(0, max_exponent, true_max, base=2).astype(np.int32),
                                  return_counts=True)
    counts = (counts * multiplier).astype(np.int32)
    remainder, i = per_kernel - int(counts.sum()), 0
    while remainder > 0:  # the rounding shortfall, one feature at a time from the smallest dilation
        counts[i] += 1
        remainder -= 1
        i = (i + 1) % len(counts)
    return [int(d) for d in dilations], [int(c) for c in counts]


def quantiles(n: int) -> np.ndarray:
    """(n,) float32: the low-discrepancy sequence (i * golden ratio) mod 1, i = 1..n (aeon's `_quantiles`)."""
    return ((np.arange(1, n + 1) * ((np.sqrt(5) + 1) / 2)) % 1).astype(np.float32)


def channel_combinations(n_channels: int, n_combinations: int, seed: int) -> np.ndarray:
    """(n_combinations, C) 0/1: the channels each (dilation, kernel) sums, drawn as aeon's `_static_fit`
    draws them (2**U(0, log2(min(C, 9) + 1)) channels without replacement; all ones for C = 1)."""
    rng = np.random.RandomState(seed)
    max_exponent = np.log2(min(n_channels, MAX_COMBINED_CHANNELS) + 1)
    counts = (2 ** rng.uniform(0, max_exponent, n_combinations)).astype(np.int32)
    mask = np.zeros((n_combinations, n_channels), dtype=np.float32)
    for i, count in enumerate(counts):
        mask[i, rng.choice(n_channels, count, replace=False)] = 1.0
    return mask


def exact_conv(x: torch.Tensor, weight: torch.Tensor, dilation: int, groups: int = 1) -> torch.Tensor:
    """A "same" zero-padded convolution with MiniRocket's integer weights, summed in float64 and
    returned as float32: sums of nine float32 values times -1 or 2 are exact in float64, so a
    flat stretch of a series gives exactly 0, never float32 rounding noise on either side of a
    bias of 0 (on series with long constant stretches, such as ACSF1's appliance power, that
    noise decided up to 60 % of some features, differently in every implementation). MPS has no
    float64: there it sums in float32."""
    exact = torch.float32 if x.device.type == "mps" else torch.float64
    out = F.conv1d(x.to(exact), weight.to(exact), padding=4 * dilation, dilation=dilation, groups=groups)
    return out.float()


def proportion_positive(values: torch.Tensor, biases: torch.Tensor) -> torch.Tensor:
    """PPV: the share of `values` (B, K, L) strictly above each bias (K, n) -> (B, K, n), as aeon
    counts it. Compared all at once (faster on CPU than sorting once and searching), a few
    examples at a time so the (b, K, n, L) comparison stays under _COMPARE_CHUNK elements."""
    per_example = values.shape[1] * biases.shape[1] * values.shape[2]
    at_once = max(1, _COMPARE_CHUNK // max(1, per_example))
    return torch.cat([(part.unsqueeze(2) > biases[None, :, :, None]).float().mean(-1)
                      for part in values.split(at_once)])


class MiniRocketFeatures(nn.Module):
    """The MiniRocket transform: (B, C, T) -> (B, F) PPV features in [0, 1], F = 84 * (features
    per kernel summed over dilations), laid out dilation-major, then kernel, then bias (aeon's order).

    Args:
        in_channels: channels C.
        seq_len: length T (at least 9).
        num_features: features asked for; 84 * (num_features // 84) are made (9,996 for 10,000).
        max_dilations_per_kernel: most dilations per kernel.
    """

    def __init__(self, in_channels: int, seq_len: int, num_features: int = 10_000,
                 max_dilations_per_kernel: int = 32) -> None:
        super().__init__()
        dilations, per_dilation = fit_dilations(seq_len, num_features, max_dilations_per_kernel)
        self.plan = list(zip(dilations, per_dilation))  # Python ints: the forward's loop needs no tensor reads
        self.num_features = N_KERNELS * sum(per_dilation)
        self.in_channels, self.seq_len = in_channels, seq_len
        self.register_buffer("kernels", kernel_weights())
        self.register_buffer("dilations", torch.tensor(dilations, dtype=torch.long))
        self.register_buffer("features_per_dilation", torch.tensor(per_dilation, dtype=torch.long))
        # (dilation * 84 + kernel, C): which channels each kernel sums at each dilation (all until fitted)
        self.register_buffer("channel_mask", torch.ones(len(dilations) * N_KERNELS, in_channels))
        self.register_buffer("biases", torch.zeros(self.num_features))  # fitted by `fit`

    def weights(self, j: int) -> torch.Tensor:
        """(84, C, 9): dilation j's kernels, each over its channel combination."""
        mask = self.channel_mask[j * N_KERNELS:(j + 1) * N_KERNELS]
        return self.kernels[:, None, :] * mask[:, :, None]

    def convolve(self, x: torch.Tensor, j: int) -> torch.Tensor:
        # (B, C, T) -> (B, 84, T): "same" zero padding of 4 * dilation on each side
        return exact_conv(x, self.weights(j), self.plan[j][0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, F); float32 always: a bias is a threshold, bf16 would move it. Padding
        # alternates: at dilation j, kernel k pools its whole (zero-padded) output when j + k is
        # even, else only the part that never saw the padding
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            out, start = [], 0
            for j, (dilation, n) in enumerate(self.plan):
                conv = self.convolve(x, j)
                biases = self.biases[start:start + N_KERNELS * n].view(N_KERNELS, n)
                out.append(self._pool(conv, biases, j, 4 * dilation).flatten(1))
                start += N_KERNELS * n
            return torch.cat(out, dim=1)

    def _pool(self, conv: torch.Tensor, biases: torch.Tensor, j: int, padding: int) -> torch.Tensor:
        # (B, 84, T), (84, n) -> (B, 84, n); kernels alternate (strided views, no copies of conv)
        whole, cropped = slice(j % 2, None, 2), slice(1 - j % 2, None, 2)
        out = conv.new_empty(conv.shape[0], N_KERNELS, biases.shape[1])
        out[:, whole] = proportion_positive(conv[:, whole], biases[whole])
        out[:, cropped] = proportion_positive(conv[:, cropped, padding:conv.shape[-1] - padding], biases[cropped])
        return out

    @torch.no_grad()
    def fit(self, x: torch.Tensor, seed: int) -> None:
        """Fit channel combinations and biases on training series x (N, C, T) as aeon's
        `_static_fit` does: for each dilation and kernel one random series, convolved over its
        channel combination (zero-padded), and the quantiles of that output as the biases."""
        if x.ndim != 3 or tuple(x.shape[1:]) != (self.in_channels, self.seq_len) or len(x) == 0:
            raise ConfigError(f"minirocket: fit on series of shape (N, {self.in_channels}, {self.seq_len}), "
                              f"got {tuple(x.shape)}")
        x = x.detach().to(self.biases.device, torch.float32)
        n, channels, length = x.shape
        seed = int(seed) % 2**32
        self.channel_mask.copy_(torch.from_numpy(channel_combinations(channels, len(self.channel_mask), seed)))
        draws = np.random.RandomState(seed)  # aeon re-seeds before drawing the series (numba draws the same)
        levels = quantiles(self.num_features)
        biases = np.empty(self.num_features, dtype=np.float32)
        start = 0
        for j, (dilation, per_kernel) in enumerate(self.plan):
            picks = [draws.randint(n) for _ in range(N_KERNELS)]
            series = x[picks].reshape(1, N_KERNELS * channels, length)  # kernel k sees series picks[k]
            conv = exact_conv(series, self.weights(j), dilation, groups=N_KERNELS)
            conv = conv[0].cpu().numpy()  # (84, T)
            for k in range(N_KERNELS):
                biases[start:start + per_kernel] = np.quantile(conv[k], levels[start:start + per_kernel])
                start += per_kernel
        self.biases.copy_(torch.from_numpy(biases))


class MiniRocket(ZooModel):
    """MiniRocket features and a linear head.

    Args:
        in_channels: sensor channels C (more than one: each kernel sums a random combination of up to 9).
        num_classes: classes to predict.
        seq_len: window length T (at least 9).
        num_features: features asked for; 84 * (num_features // 84) are made (9,996 for the paper's 10,000).
        max_dilations_per_kernel: most dilations per kernel (the paper's 32).

    Shape: (B, C, T) -> (B, num_classes), e.g. (8, 1, 150) -> (8, 2); features (8, 9996).
    """

    closed_form_fit = True  # core/train/closed_form.py can solve its head (train.fit="ridge")

    def __init__(self, in_channels: int, num_classes: int, seq_len: int, num_features: int = 10_000,
                 max_dilations_per_kernel: int = 32) -> None:
        super().__init__()
        check_int("minirocket", "num_features", num_features, low=N_KERNELS)
        check_int("minirocket", "max_dilations_per_kernel", max_dilations_per_kernel, low=1)
        if seq_len < KERNEL_LENGTH:
            raise ConfigError(f"minirocket: seq_len={seq_len} is shorter than its kernels: give windows of at "
                              f"least {KERNEL_LENGTH} samples (zero-pad shorter series)")
        self.transform = MiniRocketFeatures(in_channels, seq_len, num_features, max_dilations_per_kernel)
        self.num_features = self.transform.num_features
        # the head sees (features - mean) / scale: training statistics (fit_to_data) or the ridge's scaler
        self.register_buffer("feature_mean", torch.zeros(self.num_features))
        self.register_buffer("feature_scale", torch.ones(self.num_features))
        self.head = nn.Linear(self.num_features, num_classes)

    @torch.no_grad()
    def fit_to_data(self, x: torch.Tensor, seed: int) -> None:
        """Biases and channel combinations from training series x (N, C, T), then the features'
        mean and spread over them, which standardize the head's input (as the paper does for its
        gradient-trained head)."""
        self.transform.fit(x, seed)
        total = torch.zeros(self.num_features, dtype=torch.float64, device=self.feature_mean.device)
        squares = torch.zeros_like(total)
        for chunk in x.split(256):
            features = self.transform(chunk.to(total.device)).double()
            total += features.sum(0)
            squares += (features ** 2).sum(0)
        mean = total / len(x)
        spread = (squares / len(x) - mean ** 2).clamp_min(0).sqrt()
        self.feature_mean.copy_(mean)
        self.feature_scale.copy_(torch.where(spread > _EPS, spread, torch.ones_like(spread)))

    @torch.no_grad()
    def set_linear_head(self, weight: torch.Tensor, bias: torch.Tensor, feature_mean: torch.Tensor,
                        feature_scale: torch.Tensor) -> None:
        """Write a head solved elsewhere (the ridge fit): logits = weight @ ((f - mean) / scale) + bias."""
        self.head.weight.copy_(weight)
        self.head.bias.copy_(bias)
        self.feature_mean.copy_(feature_mean)
        self.feature_scale.copy_(feature_scale)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, F) proportions of positive values
        return self.transform(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # (B, F) -> (B, num_classes)
        return self.head((features - self.feature_mean) / self.feature_scale)


register("minirocket", ModelSpec(
    name="minirocket",
    builder=MiniRocket,
    input_kind="imu",
    description="MiniRocket (Dempster et al. 2021): 84 fixed length-9 kernels at exponentially spaced "
                "dilations, biases from training quantiles, proportion-of-positive-values pooling (~10,000 "
                "features), linear head; fit it by gradient or in closed form (train.fit='ridge').",
    hparams=(
        HParam("num_features", "int", low=N_KERNELS, high=50_000, log=True),
        HParam("max_dilations_per_kernel", "int", low=1, high=32),
    ),
    default_input=(6, 128),
    min_length=lambda hp: KERNEL_LENGTH,
))
