"""SamConfig, the registry of named SAM models, and the config read back from a checkpoint's shapes."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from sam_core.errors import CheckpointError

# Read from shapes is impossible (the heads split one projection); every official model uses 8.
ASSUMED_DECODER_HEADS = 8


@dataclass(frozen=True)
class SamConfig:
    """Every shape of a SAM model. Defaults are the official ViT-H."""

    image_size: int = 1024
    patch_size: int = 16
    encoder_embed_dim: int = 1280
    encoder_depth: int = 32
    encoder_num_heads: int = 16
    encoder_global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    window_size: int = 14
    encoder_mlp_ratio: float = 4.0
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder_global_attn_indexes", tuple(self.encoder_global_attn_indexes))
        problems = []
        if self.image_size % self.patch_size:
            problems.append(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.encoder_embed_dim % self.encoder_num_heads:
            problems.append(f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by encoder_num_heads "
                            f"{self.encoder_num_heads}")
        if self.prompt_embed_dim % self.decoder_num_heads or self.prompt_embed_dim % 8:
            problems.append(f"prompt_embed_dim {self.prompt_embed_dim} must be divisible by 8 and by "
                            f"decoder_num_heads {self.decoder_num_heads}")
        bad = [i for i in self.encoder_global_attn_indexes if not 0 <= i < self.encoder_depth]
        if bad:
            problems.append(f"encoder_global_attn_indexes {bad} outside 0..{self.encoder_depth - 1}")
        if self.window_size < 0:
            problems.append("window_size must be >= 0 (0 means global attention everywhere)")
        if problems:
            raise ValueError("invalid SamConfig: " + "; ".join(problems))

    @property
    def embedding_size(self) -> int:
        """Side of the square image embedding grid (64 for the official models)."""
        return self.image_size // self.patch_size

    @property
    def low_res_mask_size(self) -> int:
        """Side of the decoder's low-resolution masks (256 for the official models)."""
        return 4 * self.embedding_size

    def summary(self) -> str:
        return f"embed_dim={self.encoder_embed_dim}, depth={self.encoder_depth}, image_size={self.image_size}"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "encoder_global_attn_indexes": list(self.encoder_global_attn_indexes)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SamConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SamConfig fields: {unknown}")
        return cls(**values)


SAM_CONFIGS: dict[str, SamConfig] = {
    "vit_h": SamConfig(),
    "vit_l": SamConfig(encoder_embed_dim=1024, encoder_depth=24, encoder_num_heads=16,
                       encoder_global_attn_indexes=(5, 11, 17, 23)),
    "vit_b": SamConfig(encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12,
                       encoder_global_attn_indexes=(2, 5, 8, 11)),
    # A small model for tests and examples: every code path of the large ones (windowed blocks with
    # padding, global blocks, a decoder with 8 heads) at a fraction of the cost.
    "vit_tiny": SamConfig(image_size=256, encoder_embed_dim=64, encoder_depth=4, encoder_num_heads=2,
                          encoder_global_attn_indexes=(1, 3), window_size=6, prompt_embed_dim=64,
                          decoder_mlp_dim=256, iou_head_hidden_dim=64),
}
SAM_CONFIGS["default"] = SAM_CONFIGS["vit_h"]


def get_config(name_or_config: str | SamConfig) -> SamConfig:
    """Return the config itself, or the registry entry of that name."""
    if isinstance(name_or_config, SamConfig):
        return name_or_config
    try:
        return SAM_CONFIGS[name_or_config]
    except KeyError:
        raise ValueError(f"unknown model type {name_or_config!r}; known: {sorted(SAM_CONFIGS)}") from None


def infer_sam_config(state_dict: Mapping[str, torch.Tensor], origin: str = "state dict") -> SamConfig:
    """The SamConfig whose shapes produce ``state_dict`` (Meta parameter names).

    Decoder heads cannot be read from shapes; they are assumed to be ``ASSUMED_DECODER_HEADS`` (8),
    the value of every official model.
    """
    shape, count = shape_readers(state_dict, origin)
    embed_dim, _, patch_size, _ = shape("image_encoder.patch_embed.proj.weight")
    grid = shape("image_encoder.pos_embed")[1]
    depth = count("image_encoder.blocks.")
    table_lengths = [shape(f"image_encoder.blocks.{i}.attn.rel_pos_h")[0] for i in range(depth)]
    global_blocks = tuple(i for i, length in enumerate(table_lengths) if length == 2 * grid - 1)
    window_lengths = {length for length in table_lengths if length != 2 * grid - 1}
    if len(window_lengths) > 1:
        raise CheckpointError(f"{origin}: windowed blocks disagree on the window size "
                              f"(relative position tables of lengths {sorted(window_lengths)})")
    head_dim = shape("image_encoder.blocks.0.attn.rel_pos_h")[1]
    try:
        return SamConfig(
            image_size=grid * patch_size,
            patch_size=patch_size,
            encoder_embed_dim=embed_dim,
            encoder_depth=depth,
            encoder_num_heads=embed_dim // head_dim,
            encoder_global_attn_indexes=global_blocks,
            window_size=(window_lengths.pop() + 1) // 2 if window_lengths else 0,
            encoder_mlp_ratio=shape("image_encoder.blocks.0.mlp.lin1.weight")[0] / embed_dim,
            prompt_embed_dim=shape("image_encoder.neck.0.weight")[0],
            **decoder_fields(shape, count),
        )
    except ValueError as error:
        raise CheckpointError(f"{origin}: tensor shapes describe no valid SAM model ({error})") from None


def shape_readers(state_dict: Mapping[str, torch.Tensor], origin: str,
                  ) -> tuple[Callable[[str], torch.Size], Callable[[str], int]]:
    """``shape(name)``: a tensor's shape (``CheckpointError`` naming it when missing); ``count(prefix)``: the
    number of numbered modules under ``prefix`` (``prefix.0.``, ``prefix.1.``...)."""
    def shape(name: str) -> torch.Size:
        if name not in state_dict:
            raise CheckpointError(f"{origin} is not a SAM checkpoint: tensor {name!r} is missing")
        return state_dict[name].shape

    def count(prefix: str) -> int:
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
        return len({m.group(1) for name in state_dict if (m := pattern.match(name))})

    return shape, count


def infer_decoder_fields(state_dict: Mapping[str, torch.Tensor], origin: str) -> dict[str, int]:
    """``decoder_fields`` of a state dict under Meta's names."""
    return decoder_fields(*shape_readers(state_dict, origin))


def decoder_fields(shape: Callable[[str], torch.Size], count: Callable[[str], int]) -> dict[str, int]:
    """The prompt encoder's and mask decoder's config fields read from a checkpoint's shapes (Meta's names), for
    every family built on SAM 1's decoder. ``shape(name)`` is a tensor's shape, ``count(prefix)`` the number of
    numbered modules under ``prefix``; the decoder's heads are ``ASSUMED_DECODER_HEADS``."""
    return dict(
        mask_in_chans=shape("prompt_encoder.mask_downscaling.3.weight")[0],
        decoder_depth=count("mask_decoder.transformer.layers."),
        decoder_num_heads=ASSUMED_DECODER_HEADS,
        decoder_mlp_dim=shape("mask_decoder.transformer.layers.0.mlp.lin1.weight")[0],
        num_multimask_outputs=shape("mask_decoder.mask_tokens.weight")[0] - 1,
        iou_head_depth=count("mask_decoder.iou_prediction_head.layers."),
        iou_head_hidden_dim=shape("mask_decoder.iou_prediction_head.layers.0.weight")[0],
    )
