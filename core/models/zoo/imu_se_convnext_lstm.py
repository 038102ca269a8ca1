"""imu_se_convnext_lstm: the IMU gesture model — 1x1 input projection, residual
SE-ConvNeXt-1D blocks (each followed by max-pool and dropout), then a (bi)LSTM head."""
from __future__ import annotations

import torch
from torch import nn

from core.models.base import ZooModel
from core.models.blocks import ConvNeXtBlock1d, SqueezeExcite1d
from core.models.blocks._checks import check_int, check_prob
from core.models.blocks.dropout import dropout_layer, effective_p
from core.models.registry import HParam, ModelSpec, register


class SEConvNeXtStage(nn.Module):
    """1x1 projection when channels change, a ConvNeXt-1D block (its own residual with
    LayerScale and DropPath), squeeze-excitation, then MaxPool1d(2) and dropout.

    Shape: (B, C_in, T) -> (B, C_out, T // 2).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, se_reduction: int,
                 drop_path: float, layer_scale_init: float, dropout: float) -> None:
        super().__init__()
        self.shortcut = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.block = ConvNeXtBlock1d(out_channels, kernel_size, 4, layer_scale_init, drop_path)
        self.se = SqueezeExcite1d(out_channels, se_reduction)
        self.pool = nn.MaxPool1d(2)
        self.drop = dropout_layer(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C_in, T) -> (B, C_out, T) -> (B, C_out, T // 2)
        x = self.se(self.block(self.shortcut(x)))
        return self.drop(self.pool(x))


class ImuSEConvNeXtLSTM(ZooModel):
    """SE-ConvNeXt-1D feature extractor with an LSTM head.

    Args:
        in_channels: sensor channels C.
        num_classes: classes to predict.
        seq_len: window length T; needs T >= 2**num_blocks (each block halves it).
        dim: width after the 1x1 input projection; block i is dim * min(2**i, 4) wide.
        num_blocks: SE-ConvNeXt blocks.
        kernel_size: depthwise taps of the ConvNeXt blocks.
        se_reduction: squeeze-excitation bottleneck factor.
        drop_path: largest stochastic-depth rate (rises linearly over the blocks).
        layer_scale_init: initial LayerScale value.
        dropout: dropout after each block's pooling and before the classifier.
        lstm_hidden: LSTM hidden size per direction.
        lstm_layers: stacked LSTM layers.
        bidirectional: run the LSTM both ways.

    Shape: (B, C, T) -> (B, num_classes), e.g. (8, 6, 128) -> (8, 6); features are the
    LSTM outputs averaged over time, (B, lstm_hidden * directions).
    """

    def __init__(self, in_channels: int, num_classes: int, seq_len: int, dim: int = 64, num_blocks: int = 3,
                 kernel_size: int = 7, se_reduction: int = 8, drop_path: float = 0.1,
                 layer_scale_init: float = 1e-6, dropout: float = 0.2, lstm_hidden: int = 128,
                 lstm_layers: int = 1, bidirectional: bool = True) -> None:
        super().__init__()
        owner = "imu_se_convnext_lstm"
        check_int(owner, "dim", dim)
        check_int(owner, "num_blocks", num_blocks)
        check_int(owner, "lstm_hidden", lstm_hidden)
        check_int(owner, "lstm_layers", lstm_layers)
        check_prob(owner, "dropout", dropout)
        check_prob(owner, "drop_path", drop_path)
        check_int(owner, "seq_len", seq_len, low=2 ** num_blocks)
        self.input_proj = nn.Conv1d(in_channels, dim, 1)
        stages, width = [], dim
        for i in range(num_blocks):
            out = dim * min(2 ** i, 4)
            rate = drop_path * i / max(1, num_blocks - 1)
            stages.append(SEConvNeXtStage(width, out, kernel_size, se_reduction, rate, layer_scale_init, dropout))
            width = out
        self.stages = nn.ModuleList(stages)
        self.lstm = nn.LSTM(width, lstm_hidden, num_layers=lstm_layers, batch_first=True,
                            bidirectional=bidirectional, dropout=effective_p(dropout) if lstm_layers > 1 else 0.0)
        self.num_features = lstm_hidden * (2 if bidirectional else 1)
        self.head = nn.Sequential(dropout_layer(dropout), nn.Linear(self.num_features, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, dim, T) -> ... -> (B, W, T / 2**n) -> LSTM (B, T', H * dirs) -> (B, H * dirs)
        x = self.input_proj(x)
        for stage in self.stages:
            x = self.maybe_checkpoint(stage, x)
        seq = x.transpose(1, 2)
        if seq.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN has no bfloat16 LSTM primitive here: under CPU mixed precision run it in fp32
            with torch.autocast("cpu", enabled=False):
                out, _ = self.lstm(seq.float())
        else:
            out, _ = self.lstm(seq)
        return out.mean(dim=1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # (B, D) -> (B, num_classes)
        return self.head(features)


register("imu_se_convnext_lstm", ModelSpec(
    name="imu_se_convnext_lstm",
    builder=ImuSEConvNeXtLSTM,
    input_kind="imu",
    description="IMU gesture model: 1x1 input projection, residual SE-ConvNeXt-1D blocks with max-pool and "
                "dropout, (bi)LSTM head, linear classifier.",
    hparams=(
        HParam("dim", "int", low=16, high=128, log=True),
        HParam("num_blocks", "int", low=1, high=4),
        HParam("kernel_size", "choice", choices=(3, 5, 7, 9, 11, 15)),
        HParam("se_reduction", "choice", choices=(4, 8, 16)),
        HParam("drop_path", "float", low=0.0, high=0.3),
        HParam("layer_scale_init", "float", low=1e-6, high=1.0, log=True),
        HParam("dropout", "float", low=0.0, high=0.5),
        HParam("lstm_hidden", "int", low=16, high=256, log=True),
        HParam("lstm_layers", "int", low=1, high=2),
        HParam("bidirectional", "bool"),
    ),
    supports_checkpointing=True,
    default_input=(6, 128),
    min_length=lambda hp: 2 ** hp["num_blocks"],
))
