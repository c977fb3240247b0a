"""EdgeSamConfig: a RepViT encoder's shapes plus SAM's prompt encoder and mask decoder shapes, and the config
read back from a checkpoint's tensor shapes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from sam_core.errors import CheckpointError
from sam_core.models.configs import (
    EncoderDecoderConfig,
    SerializableConfig,
    config_named,
    infer_decoder_fields,
    shape_readers,
)

UPSAMPLE_MODES = ("bicubic", "bilinear", "nearest")
# RepViT-M1's blocks with squeeze-excite, numbered over all stages (EdgeSAM's released encoder).
M1_SE_BLOCKS = (0, 4, 8, 10, 12, 14, 16, 18, 20, 24)


@dataclass(frozen=True)
class RepViTConfig(SerializableConfig):
    """Shapes of EdgeSAM's RepViT image encoder. Defaults are RepViT-M1 at 1024 pixels, EdgeSAM's encoder.

    A stride-4 convolutional stem, then four stages of RepViT blocks; the first block of stages 1-3 halves the
    resolution (strides 8, 16, 32). The neck adds stage 2 (stride 16) to stage 3 upsampled x2, each projected
    to ``out_chans`` by a 1x1 convolution, then a 1x1 and a 3x3 convolution with LayerNorms: an
    ``out_chans`` x S/16 x S/16 embedding.

    Args:
        image_size: side of the square input.
        embed_dims: channels of each stage (the stem outputs ``embed_dims[0]``).
        depths: blocks of each stage, the downsampling block of stages 1-3 included.
        se_blocks: indices of the blocks with squeeze-excite, counted over all stages from 0.
        out_chans: channels of the embedding.
        upsample_mode: interpolation of stage 3 in the neck (``F.interpolate`` mode).
    """

    image_size: int = 1024
    embed_dims: tuple[int, ...] = (48, 96, 192, 384)
    depths: tuple[int, ...] = (3, 4, 16, 3)
    se_blocks: tuple[int, ...] = M1_SE_BLOCKS
    out_chans: int = 256
    upsample_mode: str = "bicubic"

    def __post_init__(self) -> None:
        for name in ("embed_dims", "depths", "se_blocks"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        problems = []
        if len(self.embed_dims) != 4 or len(self.depths) != 4:
            problems.append("embed_dims and depths need one entry per stage (4)")
        elif min(self.depths) < 1 or len(set(self.embed_dims)) != 4:
            problems.append(f"every stage needs a block and channels of its own, got depths {list(self.depths)} "
                            f"and embed_dims {list(self.embed_dims)}")
        if any(dim % 2 for dim in self.embed_dims):
            problems.append(f"embed_dims {list(self.embed_dims)} must be even (the stem's first conv has half)")
        if any(not 0 <= index < sum(self.depths) for index in self.se_blocks):
            problems.append(f"se_blocks {list(self.se_blocks)} outside 0..{sum(self.depths) - 1}")
        if self.image_size % 32:
            problems.append(f"image_size {self.image_size} is not a multiple of 32 (stage 3 has stride 32)")
        if self.upsample_mode not in UPSAMPLE_MODES:
            problems.append(f"upsample_mode {self.upsample_mode!r} is not one of {UPSAMPLE_MODES}")
        if problems:
            raise ValueError("invalid RepViTConfig: " + "; ".join(problems))

    def blocks(self) -> list[tuple[int, int, bool]]:
        """(input channels, output channels, squeeze-excite) of every block, in order; a block whose channels
        change has stride 2."""
        blocks, previous = [], self.embed_dims[0]
        for dim, depth in zip(self.embed_dims, self.depths):
            for _ in range(depth):
                blocks.append((previous, dim, len(blocks) in self.se_blocks))
                previous = dim
        return blocks

    def summary(self) -> str:
        return f"rep_vit embed_dims={list(self.embed_dims)}, depths={list(self.depths)}, image_size={self.image_size}"


@dataclass(frozen=True)
class EdgeSamConfig(EncoderDecoderConfig):
    """Every shape of an EdgeSAM model. Defaults are the released ``edge_sam`` (RepViT-M1). The decoder fields
    (:class:`~sam_core.models.configs.DecoderFields`) mean what SamConfig's do; the prompt embedding width is
    the encoder's ``out_chans``."""

    nested_configs = {"encoder": RepViTConfig}

    encoder: RepViTConfig = field(default_factory=RepViTConfig)


