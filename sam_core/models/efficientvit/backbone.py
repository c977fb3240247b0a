"""The EfficientViT backbone of EfficientViT-SAM ("EfficientViTLargeBackbone" in the reference): a stride-2 stem
and convolution stages, then stages of EfficientViT blocks; every stage after the first halves the resolution."""

from __future__ import annotations

import torch
from torch import nn

from sam_core.models.efficientvit.blocks import CONV_BLOCKS, Chain, Residual
from sam_core.models.efficientvit.config import EfficientViTSamConfig, attention_scale
from sam_core.models.efficientvit.conv_norm import ConvNormAct
from sam_core.models.efficientvit.lite_mla import EfficientViTBlock


class EfficientViTBackbone(nn.Module):
    """Image (B, 3, S, S) -> every stage's output; stage i has ``widths[i]`` channels at S / 2**(i + 1)."""

    def __init__(self, config: EfficientViTSamConfig) -> None:
        """
        Args:
            config: the stages' widths, depths, block kinds, expansion ratios and norm placement.
        """
        super().__init__()
        eps = config.norm_eps
        stages = []
        # Stage 0: a strided 3x3 convolution, then residual blocks at that width.
        width = config.widths[0]
        stem = [ConvNormAct(3, width, 3, 2, act=True, norm_eps=eps)]
        stem += [Residual(self._conv_block(config, 0, width, width, 1)) for _ in range(config.depths[0])]
        stages.append(Chain(stem))
        for index in range(1, len(config.widths)):
            out = config.widths[index]
            kind = config.block_kinds[index]
            scale = attention_scale(kind)
            # Each stage opens with a strided inverted bottleneck (4x the stage's expansion) without a shortcut;
            # attention stages open with an MBConv.
            down_kind = "mb" if scale is not None else kind
            expand = config.expand_ratios[index]
            blocks = [Residual(self._conv_block(config, index, width, out, 2, down_kind, 4 * expand), shortcut=False)]
            for _ in range(config.depths[index]):
                if scale is None:
                    blocks.append(Residual(self._conv_block(config, index, out, out, 1)))
                else:
                    blocks.append(EfficientViTBlock(out, config.attention_head_dim, expand, (scale,), eps))
            stages.append(Chain(blocks))
            width = out
        self.stages = nn.ModuleList(stages)

    @staticmethod
    def _conv_block(config: EfficientViTSamConfig, stage: int, in_channels: int, out_channels: int, stride: int,
                    kind: str | None = None, expand_ratio: float | None = None) -> nn.Module:
        block = CONV_BLOCKS[kind or config.block_kinds[stage]]
        expand = config.expand_ratios[stage] if expand_ratio is None else expand_ratio
        return block(in_channels, out_channels, stride, expand, config.fewer_norm[stage], config.norm_eps)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs
