"""TinyViT's convolutional pieces: the stride-4 stem, the MBConv block of stage 0, and patch merging."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.models.tiny_vit.conv_bn import ConvBN


class ConvStem(nn.Module):
    """Two 3x3 stride-2 ConvBN layers with a GELU between them: image -> (B, embed_dim, H/4, W/4).

    Args:
        in_chans: image channels.
        embed_dim: output channels (the first stage's width).
    """

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(ConvBN(in_chans, embed_dim // 2, 3, stride=2), nn.GELU(),
                                 ConvBN(embed_dim // 2, embed_dim, 3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, 3x3 depthwise, 1x1 projection (GELUs between), added to the
    input, then a GELU. Works on (B, C, H, W).

    Args:
        dim: input and output channels.
        expand_ratio: hidden channels as a multiple of ``dim``.
    """

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(self.conv3(hidden) + x)


class PatchMerging(nn.Module):
    """1x1 ConvBN to the next width, a 3x3 depthwise ConvBN with ``stride``, a 1x1 ConvBN (GELUs between):
    (B, C, H, W) -> tokens (B, H' * W', out_dim).

    Args:
        dim: input channels.
        out_dim: output channels.
        stride: 2 to halve the resolution, 1 to keep it (before TinyViT-SAM's last stage).
    """

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)
