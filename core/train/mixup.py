"""Mixup (Zhang et al., 2018): train on convex blends of example pairs and their labels.

    x, y_other, lam = mix_batch(x, y, alpha=0.4)   # x = lam * x + (1 - lam) * x[perm]
    loss = mixed_loss(criterion, model(x), y, y_other, lam)

One weight lam ~ Beta(alpha, alpha) per batch, partners drawn by a random permutation of
the batch. Drawn from torch's global generator, so a seeded run is repeatable and a resumed
run (its RNG state is in the checkpoint) continues the same sequence. For audio it blends
two recordings' features after normalization and augmentation, which keeps a model from
resting on one speaker's exact spectra.
"""
from __future__ import annotations

import torch
from torch import nn


def mix_batch(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(blended x, partner labels, lam) for one batch; x of any shape (B, ...), y (B,)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0]).to(x.device)
    return lam * x + (1.0 - lam) * x[perm], y[perm], lam


def mixed_loss(criterion: nn.Module, logits: torch.Tensor, y: torch.Tensor, y_other: torch.Tensor,
               lam: float) -> torch.Tensor:
    """The blend's loss: lam x loss(y) + (1 - lam) x loss(partner's y)."""
    return lam * criterion(logits, y) + (1.0 - lam) * criterion(logits, y_other)


def dominant_labels(y: torch.Tensor, y_other: torch.Tensor, lam: float) -> torch.Tensor:
    """The label each blended example mostly is (for training-accuracy curves)."""
    return y if lam >= 0.5 else y_other
