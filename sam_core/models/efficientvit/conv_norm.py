"""ConvNormAct: a convolution, an optional BatchNorm and an optional activation, the unit every EfficientViT
block is made of; with BatchNorm folded into the convolution on the fast path."""

from __future__ import annotations

import torch
from torch import nn

from sam_core.layers.batch_norm_folding import FoldsBatchNorm


def tanh_gelu() -> nn.Module:
    """EfficientViT's "gelu": the tanh approximation (the released weights were trained with it)."""
    return nn.GELU(approximate="tanh")


class ConvNormAct(FoldsBatchNorm):
    """Conv2d with "same" padding, then BatchNorm (optional), then tanh-GELU (optional).

    In eval mode the fast path runs one convolution with the BatchNorm folded in (see
    :class:`~sam_core.layers.batch_norm_folding.FoldsBatchNorm`): the same affine map, without a pass over the
    activations. Training mode always runs the plain path, as BatchNorm then normalises with batch statistics.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, bias: bool = False, norm: bool = True, act: bool = False,
                 norm_eps: float = 1e-6) -> None:
        """
        Args:
            in_channels, out_channels: channels in and out.
            kernel_size: odd square kernel, padded to keep the size (at stride 1).
            stride: convolution stride.
            groups: convolution groups (``in_channels`` for a depthwise convolution).
            bias: whether the convolution has a bias.
            norm: whether a BatchNorm follows.
            act: whether a tanh-GELU ends the unit.
            norm_eps: the BatchNorm's eps.
        """
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups,
                              bias=bias)
        self.norm = nn.BatchNorm2d(out_channels, eps=norm_eps) if norm else None
        self.act = tanh_gelu() if act else None

    def conv_and_norm(self) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
        return self.conv, self.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None and self.folds():
            x = self.folded_conv(x)
        else:
            x = self.conv(x)
            if self.norm is not None:
                x = self.norm(x)
        return x if self.act is None else self.act(x)
