"""SAM 3's tracker neck: a ViTDet "simple FPN" that makes every feature level from the ViT's one output grid,
by transposed convolutions (4x, 2x) or as it is (1x), each then projected by a 1x1 and a 3x3 convolution."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from sam_core.models.sam2.position_encoding import PositionEmbeddingSine


def _level(dim: int, d_model: int, scale: float) -> nn.Sequential:
    """One level's layers, under Meta's names."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if scale == 4.0:
        layers["dconv_2x2_0"] = nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2)
        layers["gelu"] = nn.GELU()
        layers["dconv_2x2_1"] = nn.ConvTranspose2d(dim // 2, dim // 4, kernel_size=2, stride=2)
        width = dim // 4
    elif scale == 2.0:
        layers["dconv_2x2"] = nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2)
        width = dim // 2
    elif scale == 1.0:
        width = dim
    else:
        raise ValueError(f"neck scale {scale} is not 4, 2 or 1")
    layers["conv_1x1"] = nn.Conv2d(width, d_model, kernel_size=1)
    layers["conv_3x3"] = nn.Conv2d(d_model, d_model, kernel_size=3, padding=1)
    return nn.Sequential(layers)


class SimpleFpnNeck(nn.Module):
    """Feature levels at the given scales of the backbone's grid.

    Args:
        dim: Channels of the backbone's output.
        d_model: Output channels of every level.
        scales: Scale of each level, highest resolution first (SAM 3's tracker: 4, 2, 1).
    """

    def __init__(self, dim: int, d_model: int, scales: tuple[float, ...] = (4.0, 2.0, 1.0)) -> None:
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = (dim,)
        self.position_encoding = PositionEmbeddingSine(d_model)
        self.convs = nn.ModuleList(_level(dim, d_model, scale) for scale in scales)

    def forward(self, backbone_outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """[(B, dim, H, W)] (the backbone's last output is used) -> [(B, d_model, scale * H, scale * W)]
        per level."""
        x = backbone_outputs[-1]
        return [conv(x) for conv in self.convs]
