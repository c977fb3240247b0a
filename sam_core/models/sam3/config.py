"""Sam3Config and the registry of named SAM 3 configurations: the promptable visual segmentation path (points,
boxes, masks; images and video), i.e. SAM 3's ViT backbone and tracker neck under SAM 2.1's heads and memory."""

from __future__ import annotations

from dataclasses import dataclass, field

from sam_core.models.configs import config_named
from sam_core.models.sam2.config import TrackerFields

# The simple FPN's levels: 4x, 2x and 1x the ViT's grid (Meta's neck also makes a 0.5x level, which the
# tracker drops: "scalp" 1).
NECK_SCALES = (4.0, 2.0, 1.0)


@dataclass(frozen=True)
class Sam3Config(TrackerFields):
    """Every shape and inference setting of SAM 3's tracker path. Defaults are the released ``sam3.pt``.

    The ViT sees the image as a grid of ``image_size / patch_size`` tokens (72 x 72); windowed blocks attend
    within ``window_size`` squares (the grid zero-padded to whole windows), the blocks of ``global_att_blocks``
    to the whole grid, whose last one is the backbone's output. The heads and the video part are SAM 2.1's
    (:class:`~sam_core.models.sam2.config.TrackerFields`), at stride ``patch_size``: the low-resolution masks
    are 4 x 72 = 288 pixels square.
    """

    image_size: int = 1008
    patch_size: int = 14
    # ViT trunk.
    embed_dim: int = 1024
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4.625
    window_size: int = 24
    global_att_blocks: tuple[int, ...] = (7, 15, 23, 31)
    # The absolute position embedding was trained at this input size (plus a class token's, unused) and is
    # tiled over larger grids.
    pretrain_image_size: int = 336
    layer_norm_eps: float = 1e-5
    # SAM 3's tracker settings beyond SAM 2.1's (Meta's build_tracker): at most four conditioning frames in
    # memory attention, the temporally closest.
    max_cond_frames_in_attn: int = field(default=4, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "global_att_blocks", tuple(self.global_att_blocks))
        problems = []
        if self.image_size % self.patch_size:
            problems.append(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.pretrain_image_size % self.patch_size:
            problems.append(f"pretrain_image_size {self.pretrain_image_size} is not a multiple of patch_size "
                            f"{self.patch_size}")
        if self.embed_dim % self.num_heads or (self.embed_dim // self.num_heads) % 4:
            problems.append(f"embed_dim {self.embed_dim} / num_heads {self.num_heads} must be a multiple of 4 "
                            "(rotary encoding of rows and columns)")
        if self.embed_dim % 4:
            problems.append(f"embed_dim {self.embed_dim} must be divisible by 4 (the neck's 4x level)")
        if self.window_size < 1:
            problems.append(f"window_size {self.window_size} must be >= 1")
        if not self.global_att_blocks or sorted(self.global_att_blocks) != list(self.global_att_blocks):
            problems.append(f"global_att_blocks {self.global_att_blocks} must list at least one block, ascending")
        elif not 0 <= self.global_att_blocks[0] or self.global_att_blocks[-1] != self.depth - 1:
            # The backbone's output is the last global block's; blocks after it would be computed for nothing.
            problems.append(f"global_att_blocks {self.global_att_blocks} must lie in 0..{self.depth - 1} and end "
                            f"with the last block ({self.depth - 1})")
        problems += self.tracker_problems()
        if problems:
            raise ValueError("invalid Sam3Config: " + "; ".join(problems))

    @property
    def embedding_size(self) -> int:
        """Side of the square image embedding grid (72 for the released model)."""
        return self.image_size // self.patch_size

    @property
    def pretrain_grid(self) -> int:
        """Side of the absolute position embedding's grid (24 for the released model)."""
        return self.pretrain_image_size // self.patch_size

    def summary(self) -> str:
        """A one-line description of the shapes."""
        return (f"SAM 3 ViT embed_dim={self.embed_dim}, depth={self.depth}, heads={self.num_heads}, "
                f"d_model={self.d_model}, image_size={self.image_size}")


SAM3_CONFIGS: dict[str, Sam3Config] = {
    "sam3": Sam3Config(),
    # A small model for tests: windows with padding (a 16-token grid in windows of 6), a tiled position
    # embedding (6 tokens tiled over 16), two global blocks with interpolated rotary positions, several heads,
    # and SAM 2.1's heads and memory at the test width of SAM 2's test model.
    "sam3_test": Sam3Config(image_size=224, embed_dim=64, depth=4, num_heads=4, window_size=6,
                            global_att_blocks=(1, 3), pretrain_image_size=84, d_model=64, mem_dim=16,
                            memory_attention_layers=2, memory_attention_heads=2, memory_attention_mlp_dim=128),
}


def get_sam3_config(name_or_config: str | Sam3Config) -> Sam3Config:
    """Return the config itself, or the registry entry of that name (``ValueError`` for an unknown name)."""
    return config_named(name_or_config, SAM3_CONFIGS, Sam3Config, "SAM 3 model")