# edge_sam_3x is the same network trained three times longer: another file, the same shapes.
EDGE_SAM_CONFIGS: dict[str, EdgeSamConfig] = {"edge_sam": EdgeSamConfig(), "edge_sam_3x": EdgeSamConfig()}

TINY_EDGE_SAM = EdgeSamConfig(
    encoder=RepViTConfig(image_size=256, embed_dims=(16, 32, 48, 64), depths=(2, 2, 3, 2), se_blocks=(0, 2, 3, 5, 8)),
    decoder_mlp_dim=64, iou_head_hidden_dim=32)
"""A small EdgeSAM for fast tests (not in the registry): 256-pixel input, narrow stages with squeeze-excite in
stride-1 and stride-2 blocks, a 16x16 embedding of SAM's 256 channels (which the references' neck fixes)."""


def get_edge_sam_config(name_or_config: str | EdgeSamConfig) -> EdgeSamConfig:
    """Return the config itself, or the registry entry of that name (``ValueError`` for an unknown name)."""
    return config_named(name_or_config, EDGE_SAM_CONFIGS, EdgeSamConfig, "EdgeSAM model")


def infer_rep_vit_config(state_dict: Mapping[str, torch.Tensor], prefix: str, origin: str,
                         image_size: int = 1024) -> RepViTConfig:
    """The RepViTConfig whose shapes produce the tensors under ``prefix`` (e.g. ``"image_encoder."``).

    The input size and the neck's interpolation are not stored in the weights; every released EdgeSAM uses
    1024 pixels and bicubic upsampling, the defaults.
    """
    shape, _ = shape_readers(state_dict, origin, "an EdgeSAM", prefix)
    pattern = re.compile(re.escape(f"{prefix}features.") + r"(\d+)\.")
    numbers = sorted({int(m.group(1)) for name in state_dict if (m := pattern.match(name))})
    if numbers != list(range(len(numbers))) or len(numbers) < 2:
        raise CheckpointError(f"{origin}: RepViT blocks are numbered {numbers[:10]}..., expected 0 (the stem), 1, ...")
    dims, depths, se_blocks = [shape("features.0.2.c.weight")[0]], [0], []
    for index in range(1, len(numbers)):
        dim = shape(f"features.{index}.channel_mixer.m.2.c.weight")[0]
        if dim != dims[-1] and index > 1:
            dims.append(dim)
            depths.append(0)
        depths[-1] += 1
        if prefix + f"features.{index}.token_mixer.1.fc1.weight" in state_dict:
            se_blocks.append(index - 1)
    try:
        return RepViTConfig(image_size=image_size, embed_dims=tuple(dims), depths=tuple(depths),
                            se_blocks=tuple(se_blocks), out_chans=shape("fuse_stage2.weight")[0])
    except ValueError as error:
        raise CheckpointError(f"{origin}: tensor shapes describe no valid RepViT ({error})") from None


def infer_edge_sam_config(state_dict: Mapping[str, torch.Tensor], origin: str = "state dict") -> EdgeSamConfig:
    """The EdgeSamConfig whose shapes produce ``state_dict`` (EdgeSAM's names); see ``infer_rep_vit_config`` for
    what the weights cannot tell."""
    encoder = infer_rep_vit_config(state_dict, "image_encoder.", origin)
    try:
        return EdgeSamConfig(encoder=encoder, **infer_decoder_fields(state_dict, origin))
    except ValueError as error:
        raise CheckpointError(f"{origin}: tensor shapes describe no valid EdgeSAM model ({error})") from None
