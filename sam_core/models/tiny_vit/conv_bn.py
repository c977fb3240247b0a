"""A bias-free convolution followed by BatchNorm, foldable into one convolution for inference."""

from __future__ import annotations

import torch
from torch import nn

from sam_core.layers.batch_norm_folding import FoldsBatchNorm


class ConvBN(FoldsBatchNorm):
    """``bn(c(x))``: TinyViT's convolution unit, under its parameter names (``c``, ``bn``).

    In eval mode with the fast paths on, the BatchNorm is folded into the convolution (see
    :class:`~sam_core.layers.batch_norm_folding.FoldsBatchNorm`); with the fast paths off, or in training
    mode, the two layers run as they are.

    Args:
        in_chans: input channels.
        out_chans: output channels.
        kernel_size: side of the square kernel.
        stride: stride of the convolution.
        groups: convolution groups (``in_chans`` for a depthwise convolution).
    """

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.c = nn.Conv2d(in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)

    def conv_and_norm(self) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
        return self.c, self.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.folded_conv(x) if self.folds() else self.bn(self.c(x))
