"""The small API every zoo model offers (as timm's do)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class ZooModel(nn.Module):
    """A classifier split into `forward_features` (input -> (B, D) embedding) and
    `forward_head` (embedding -> (B, num_classes) logits).

    Models that support gradient checkpointing run their heavy stages through
    `self.maybe_checkpoint(stage, x)`; `set_grad_checkpointing(True)` turns it on.
    """

    num_features: int = 0  # D, the embedding size forward_features returns

    def __init__(self) -> None:
        super().__init__()
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def maybe_checkpoint(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(stage, x, use_reentrant=False)
        return stage(x)

    def fit_to_data(self, x: torch.Tensor, seed: int) -> None:
        """Fit buffers that depend on the training data (MiniRocket's biases) from training
        windows x (N, C, T), before the first epoch; never called on resume (the buffers are in
        the checkpoint). Default: nothing to fit."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
