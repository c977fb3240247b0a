"""EdgeTamConfig: SAM 2's heads, FPN and video settings on a RepViT trunk, with the spatial perceiver that
compresses each frame's memory, and the registry of named EdgeTAM configurations."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sam_core.models.configs import config_named
from sam_core.models.edge_sam.config import RepViTConfig
from sam_core.models.sam2.config import Sam2Config

TRUNK_FIELDS = ("repvit_embed_dims", "repvit_depths")


@dataclass(frozen=True)
class EdgeTamConfig(Sam2Config):
    """Every shape and setting of an EdgeTAM model. Defaults are Meta's released ``edgetam.pt``.

    The prompt encoder, mask decoder, FPN neck, memory encoder and tracking settings are SAM 2's
    (:class:`~sam_core.models.sam2.config.Sam2Config`'s fields, with SAM 2.0's video settings and two
    memory-attention layers); Sam2Config's Hiera fields (``embed_dim``, ``num_heads``, ``stages``...) are not
    read. The trunk is timm's RepViT (``repvit_m1``): a stride-4 stem, then four stages of ``repvit_depths``
    blocks with ``repvit_embed_dims`` channels; stages 1-3 start with a downsampling unit (a stride-1 block at
    the old width, then a stride-2 block to the new). The FPN reads the four stage outputs.

    The spatial perceiver turns a frame's memory (mem_dim x S/16 x S/16) into ``perceiver_latents`` global
    latents (attending to the whole map, no position) and ``perceiver_latents_2d`` window latents (each
    attending to its window of a square grid of windows; their grid's sine encoding is their position);
    memory attention's cross-attention rotates the window latents' keys on their own grid.

    Args (beyond Sam2Config's):
        repvit_embed_dims: channels of the trunk's four stages.
        repvit_depths: blocks of each stage after its downsampling unit (timm's ``depth``).
        perceiver_depth: perceiver layers (cross-attention, feed-forward, self-attention, feed-forward).
        perceiver_latents: global latents per memory (0: none).
        perceiver_latents_2d: window latents per memory, a square number (0: none).
        perceiver_heads: attention heads of the perceiver.
        perceiver_dim_head: width of each perceiver head (heads * dim_head must be mem_dim when there are
            global latents: their keys and values add the memory's position encoding per head).
        perceiver_ff_mult: hidden width of the perceiver's feed-forwards, in multiples of mem_dim.
    """

    repvit_embed_dims: tuple[int, ...] = (48, 96, 192, 384)
    repvit_depths: tuple[int, ...] = (2, 2, 14, 2)
    perceiver_depth: int = 2
    perceiver_latents: int = 256
    perceiver_latents_2d: int = 256
    perceiver_heads: int = 1
    perceiver_dim_head: int = 64
    perceiver_ff_mult: int = 4
    memory_attention_layers: int = 2
    no_obj_embed_spatial: bool = False
    add_tpos_enc_to_obj_ptrs: bool = False
    proj_tpos_enc_in_obj_ptrs: bool = False
    use_signed_tpos_enc_to_obj_ptrs: bool = False

    def __post_init__(self) -> None:
        for name in TRUNK_FIELDS:
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        super().__post_init__()
        problems = []
        if len(self.repvit_embed_dims) != 4 or len(self.repvit_depths) != 4:
            problems.append("repvit_embed_dims and repvit_depths need one entry per stage (4: the FPN reads four)")
        else:
            try:
                self.rep_vit()
            except ValueError as error:
                problems.append(str(error))
        side = math.isqrt(self.perceiver_latents_2d)
        if self.perceiver_latents_2d and (side * side != self.perceiver_latents_2d or self.embedding_size % side):
            problems.append(f"perceiver_latents_2d {self.perceiver_latents_2d} must be a square whose side divides "
                            f"the memory grid {self.embedding_size}")
        if self.perceiver_latents + self.perceiver_latents_2d < 1 or min(self.perceiver_latents,
                                                                          self.perceiver_latents_2d) < 0:
            problems.append("the perceiver needs latents (perceiver_latents + perceiver_latents_2d >= 1)")
        if self.perceiver_latents and self.perceiver_heads * self.perceiver_dim_head != self.mem_dim:
            problems.append(f"perceiver_heads * perceiver_dim_head must be mem_dim {self.mem_dim} with global latents")
        if min(self.perceiver_depth, self.perceiver_heads, self.perceiver_dim_head, self.perceiver_ff_mult) < 1:
            problems.append("perceiver_depth, perceiver_heads, perceiver_dim_head, perceiver_ff_mult must be >= 1")
        if problems:
            raise ValueError("invalid EdgeTamConfig: " + "; ".join(problems))

    def rep_vit(self) -> RepViTConfig:
        """The trunk as EdgeSAM's RepViTConfig counts it: every block in order, the downsampling units' two
        blocks included, stages split where the channels change (the stride-1 block of a downsampling unit
        ends the stage before). ``ValueError`` if it describes no RepViT."""
        depths, se_blocks, index = [], [], 0
        for stage, depth in enumerate(self.repvit_depths):
            units = (1 if stage else 0) + depth + (1 if stage < 3 else 0)  # stride-2 block, blocks, next pre-block
            first = index + (1 if stage else 0)
            se_blocks += [first + j for j in range(0, depth, 2)]  # every other block from the first has SE
            depths.append(units)
            index += units
        return RepViTConfig(image_size=self.image_size, embed_dims=self.repvit_embed_dims, depths=tuple(depths),
                            se_blocks=tuple(se_blocks), out_chans=self.d_model)

    def stage_output_blocks(self) -> tuple[int, ...]:
        """Index in the trunk's ``features`` (0 = the stem) of the block whose output is each stage's."""
        ends, index = [], 0
        for stage, depth in enumerate(self.repvit_depths):
            index += (1 if stage else 0) + depth
            ends.append(index)
            index += 1 if stage < 3 else 0  # the next stage's pre-block, at this stage's width
        return tuple(ends)

    @property
    def backbone_channel_list(self) -> tuple[int, ...]:
        return tuple(reversed(self.repvit_embed_dims))

    def summary(self) -> str:
        return (f"EdgeTAM RepViT embed_dims={list(self.repvit_embed_dims)}, depths={list(self.repvit_depths)}, "
                f"d_model={self.d_model}, image_size={self.image_size}")


EDGETAM_CONFIGS: dict[str, EdgeTamConfig] = {
    "edgetam": EdgeTamConfig(),
    # A small model for tests: every code path of the released one (squeeze-excite blocks, downsampling units,
    # two memory-attention layers, global and window latents, several perceiver heads) at 256 pixels.
    "edgetam_test": EdgeTamConfig(image_size=256, repvit_embed_dims=(16, 24, 32, 48), repvit_depths=(2, 1, 3, 1),
                                  d_model=64, mem_dim=16, memory_attention_heads=2, memory_attention_mlp_dim=128,
                                  perceiver_latents=8, perceiver_latents_2d=16, perceiver_heads=2,
                                  perceiver_dim_head=8, ),  # SAM2Base fixes the decoder's MLP and IoU head widths
}


def get_edgetam_config(name_or_config: str | EdgeTamConfig) -> EdgeTamConfig:
    """Return the config itself, or the registry entry of that name (``ValueError`` for an unknown name)."""
    return config_named(name_or_config, EDGETAM_CONFIGS, EdgeTamConfig, "EdgeTAM model")

