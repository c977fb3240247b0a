"""EdgeTAM's trunk: timm's RepViT (``repvit_m1``) as a feature extractor, built from EdgeSAM's RepViT blocks.

timm's downsampling unit (a stride-1 block, a stride-2 depthwise conv-BN, a 1x1 conv-BN and a residual
feed-forward) is two of EdgeSAM's blocks: a stride-1 block and a downsampling block, so the whole trunk is
EdgeSAM's ``features`` list (stem, then blocks) without its fused neck; it returns the four stage outputs,
which timm takes before each downsampling unit.
"""

from __future__ import annotations

import torch
from torch import nn

from sam_core.fast_paths import fast_paths_enabled
from sam_core.models.edge_sam.rep_vit_blocks import RepViTBlock, from_channels_last, to_channels_last
from sam_core.models.edgetam.config import EdgeTamConfig
from sam_core.models.tiny_vit.conv_bn import ConvBN


class RepViTTrunk(nn.Module):
    """RepViT stage outputs for SAM 2's FPN neck.

    Fast path (eval mode, ``sam_core.fast_paths`` on): the blocks run on channels-last activations with their
    BatchNorms folded (EdgeSAM's :class:`~sam_core.models.edge_sam.rep_vit_blocks.RepViTBlock` fast path).

    Args:
        config: the model's shapes (``repvit_embed_dims``, ``repvit_depths``).
    """

    def __init__(self, config: EdgeTamConfig) -> None:
        super().__init__()
        rep_vit = config.rep_vit()
        stem_dim = rep_vit.embed_dims[0]
        stem = nn.Sequential(ConvBN(3, stem_dim // 2, 3, stride=2), nn.GELU(), ConvBN(stem_dim // 2, stem_dim, 3, 2))
        blocks = [RepViTBlock(in_chans, out_chans, use_se) for in_chans, out_chans, use_se in rep_vit.blocks()]
        self.features = nn.ModuleList([stem, *blocks])
        self.stage_outputs = config.stage_output_blocks()
        # Lowest resolution first, as SAM 2's neck lists them.
        self.channel_list = tuple(reversed(rep_vit.embed_dims))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Preprocessed images (B, 3, S, S) -> [(B, C_s, S / 4 / 2^s, S / 4 / 2^s) for s = 0..3]."""
        fast = fast_paths_enabled() and not self.training
        if fast:
            x = to_channels_last(self.features[0](x.contiguous(memory_format=torch.channels_last)))
        else:
            x = self.features[0](x)
        outputs = []
        for index in range(1, self.stage_outputs[-1] + 1):
            x = self.features[index](x, channels_last=fast)  # a module call, so that forward hooks see it
            if index in self.stage_outputs:
                outputs.append(from_channels_last(x) if fast else x)
        return outputs
