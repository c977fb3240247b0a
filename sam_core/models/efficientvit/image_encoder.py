"""EfficientViT-SAM's image encoder: the EfficientViT backbone, the SAM neck that merges three of its stages
into the embedding grid, and a final LayerNorm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.layers.norms import LayerNorm2d
from sam_core.models.efficientvit.backbone import EfficientViTBackbone
from sam_core.models.efficientvit.blocks import Chain, FusedMBConv, Residual
from sam_core.models.efficientvit.config import EfficientViTSamConfig
from sam_core.models.efficientvit.conv_norm import ConvNormAct


class ResizeTo(nn.Module):
    """Bicubic resize (half-pixel centres) of a feature map to a fixed square size; the identity at that size."""

    def __init__(self, size: int) -> None:
        """
        Args:
            size: side of the output.
        """
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] == (self.size, self.size):
            return x
        return F.interpolate(x, (self.size, self.size), mode="bicubic", align_corners=False)


class SamNeck(nn.Module):
    """Backbone stages -> embedding: each chosen stage projected (1x1 conv + BatchNorm) to ``neck_width`` and
    resized to the embedding grid, the maps summed, refined by residual FusedMBConv blocks and projected (1x1
    conv with bias) to ``prompt_embed_dim``."""

    def __init__(self, config: EfficientViTSamConfig) -> None:
        """
        Args:
            config: which stages feed the neck, its width, depth and expansion, the embedding grid and channels.
        """
        super().__init__()
        eps, width = config.norm_eps, config.neck_width
        self.stages = config.neck_stages
        self.input_ops = nn.ModuleList(
            Chain([ConvNormAct(config.widths[stage], width, 1, norm_eps=eps), ResizeTo(config.embedding_size)])
            for stage in config.neck_stages)
        self.middle = Chain(Residual(FusedMBConv(width, width, 1, config.neck_expand_ratio, False, eps))
                            for _ in range(config.neck_depth))
        self.output_ops = nn.ModuleList([Chain([ConvNormAct(width, config.prompt_embed_dim, 1, bias=True,
                                                            norm=False)])])

    def forward(self, stage_outputs: list[torch.Tensor]) -> torch.Tensor:
        maps = [op(stage_outputs[stage]) for stage, op in zip(self.stages, self.input_ops)]
        merged = maps[-1]
        for feature_map in reversed(maps[:-1]):  # the reference's order of the additions: a + (b + c)
            merged = feature_map + merged
        return self.output_ops[0](self.middle(merged))


class EfficientViTSamImageEncoder(nn.Module):
    """Image (B, 3, S, S) normalised -> embedding (B, prompt_embed_dim, embedding_size, embedding_size)."""

    def __init__(self, config: EfficientViTSamConfig) -> None:
        """
        Args:
            config: the backbone's and the neck's shapes.
        """
        super().__init__()
        self.img_size = config.encoder_image_size
        self.backbone = EfficientViTBackbone(config)
        self.neck = SamNeck(config)
        self.norm = LayerNorm2d(config.prompt_embed_dim, eps=config.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.neck(self.backbone(x)))
