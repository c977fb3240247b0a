"""EfficientViT's convolution blocks (MBConv, FusedMBConv, ResBlock) and the containers the checkpoints name
(``op_list``, ``main``)."""

from __future__ import annotations

from collections.abc import Iterable

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


class MBConv(nn.Module):
    """Inverted bottleneck: 1x1 expansion, 3x3 depthwise (strided), 1x1 projection; GELU after the first two."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float, fewer_norm: bool,
                 norm_eps: float) -> None:
        """
        Args:
            in_channels, out_channels: channels in and out.
            stride: the depthwise convolution's stride.
            expand_ratio: hidden width as a multiple of ``in_channels``.
            fewer_norm: BatchNorm on the projection only (biases on the other two) instead of on all three.
            norm_eps: the BatchNorms' eps.
        """
        super().__init__()
        mid = round(in_channels * expand_ratio)
        self.inverted_conv = ConvNormAct(in_channels, mid, 1, bias=fewer_norm, norm=not fewer_norm, act=True,
                                         norm_eps=norm_eps)
        self.depth_conv = ConvNormAct(mid, mid, 3, stride, groups=mid, bias=fewer_norm, norm=not fewer_norm,
                                      act=True, norm_eps=norm_eps)
        self.point_conv = ConvNormAct(mid, out_channels, 1, norm_eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(self.inverted_conv(x)))


class FusedMBConv(nn.Module):
    """MBConv with the expansion and the depthwise convolution fused into one full 3x3 convolution."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float, fewer_norm: bool,
                 norm_eps: float) -> None:
        """
        Args:
            in_channels, out_channels: channels in and out.
            stride: the 3x3 convolution's stride.
            expand_ratio: hidden width as a multiple of ``in_channels``.
            fewer_norm: BatchNorm on the projection only (a bias on the 3x3) instead of on both.
            norm_eps: the BatchNorms' eps.
        """
        super().__init__()
        mid = round(in_channels * expand_ratio)
        self.spatial_conv = ConvNormAct(in_channels, mid, 3, stride, bias=fewer_norm, norm=not fewer_norm, act=True,
                                        norm_eps=norm_eps)
        self.point_conv = ConvNormAct(mid, out_channels, 1, norm_eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.spatial_conv(x))


class ResBlock(nn.Module):
    """Two 3x3 convolutions, GELU between them."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float, fewer_norm: bool,
                 norm_eps: float) -> None:
        """
        Args:
            in_channels, out_channels: channels in and out.
            stride: the first convolution's stride.
            expand_ratio: hidden width as a multiple of ``in_channels``.
            fewer_norm: BatchNorm on the second convolution only (a bias on the first) instead of on both.
            norm_eps: the BatchNorms' eps.
        """
        super().__init__()
        mid = round(in_channels * expand_ratio)
        self.conv1 = ConvNormAct(in_channels, mid, 3, stride, bias=fewer_norm, norm=not fewer_norm, act=True,
                                 norm_eps=norm_eps)
        self.conv2 = ConvNormAct(mid, out_channels, 3, norm_eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


CONV_BLOCKS: dict[str, type[nn.Module]] = {"res": ResBlock, "fmb": FusedMBConv, "mb": MBConv}
"""Block kind in ``EfficientViTSamConfig.block_kinds`` -> its class."""
