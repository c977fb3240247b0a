"""RepViT, EdgeSAM's image encoder: a convolutional stem, four stages of RepViT blocks, and a neck that fuses
stages 2 and 3 into SAM's 256-channel embedding at stride 16."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths_enabled
from sam_core.layers.derived_weights import DerivedWeights, HoldsDerivedWeights, records_gradient
from sam_core.layers.norms import LayerNorm2d
from sam_core.models.edge_sam.config import RepViTConfig
from sam_core.models.edge_sam.rep_vit_blocks import RepViTBlock, from_channels_last, to_channels_last
from sam_core.models.tiny_vit.conv_bn import ConvBN


class Stage3Projection(nn.Module):
    """Stage 3's 1x1 projection, under EdgeSAM's name (``fuse_stage3.op_list.0``); the x2 upsampling that
    follows it is the encoder's, which knows the mode."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.op_list = nn.Sequential(nn.Conv2d(in_chans, out_chans, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op_list(x)


class RepViT(HoldsDerivedWeights):
    """EdgeSAM's RepViT encoder (RepViT-M1 with the released config).

    ``features[0]`` is the stem (two 3x3 stride-2 conv-BNs with a GELU between), ``features[1:]`` the blocks of
    all stages in order. The neck::

        x = fuse_stage2(stage2) + upsample_x2(fuse_stage3(stage3))     # both 1x1 convs to out_chans
        x = LN(conv3x3(LN(conv1x1(x))))                                 # neck.0 .. neck.3

    Fast path (eval mode, ``sam_core.fast_paths`` on): channels-last activations, BatchNorms folded into their
    convolutions, the RepVGG branches merged, and the neck's first 1x1 convolution composed into both fuse
    projections (it is linear and commutes with the per-channel upsampling), so the sum comes out projected.

    Args:
        config: the encoder's shapes.
    """

    def __init__(self, config: RepViTConfig) -> None:
        super().__init__()
        self.config = config
        self.img_size = config.image_size
        stem_dim = config.embed_dims[0]
        stem = nn.Sequential(ConvBN(3, stem_dim // 2, 3, stride=2), nn.GELU(), ConvBN(stem_dim // 2, stem_dim, 3, 2))
        blocks = [RepViTBlock(in_chans, out_chans, use_se) for in_chans, out_chans, use_se in config.blocks()]
        self.features = nn.ModuleList([stem, *blocks])
        # Index in ``features`` of the last block of stages 2 and 3, whose outputs the neck reads.
        ends = [sum(config.depths[: stage + 1]) for stage in range(4)]
        self.stage_ends = (ends[2], ends[3])
        out = config.out_chans
        self.fuse_stage2 = nn.Conv2d(config.embed_dims[2], out, kernel_size=1, bias=False)
        self.fuse_stage3 = Stage3Projection(config.embed_dims[3], out)
        self.neck = nn.Sequential(
            nn.Conv2d(out, out, kernel_size=1, bias=False),
            LayerNorm2d(out),
            nn.Conv2d(out, out, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out),
        )
        self._composed = DerivedWeights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed images (B, 3, S, S) -> embeddings (B, out_chans, S/16, S/16)."""
        if fast_paths_enabled() and not self.training:
            return self._forward_fast(x)
        x = self.features[0](x)
        stage2 = None
        for index in range(1, len(self.features)):
            x = self.features[index](x)
            if index == self.stage_ends[0]:
                stage2 = x
        fused = self.fuse_stage2(stage2) + self._upsample(self.fuse_stage3(x))
        return self.neck(fused)

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode=self.config.upsample_mode,
                             align_corners=False if self.config.upsample_mode != "nearest" else None)

    def _forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """The fast path: channels-last throughout (the stem's convolutions on the NCHW view, the blocks and the
        neck's norms on (B, H, W, C) tensors), NCHW out."""
        x = x.contiguous(memory_format=torch.channels_last)
        x = to_channels_last(self.features[0](x))  # as a module call, so that forward hooks see it
        stage2 = None
        for index in range(1, len(self.features)):
            x = self.features[index](x, channels_last=True)
            if index == self.stage_ends[0]:
                stage2 = x
        project2, project3 = self.composed_projections()
        fused = to_channels_last(self._upsample(from_channels_last(F.linear(x, project3))))
        projected2 = F.linear(stage2, project2)
        fused = fused + projected2 if records_gradient(fused) else fused.add_(projected2)
        _, norm1, conv, norm2 = self.neck
        fused = F.layer_norm(fused, norm1.normalized_shape, norm1.weight, norm1.bias, norm1.eps)
        fused = to_channels_last(conv(from_channels_last(fused)))
        fused = F.layer_norm(fused, norm2.normalized_shape, norm2.weight, norm2.bias, norm2.eps)
        return from_channels_last(fused).contiguous()  # callers get the usual NCHW layout

    def composed_projections(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Matrices (out, in) of ``neck[0]`` applied after ``fuse_stage2`` and after ``fuse_stage3``'s projection."""
        neck = self.neck[0].weight.flatten(1)  # (out, out)
        fuse2, fuse3 = self.fuse_stage2.weight, self.fuse_stage3.op_list[0].weight

        def compose() -> tuple[torch.Tensor, torch.Tensor]:
            return tuple(neck @ fuse.flatten(1) for fuse in (fuse2, fuse3))

        return self._composed.get([self.neck[0].weight, fuse2, fuse3], compose)
