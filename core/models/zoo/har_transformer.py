"""har_transformer: the human-activity Transformer — a conv backbone of stacked 1x1
Conv1d + GELU, a linear embedding with a learned positional embedding and a CLS token
(or mean pooling), then a Transformer encoder. Defaults follow the Optuna-tuned seed
(about 0.91 accuracy on WISDM): hidden_ch 15, depth 3, heads 3, mlp_dim 1024, dropout 0.01."""
from __future__ import annotations

import torch
from torch import nn

from core.errors import ConfigError
from core.models.base import ZooModel
from core.models.blocks import TransformerEncoderLayer
from core.models.blocks._checks import check_choice, check_divisible, check_int, check_prob
from core.models.blocks.dropout import dropout_layer
from core.models.registry import HParam, ModelSpec, dim_divisible_by_heads, register


class ConvBackbone(nn.Module):
    """`layers` stacked pointwise convs (kernel 1) with GELU: mixes sensor channels per
    time step without touching time.

    Shape: (B, C, T) -> (B, hidden_ch, T).
    """

    def __init__(self, in_channels: int, hidden_ch: int, layers: int) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [nn.Conv1d(in_channels if i == 0 else hidden_ch, hidden_ch, kernel_size=1), nn.GELU()]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, hidden_ch, T)
        return self.net(x)


class HarTransformer(ZooModel):
    """Conv backbone + Transformer encoder over time steps as tokens.

    Args:
        in_channels: sensor channels C.
        num_classes: classes to predict.
        seq_len: window length T; the positional embedding is learned for exactly T tokens.
        conv_layers: stacked 1x1 convs in the backbone.
        hidden_ch: backbone width.
        dim: token width, divisible by heads.
        depth: encoder layers.
        heads: attention heads per layer.
        mlp_dim: feed-forward hidden width.
        dropout: dropout inside the encoder.
        emb_dropout: dropout on the embedded tokens.
        pool: "cls" (a learned token at index 0 is the summary) or "mean" over tokens.
        norm_first: pre-norm encoder layers (False = post-norm).

    Shape: (B, C, T) -> (B, num_classes), e.g. (8, 6, 128) -> (8, 6); captured attention
    (B, heads, T', T') per layer with T' = T + 1 when pool="cls" (CLS at index 0).
    """

    def __init__(self, in_channels: int, num_classes: int, seq_len: int, conv_layers: int = 2,
                 hidden_ch: int = 15, dim: int = 96, depth: int = 3, heads: int = 3, mlp_dim: int = 1024,
                 dropout: float = 0.01, emb_dropout: float = 0.1, pool: str = "cls",
                 norm_first: bool = True) -> None:
        super().__init__()
        owner = "har_transformer"
        check_int(owner, "conv_layers", conv_layers)
        check_int(owner, "hidden_ch", hidden_ch)
        check_int(owner, "depth", depth)
        check_int(owner, "heads", heads)
        check_divisible(owner, "dim", dim, "heads", heads)
        check_prob(owner, "emb_dropout", emb_dropout)
        self.pool = check_choice(owner, "pool", pool, ("cls", "mean"))
        self.seq_len = check_int(owner, "seq_len", seq_len)
        has_cls = pool == "cls"
        self.backbone = ConvBackbone(in_channels, hidden_ch, conv_layers)
        self.embed = nn.Linear(hidden_ch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if has_cls else None
        self.pos_embedding = nn.Parameter(torch.randn(1, seq_len + int(has_cls), dim) * 0.02)
        self.emb_drop = dropout_layer(emb_dropout)
        self.layers = nn.ModuleList([TransformerEncoderLayer(dim, heads, mlp_dim, dropout, norm_first=norm_first,
                                                             has_cls=has_cls) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.num_features = dim
        self.head = nn.Linear(dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, T) -> (B, hidden_ch, T) -> tokens (B, T, dim) [+ CLS] -> encoder -> (B, dim)
        if x.shape[-1] != self.seq_len:
            raise ConfigError(f"har_transformer was built for windows of {self.seq_len} samples "
                              f"(its positional embedding is learned per step), got {x.shape[-1]}; "
                              f"window the input to {self.seq_len} samples")
        tokens = self.embed(self.backbone(x).transpose(1, 2))
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = self.emb_drop(tokens + self.pos_embedding)
        for layer in self.layers:
            tokens = self.maybe_checkpoint(layer, tokens)
        tokens = self.norm(tokens)
        return tokens[:, 0] if self.cls_token is not None else tokens.mean(dim=1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        # (B, dim) -> (B, num_classes)
        return self.head(features)


register("har_transformer", ModelSpec(
    name="har_transformer",
    builder=HarTransformer,
    input_kind="imu",
    description="Human-activity Transformer: stacked 1x1 Conv1d + GELU backbone, linear embedding with "
                "learned positions and a CLS token, Transformer encoder (tuned on WISDM).",
    hparams=(
        HParam("conv_layers", "int", low=1, high=4),
        HParam("hidden_ch", "int", low=3, high=64),
        HParam("dim", "int", low=16, high=256),
        HParam("depth", "int", low=1, high=8),
        HParam("heads", "int", low=1, high=10),
        HParam("mlp_dim", "int", low=32, high=2048, log=True),
        HParam("dropout", "float", low=0.0, high=0.8),
        HParam("emb_dropout", "float", low=0.0, high=0.8),
        HParam("pool", "choice", choices=("cls", "mean")),
        HParam("norm_first", "bool"),
    ),
    has_attention=True,
    supports_checkpointing=True,
    default_input=(6, 128),
    constraints=dim_divisible_by_heads,
))
