"""Building blocks: short nn.Modules, each with its shape in a comment.

Layers that produce attention maps (`MultiHeadSelfAttention`, `TemporalAttentionPooling`)
subclass `core.models.attention.AttentionSource`, so `capture_attention(model)` sees them.
"""
from core.models.blocks.conformer import ConformerBlock, ConformerConvModule
from core.models.blocks.conv import DepthwiseSeparableConv1d, DilatedConv1d, GroupedConv1d, TransposedConv1d
from core.models.blocks.convnext import ConvNeXtBlock1d, DropPath
from core.models.blocks.gates import CBAM1d, SqueezeExcite1d, SqueezeExcite2d
from core.models.blocks.mhsa import FeedForward, MultiHeadSelfAttention, TransformerEncoderLayer
from core.models.blocks.pooling import TemporalAttentionPooling
from core.models.blocks.residual import BasicBlock1d, BasicBlock2d, Bottleneck1d, Bottleneck2d

# Blocks no zoo model uses, and why (a test checks every other block is reachable from a
# model's hyperparameters; docs/BLOCKS.md lists which model offers which block).
NOT_IN_ZOO = {
    "TransposedConv1d": "upsamples; every zoo model is a classifier that ends in pooling, so nothing in it "
                        "upsamples. It is kept for decoders, segmentation heads and autoencoders built on these blocks.",
}

__all__ = ["BasicBlock1d", "BasicBlock2d", "Bottleneck1d", "Bottleneck2d", "CBAM1d", "ConformerBlock",
           "ConformerConvModule", "ConvNeXtBlock1d", "DepthwiseSeparableConv1d", "DilatedConv1d", "DropPath",
           "FeedForward", "GroupedConv1d", "MultiHeadSelfAttention", "SqueezeExcite1d", "SqueezeExcite2d",
           "TemporalAttentionPooling", "TransformerEncoderLayer", "TransposedConv1d"]
