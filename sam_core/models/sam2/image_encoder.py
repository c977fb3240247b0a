"""SAM 2's image encoder: the Hiera trunk and the FPN neck, the coarsest levels dropped ("scalp"). SAM 3's is
the same wiring of its ViT and simple FPN neck."""

from __future__ import annotations

import torch
from torch import nn

from sam_core.models.sam2.hiera import Hiera
from sam_core.models.sam2.neck import FpnNeck


class ImageEncoder(nn.Module):
    """Multi-scale image features, highest resolution first.

    Args:
        trunk: The backbone (SAM 2's Hiera, SAM 3's ViT); its ``channel_list`` gives its outputs' channels.
        neck: The FPN neck (``backbone_channel_list`` must be the trunk's), with a ``position_encoding``.
        scalp: How many of the lowest-resolution levels to drop from the output.
    """

    def __init__(self, trunk: Hiera | nn.Module, neck: FpnNeck | nn.Module, scalp: int = 0) -> None:
        super().__init__()
        if tuple(trunk.channel_list) != tuple(neck.backbone_channel_list):
            raise ValueError(f"trunk channels {trunk.channel_list} differ from the neck's "
                             f"{neck.backbone_channel_list}")
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) normalised images -> the "backbone_fpn" levels, (B, d_model, S / 4 / 2^l, ...) for
        l = 0 .. levels - 1 - scalp; the last is the "vision_features" the decoder reads."""
        features = self.neck(self.trunk(images))
        return features[: len(features) - self.scalp]

    def position_encodings(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """The "vision_pos_enc" of each feature level (only the video memory reads them)."""
        return [self.neck.position_encoding(feature) for feature in features]
