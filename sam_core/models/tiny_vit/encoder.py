"""TinyViT as SAM's image encoder: stem, four stages and SAM's neck to the 256-channel embedding."""

from __future__ import annotations

import math

import torch
from torch import nn

from sam_core.layers.norms import LayerNorm2d
from sam_core.models.tiny_vit.block import TinyViTBlock
from sam_core.models.tiny_vit.config import TinyViTConfig
from sam_core.models.tiny_vit.conv_blocks import ConvStem, MBConv, PatchMerging


class Stage(nn.Module):
    """A stage's blocks, then (except for the last stage) a patch merging into the next stage's width.

    Args:
        blocks: the stage's blocks, MBConvs on (B, C, H, W) or TinyViT blocks on tokens (B, H*W, C).
        downsample: the patch merging, or None.
        resolution: side of the stage's token grid (to turn tokens back into a map for the merging).
    """

    def __init__(self, blocks: list[nn.Module], downsample: PatchMerging | None, resolution: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample
        self.resolution = resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.downsample is None:
            return x
        if x.dim() == 3:  # tokens -> map
            x = x.transpose(1, 2).reshape(x.shape[0], -1, self.resolution, self.resolution)
        return self.downsample(x)


class TinyViT(nn.Module):
    """TinyViT image encoder with SAM's neck: (B, 3, S, S) -> (B, out_chans, S/16, S/16).

    Parameter names are MobileSAM's (``patch_embed``, ``layers``, ``neck``); TinyViT's classifier head is
    not part of it.

    Args:
        config: the encoder's shapes.
    """

    def __init__(self, config: TinyViTConfig) -> None:
        super().__init__()
        self.img_size = config.image_size
        dims = config.embed_dims
        self.patch_embed = ConvStem(3, dims[0])
        stages = []
        for stage, depth in enumerate(config.depths):
            resolution = config.stage_resolution(stage)
            if stage == 0:
                blocks: list[nn.Module] = [MBConv(dims[0], config.mbconv_expand_ratio) for _ in range(depth)]
            else:
                blocks = [TinyViTBlock(dims[stage], resolution, config.num_heads[stage], config.window_sizes[stage],
                                       config.mlp_ratio, config.local_conv_size) for _ in range(depth)]
            last = stage == len(config.depths) - 1
            # The merging into the last stage keeps stride 16, where SAM's decoder reads the embedding.
            downsample = None if last else PatchMerging(dims[stage], dims[stage + 1], 1 if stage == 2 else 2)
            stages.append(Stage(blocks, downsample, resolution))
        self.layers = nn.ModuleList(stages)
        self.grid = config.stage_resolution(3)
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], config.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(config.out_chans),
            nn.Conv2d(config.out_chans, config.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(config.out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_intermediate(x, None)[0]

    def forward_with_intermediate(self, x: torch.Tensor,
                                  stage: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The embedding and the tokens after stage ``stage`` (with its patch merging) as a channels-last
        grid (B, h, w, C), or None when ``stage`` is None."""
        x = self.patch_embed(x)
        kept = None
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index == stage:
                side = math.isqrt(x.shape[1])
                kept = x.view(x.shape[0], side, side, -1) if x.dim() == 3 else x.permute(0, 2, 3, 1)
        grid = x.transpose(1, 2).reshape(x.shape[0], -1, self.grid, self.grid)
        return self.neck(grid), kept
