"""EfficientViT's convolution blocks (MBConv, FusedMBConv, ResBlock) and the containers the checkpoints name
(``op_list``, ``main``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import torch
from torch import nn

from sam_core.models.efficientvit.conv_norm import ConvNormAct


class Chain(nn.Module):
    """Modules applied one after the other (held as ``op_list``, the released checkpoints' name)."""

    def __init__(self, ops: Iterable[nn.Module]) -> None:
        """
        Args:
            ops: the modules, in order.
        """
        super().__init__()
        self.op_list = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.op_list:
            x = op(x)
        return x


class Residual(nn.Module):
    """``main(x) + x``, or ``main(x)`` alone for a block that changes the shape."""

    def __init__(self, main: nn.Module, shortcut: bool = True) -> None:
        """
        Args:
            main: the block.
            shortcut: whether the input is added to its output.
        """
        super().__init__()
        self.main = main
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + x if self.shortcut else self.main(x)


class ConvBlock(nn.Module):
    """Base of EfficientViT's convolution blocks: ConvNormAct units run one after the other, each block declared
    by its units. The units before the last (``inner_units``) end with a GELU and carry the stride (their 3x3
    ones); the last (``last_unit``) projects to ``out_channels``, with a BatchNorm and no activation.

    Args:
        in_channels, out_channels: channels in and out.
        stride: the stride of the 3x3 convolution(s) before the last unit.
        expand_ratio: hidden width as a multiple of ``in_channels``.
        fewer_norm: BatchNorm on the last unit only (biases on the others) instead of on all of them.
        norm_eps: the BatchNorms' eps.
    """

    inner_units: ClassVar[tuple[tuple[str, int, bool], ...]]
    """(parameter name, kernel size, depthwise) of each unit before the last, in order."""
    last_unit: ClassVar[tuple[str, int]]
    """(parameter name, kernel size) of the last unit."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float, fewer_norm: bool,
                 norm_eps: float) -> None:
        super().__init__()
        mid = round(in_channels * expand_ratio)
        channels = in_channels
        for name, kernel_size, depthwise in self.inner_units:
            self.add_module(name, ConvNormAct(channels, mid, kernel_size, stride if kernel_size > 1 else 1,
                                              groups=channels if depthwise else 1, bias=fewer_norm,
                                              norm=not fewer_norm, act=True, norm_eps=norm_eps))
            channels = mid
        name, kernel_size = self.last_unit
        self.add_module(name, ConvNormAct(mid, out_channels, kernel_size, norm_eps=norm_eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.children():
            x = unit(x)
        return x


class MBConv(ConvBlock):
    """Inverted bottleneck: 1x1 expansion, 3x3 depthwise (strided), 1x1 projection; GELU after the first two."""

    inner_units = (("inverted_conv", 1, False), ("depth_conv", 3, True))
    last_unit = ("point_conv", 1)


class FusedMBConv(ConvBlock):
    """MBConv with the expansion and the depthwise convolution fused into one full 3x3 convolution."""

    inner_units = (("spatial_conv", 3, False),)
    last_unit = ("point_conv", 1)


class ResBlock(ConvBlock):
    """Two 3x3 convolutions, GELU between them."""

    inner_units = (("conv1", 3, False),)
    last_unit = ("conv2", 3)


CONV_BLOCKS: dict[str, type[nn.Module]] = {"res": ResBlock, "fmb": FusedMBConv, "mb": MBConv}
"""Block kind in ``EfficientViTSamConfig.block_kinds`` -> its class."""
