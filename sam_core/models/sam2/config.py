"""Sam2Config and the registry of named SAM 2 / SAM 2.1 configurations (image model and video tracking)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sam_core.models.configs import DecoderFields, config_named

# The mask decoder reads three feature levels: strides 4 and 8 (high-resolution skips) and 16 (the embedding).
BACKBONE_STRIDE = 16
PATCH_STRIDE = 4  # the Hiera patch embedding: a 7x7 convolution with stride 4


@dataclass(frozen=True, kw_only=True)
class TrackerFields(DecoderFields):
    """SAM 2.1's heads and memory: the fields of the prompt encoder, mask decoder and video tracking that every
    model built on them shares (SAM 2's Hiera models, SAM 3's tracker), with SAM 2.1's values as defaults.
    Keyword-only, so that a subclass's own fields keep their positions."""

    # Width of the prompt and image tokens (the neck's output channels).
    d_model: int = 256
    # Prompt encoder and mask decoder, beyond DecoderFields.
    use_high_res_features: bool = True
    iou_prediction_use_sigmoid: bool = True
    pred_obj_scores: bool = True
    pred_obj_scores_mlp: bool = True
    use_multimask_token_for_obj_ptr: bool = True
    directly_add_no_mem_embed: bool = True
    # When one mask is asked for and the single-mask output is unstable (its area changes by more than
    # 1 - thresh when the logit threshold moves by +-delta), the best multimask output replaces it.
    # On in Meta's build_sam2 (its default apply_postprocessing=True).
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    # Video tracking (Meta's SAM2Base fields of the same names; values of the official configs).
    # Memory: each tracked frame's mask and features are encoded into a mem_dim memory; a frame attends to
    # its conditioning (prompted) frames and to the num_maskmem - 1 most recent tracked ones.
    num_maskmem: int = 7
    mem_dim: int = 64
    memory_attention_layers: int = 4
    memory_attention_heads: int = 1
    memory_attention_mlp_dim: int = 2048
    rope_theta: float = 10000.0
    memory_temporal_stride_for_eval: int = 1
    max_cond_frames_in_attn: int = -1  # -1: all conditioning frames
    # Mask logits enter the memory encoder as sigmoid(logits) * scale + bias.
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    non_overlap_masks_for_mem_enc: bool = False
    # A mask prompt is taken as the output itself (logits -10 / +10), not decoded.
    use_mask_input_as_output_without_sam: bool = True
    # Three masks (the best kept) for 0..1 clicks, on prompted frames and while tracking.
    multimask_output_in_sam: bool = True
    multimask_output_for_tracking: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    # Object pointers: the decoder's output token, projected, attended to beside the spatial memories.
    use_obj_ptrs_in_encoder: bool = True
    max_obj_ptrs_in_encoder: int = 16
    use_mlp_for_obj_ptr_proj: bool = True
    only_obj_ptrs_in_the_past_for_eval: bool = True
    # Occlusion (with pred_obj_scores and object pointers): where the object score says "absent", the
    # learned no-object pointer replaces the pointer (fixed_no_obj_ptr) or is added to it; mixed in by the
    # score's sigmoid with soft_no_obj_ptr.
    fixed_no_obj_ptr: bool = True
    soft_no_obj_ptr: bool = False
    # 2.1: a learned no-object embedding added to the memory of frames where the object is absent.
    no_obj_embed_spatial: bool = True
    # 2.1: the pointers' temporal distance encoded (sine of the distance, projected to mem_dim, signed).
    add_tpos_enc_to_obj_ptrs: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True

    def tracker_problems(self) -> list[str]:
        """What is wrong with the heads' and the video part's fields."""
        problems = []
        if self.d_model % 8 or self.d_model % self.decoder_num_heads or (self.d_model // 2) % self.decoder_num_heads:
            problems.append(f"d_model {self.d_model} must be divisible by 8 and by 2 * decoder_num_heads "
                            f"({2 * self.decoder_num_heads})")
        if self.mask_in_chans % 4:
            problems.append(f"mask_in_chans {self.mask_in_chans} is not divisible by 4")
        return problems + self._video_problems()

    def _video_problems(self) -> list[str]:
        problems = []
        if self.num_maskmem < 0:
            problems.append(f"num_maskmem {self.num_maskmem} is negative")
        if self.mem_dim < 1 or self.d_model % self.mem_dim:
            # An object pointer (d_model) enters memory attention as d_model / mem_dim tokens.
            problems.append(f"mem_dim {self.mem_dim} must divide d_model {self.d_model}")
        if self.d_model % self.memory_attention_heads or (self.d_model // self.memory_attention_heads) % 4:
            problems.append(f"memory_attention_heads {self.memory_attention_heads}: the head width must be a "
                            f"multiple of 4 (rotary encoding of rows and columns) dividing d_model {self.d_model}")
        if self.memory_temporal_stride_for_eval < 1:
            problems.append(f"memory_temporal_stride_for_eval {self.memory_temporal_stride_for_eval} must be >= 1")
        if self.max_cond_frames_in_attn != -1 and self.max_cond_frames_in_attn < 2:
            problems.append(f"max_cond_frames_in_attn {self.max_cond_frames_in_attn} must be -1 (all) or >= 2")
        if self.proj_tpos_enc_in_obj_ptrs and not self.add_tpos_enc_to_obj_ptrs:
            problems.append("proj_tpos_enc_in_obj_ptrs needs add_tpos_enc_to_obj_ptrs")
        return problems


@dataclass(frozen=True)
class Sam2Config(TrackerFields):
    """Every shape and inference setting of a SAM 2 model. Defaults are the official SAM 2.1 Hiera-T.

    The image parts of SAM 2 and SAM 2.1 are identical in shape and behaviour; they differ in weights
    and in the video modules only (the fields marked "2.1" below, off in SAM 2.0). The prompt encoder's and
    mask decoder's shapes are :class:`~sam_core.models.configs.DecoderFields`' (their width is ``d_model``).
    """

    image_size: int = 1024
    # Hiera trunk. Stage s has embed_dim * 2**s channels and num_heads * 2**s heads; the first block of
    # every stage after the first max-pools its queries by q_stride (the stage's resolution halves).
    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    q_pool: int = 3
    q_stride: int = 2
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    mlp_ratio: float = 4.0
    # FPN neck (its width is TrackerFields' d_model).
    scalp: int = 1
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    fpn_interp_mode: str = "nearest"

    def __post_init__(self) -> None:
        for name in ("stages", "window_spec", "global_att_blocks", "window_pos_embed_bkg_spatial_size",
                     "fpn_top_down_levels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        problems = []
        levels = len(self.stages)
        if levels < 2 or min(self.stages) < 1:
            problems.append(f"stages {self.stages} must list at least two stages of at least one block")
        if len(self.window_spec) != levels:
            problems.append(f"window_spec {self.window_spec} must give one window size per stage ({levels})")
        if self.q_pool != levels - 1:
            # The neck upsamples each level by 2 onto the next, so every stage transition must halve.
            problems.append(f"q_pool {self.q_pool} must be len(stages) - 1 = {levels - 1}")
        if self.q_stride != 2:
            problems.append(f"q_stride {self.q_stride}: the FPN neck needs 2")
        if levels - 1 - self.scalp != 2:
            problems.append(f"scalp {self.scalp} with {levels} stages does not leave the stride-16 level last "
                            f"(need scalp = {levels - 3})")
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        coarsest = PATCH_STRIDE * 2 ** (levels - 1)
        if self.image_size % coarsest:
            problems.append(f"image_size {self.image_size} is not a multiple of {coarsest} (stride of the last stage)")
        elif self.window_spec and (self.image_size // PATCH_STRIDE) % self.window_spec[0]:
            problems.append(f"the first stage's grid {self.image_size // PATCH_STRIDE} is not a multiple of its "
                            f"window {self.window_spec[0]} (the window position embedding is tiled over it)")
        depth = sum(self.stages)
        bad = [i for i in self.global_att_blocks if not 0 <= i < depth]
        if bad:
            problems.append(f"global_att_blocks {bad} outside 0..{depth - 1}")
        for block, window in self.q_pool_blocks_and_windows() if len(self.window_spec) == levels else ():
            if block in self.global_att_blocks:
                problems.append(f"block {block} pools its queries and cannot be global (the reference pools "
                                "within windows)")
            elif window % self.q_stride:
                problems.append(f"block {block} pools windows of {window} by {self.q_stride}: not divisible")
        if min(self.window_spec, default=1) < 1 or min(self.window_pos_embed_bkg_spatial_size) < 1:
            problems.append("window sizes must be >= 1")
        if len(self.window_pos_embed_bkg_spatial_size) != 2:
            problems.append("window_pos_embed_bkg_spatial_size must be (height, width)")
        if any(not 0 <= level < levels for level in self.fpn_top_down_levels):
            problems.append(f"fpn_top_down_levels {self.fpn_top_down_levels} outside 0..{levels - 1}")
        if self.fpn_interp_mode not in ("nearest", "bilinear"):
            problems.append(f"fpn_interp_mode {self.fpn_interp_mode!r} is not 'nearest' or 'bilinear'")
        problems += self.tracker_problems()
        if problems:
            raise ValueError("invalid Sam2Config: " + "; ".join(problems))

    def q_pool_blocks_and_windows(self) -> list[tuple[int, int]]:
        """(index, window size) of the blocks that pool their queries: the first block of each later stage,
        which still uses the previous stage's window."""
        starts = [sum(self.stages[:s]) for s in range(1, len(self.stages))][: self.q_pool]
        return [(start, self.window_spec[s]) for s, start in enumerate(starts)]

    @property
    def depth(self) -> int:
        return sum(self.stages)

    @property
    def backbone_channel_list(self) -> tuple[int, ...]:
        """Channels of the trunk's stage outputs, lowest resolution first (the neck's order)."""
        return tuple(self.embed_dim * 2**s for s in reversed(range(len(self.stages))))

    @property
    def embedding_size(self) -> int:
        """Side of the square image embedding grid (64 for the official models)."""
        return self.image_size // BACKBONE_STRIDE

    def summary(self) -> str:
        """A one-line description of the shapes."""
        return (f"SAM 2 Hiera embed_dim={self.embed_dim}, heads={self.num_heads}, stages={list(self.stages)}, "
                f"d_model={self.d_model}, image_size={self.image_size}")


_TINY = Sam2Config()
_SMALL = Sam2Config(stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13))
# Base+ uses Hiera's defaults: 14x14 background position embedding, stages (2, 3, 16, 3).
_BASE_PLUS = Sam2Config(embed_dim=112, num_heads=2, stages=(2, 3, 16, 3), global_att_blocks=(12, 16, 20),
                        window_pos_embed_bkg_spatial_size=(14, 14))
_LARGE = Sam2Config(embed_dim=144, num_heads=2, stages=(2, 6, 36, 4), global_att_blocks=(23, 33, 43),
                    window_spec=(8, 4, 16, 8))
_FIELD_NAMES = [field.name for field in dataclasses.fields(TrackerFields)]
VIDEO_SETTINGS = tuple(_FIELD_NAMES[_FIELD_NAMES.index("num_maskmem"):])
"""The fields only video tracking reads. Files of an image model (a Hugging Face ``Sam2Model`` folder) do not
describe them, so a config read from one has their defaults."""


def image_settings(config: Sam2Config) -> dict[str, Any]:
    """The fields of ``config`` that the image model reads (all but ``VIDEO_SETTINGS``)."""
    return {name: value for name, value in config.to_dict().items() if name not in VIDEO_SETTINGS}


# What SAM 2.0's video model lacks: the spatial no-object embedding and the pointers' temporal encoding.
SAM2_0_VIDEO = dict(no_obj_embed_spatial=False, add_tpos_enc_to_obj_ptrs=False, proj_tpos_enc_in_obj_ptrs=False,
                    use_signed_tpos_enc_to_obj_ptrs=False)


def as_sam2_0(config: Sam2Config) -> Sam2Config:
    """``config`` with the video settings of SAM 2.0."""
    return dataclasses.replace(config, **SAM2_0_VIDEO)


# Meta's released checkpoints (sam2_hiera_tiny.pt, sam2.1_hiera_tiny.pt...), in registry names.
OFFICIAL_SAM2_MODELS = tuple(f"{version}_hiera_{size}" for version in ("sam2", "sam2.1")
                             for size in ("tiny", "small", "base_plus", "large"))

SAM2_CONFIGS: dict[str, Sam2Config] = {
    "sam2_hiera_tiny": as_sam2_0(_TINY),
    "sam2_hiera_small": as_sam2_0(_SMALL),
    "sam2_hiera_base_plus": as_sam2_0(_BASE_PLUS),
    "sam2_hiera_large": as_sam2_0(_LARGE),
    "sam2.1_hiera_tiny": _TINY,
    "sam2.1_hiera_small": _SMALL,
    "sam2.1_hiera_base_plus": _BASE_PLUS,
    "sam2.1_hiera_large": _LARGE,
    # A small model for tests: every code path of the large ones (windows with padding, query pooling
    # within padded windows, global blocks, several heads, an interpolated background position embedding,
    # high-resolution decoder features, object scores) at a fraction of the cost. Its video part (SAM 2.1)
    # keeps the official ratio d_model / mem_dim = 4 (pointers split into 4 tokens) and has two heads.
    "sam2_hiera_test": Sam2Config(image_size=256, embed_dim=16, num_heads=2, stages=(1, 2, 3, 3),
                                  window_spec=(8, 4, 6, 3), global_att_blocks=(4, 8), d_model=64, mem_dim=16,
                                  memory_attention_layers=2, memory_attention_heads=2,
                                  memory_attention_mlp_dim=128),
}


def get_sam2_config(name_or_config: str | Sam2Config) -> Sam2Config:
    """Return the config itself, or the registry entry of that name (``ValueError`` for an unknown name)."""
    return config_named(name_or_config, SAM2_CONFIGS, Sam2Config, "SAM 2 model")
