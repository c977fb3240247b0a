"""TinyViTConfig: every shape of a TinyViT image encoder (MobileSAM's), and how to read it from a state dict."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from sam_core.errors import CheckpointError
from sam_core.models.configs import SerializableConfig, shape_readers

PATCH_STRIDE = 4  # the conv stem: two 3x3 stride-2 convolutions


@dataclass(frozen=True)
class TinyViTConfig(SerializableConfig):
    """Shapes of a TinyViT encoder. Defaults are MobileSAM's (TinyViT-5M at 1024 pixels).

    Stage 0 is a stack of MBConv blocks at stride 4; stages 1.. are TinyViT blocks (windowed attention, a
    depthwise convolution, an MLP). A patch-merging convolution between stages halves the resolution, except
    before the last stage, so the embedding comes out at stride 16 as SAM's decoder expects. ``num_heads[0]``
    and ``window_sizes[0]`` belong to the convolutional stage and are unused (kept to mirror TinyViT's
    own configs).
    """

    image_size: int = 1024
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    out_chans: int = 256

    def __post_init__(self) -> None:
        for name in ("embed_dims", "depths", "num_heads", "window_sizes"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        problems = []
        lengths = {len(self.embed_dims), len(self.depths), len(self.num_heads), len(self.window_sizes)}
        if lengths != {4}:
            problems.append("embed_dims, depths, num_heads and window_sizes need one entry per stage (4)")
        elif any(dim % heads for dim, heads in zip(self.embed_dims[1:], self.num_heads[1:])):
            problems.append(f"embed_dims {self.embed_dims[1:]} are not divisible by num_heads {self.num_heads[1:]}")
        if self.image_size % 16:
            problems.append(f"image_size {self.image_size} is not a multiple of 16")
        if self.local_conv_size % 2 == 0:
            problems.append(f"local_conv_size {self.local_conv_size} must be odd")
        if problems:
            raise ValueError("invalid TinyViTConfig: " + "; ".join(problems))

    def stage_resolution(self, stage: int) -> int:
        """Side of the token grid that stage ``stage`` works on (stages 2 and 3 share stride 16)."""
        return self.image_size // (PATCH_STRIDE * 2 ** min(stage, 2))

    def summary(self) -> str:
        return f"tiny_vit embed_dims={list(self.embed_dims)}, depths={list(self.depths)}, image_size={self.image_size}"


def infer_tiny_vit_config(state_dict: Mapping[str, torch.Tensor], prefix: str, origin: str,
                          image_size: int = 1024) -> TinyViTConfig:
    """The TinyViTConfig whose shapes produce the tensors under ``prefix`` (e.g. ``"image_encoder."``).

    The input size is not stored in the weights (the attention-bias index tables are not saved); every
    released TinyViT-based SAM uses 1024, the default.
    """
    shape, count = shape_readers(state_dict, origin, "a TinyViT", prefix)
    depths = tuple(count(f"layers.{stage}.blocks.") for stage in range(4))
    if 0 in depths:
        raise CheckpointError(f"{origin}: TinyViT stages need at least one block each, found {list(depths)}")
    stem_dim = shape("patch_embed.seq.2.c.weight")[0]
    # Stage 0 is convolutional: its head count and window size leave no trace; take the defaults'.
    unused = TinyViTConfig()
    heads, windows, dims = [unused.num_heads[0]], [unused.window_sizes[0]], [stem_dim]
    for stage in range(1, 4):
        biases = shape(f"layers.{stage}.blocks.0.attn.attention_biases")
        heads.append(biases[0])
        windows.append(math.isqrt(biases[1]))
        dims.append(shape(f"layers.{stage}.blocks.0.attn.norm.weight")[0])
    try:
        return TinyViTConfig(
            image_size=image_size, embed_dims=tuple(dims), depths=depths, num_heads=tuple(heads),
            window_sizes=tuple(windows),
            mlp_ratio=shape("layers.1.blocks.0.mlp.fc1.weight")[0] / dims[1],
            mbconv_expand_ratio=shape("layers.0.blocks.0.conv1.c.weight")[0] / stem_dim,
            local_conv_size=shape("layers.1.blocks.0.local_conv.c.weight")[-1],
            out_chans=shape("neck.0.weight")[0],
        )
    except ValueError as error:
        raise CheckpointError(f"{origin}: tensor shapes describe no valid TinyViT ({error})") from None
