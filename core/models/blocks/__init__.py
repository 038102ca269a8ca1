"""Building blocks: short nn.Modules, each with its shape in a comment."""
from core.models.blocks.conv import DepthwiseSeparableConv1d, DilatedConv1d, GroupedConv1d, TransposedConv1d
from core.models.blocks.residual import BasicBlock1d, BasicBlock2d, Bottleneck1d, Bottleneck2d

__all__ = ["BasicBlock1d", "BasicBlock2d", "Bottleneck1d", "Bottleneck2d", "DepthwiseSeparableConv1d",
           "DilatedConv1d", "GroupedConv1d", "TransposedConv1d"]
