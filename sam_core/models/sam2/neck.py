"""FPN neck: lateral 1x1 convolutions bring every trunk stage to ``d_model`` channels, and selected levels
add the upsampled level below them (top-down)."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.models.sam2.position_encoding import PositionEmbeddingSine


class FpnNeck(nn.Module):
    """Feature pyramid without output convolutions.

    Args:
        d_model: Output channels of every level.
        backbone_channel_list: Channels of the trunk stages, lowest resolution first.
        fpn_top_down_levels: Levels (0 = highest resolution) that add the upsampled coarser level; the
            others are the lateral projection alone.
        fpn_interp_mode: Upsampling mode, "nearest" or "bilinear".
    """

    def __init__(self, d_model: int, backbone_channel_list: tuple[int, ...], fpn_top_down_levels: tuple[int, ...],
                 fpn_interp_mode: str = "nearest") -> None:
        super().__init__()
        self.d_model = d_model
        self.position_encoding = PositionEmbeddingSine(d_model)
        # convs[0] projects the lowest-resolution stage (Meta's order and names).
        self.convs = nn.ModuleList(
            nn.Sequential(OrderedDict(conv=nn.Conv2d(channels, d_model, kernel_size=1)))
            for channels in backbone_channel_list
        )
        self.backbone_channel_list = tuple(backbone_channel_list)
        self.fpn_top_down_levels = tuple(fpn_top_down_levels)
        self.fpn_interp_mode = fpn_interp_mode

    def forward(self, stage_outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Trunk stage outputs (B, C_s, H_s, W_s), highest resolution first -> (B, d_model, H_s, W_s) each."""
        levels = len(stage_outputs)
        outputs: list[torch.Tensor] = [stage_outputs[0]] * levels
        previous = None
        for level in reversed(range(levels)):  # coarse to fine
            lateral = self.convs[levels - 1 - level](stage_outputs[level])
            if previous is not None and level in self.fpn_top_down_levels:
                # The reference upsamples in float32; the sum is cast back to the lateral's dtype here.
                align = None if self.fpn_interp_mode == "nearest" else False
                top_down = F.interpolate(previous.float(), scale_factor=2.0, mode=self.fpn_interp_mode,
                                         align_corners=align)
                lateral = (lateral + top_down).to(lateral.dtype)
            outputs[level] = previous = lateral
        return outputs
