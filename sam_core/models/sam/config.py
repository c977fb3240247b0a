"""SamConfig, the registry of named SAM models, and the config read back from a checkpoint's shapes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from sam_core.errors import CheckpointError
from sam_core.models.configs import DecoderFields, config_named, decoder_fields, shape_readers


@dataclass(frozen=True)
class SamConfig(DecoderFields):
    """Every shape of a SAM model. Defaults are the official ViT-H. The prompt encoder's and mask decoder's
    fields (``mask_in_chans``, ``decoder_depth``...) are :class:`~sam_core.models.configs.DecoderFields`'."""

    image_size: int = 1024
    patch_size: int = 16
    encoder_embed_dim: int = 1280
    encoder_depth: int = 32
    encoder_num_heads: int = 16
    encoder_global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    window_size: int = 14
    encoder_mlp_ratio: float = 4.0
    prompt_embed_dim: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder_global_attn_indexes", tuple(self.encoder_global_attn_indexes))
        problems = []
        if self.image_size % self.patch_size:
            problems.append(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.encoder_embed_dim % self.encoder_num_heads:
            problems.append(f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by encoder_num_heads "
                            f"{self.encoder_num_heads}")
        problems += self.decoder_width_problems(self.prompt_embed_dim, "prompt_embed_dim")
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

    def summary(self) -> str:
        return f"embed_dim={self.encoder_embed_dim}, depth={self.encoder_depth}, image_size={self.image_size}"


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
    """Return the config itself, or the registry entry of that name (``ValueError`` for an unknown name)."""
    return config_named(name_or_config, SAM_CONFIGS, SamConfig, "model type")


def infer_sam_config(state_dict: Mapping[str, torch.Tensor], origin: str = "state dict") -> SamConfig:
    """The SamConfig whose shapes produce ``state_dict`` (Meta parameter names).

    Decoder heads cannot be read from shapes; they are assumed to be
    ``sam_core.models.configs.ASSUMED_DECODER_HEADS`` (8), the value of every official model.
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
