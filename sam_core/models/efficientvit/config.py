"""EfficientViTSamConfig: every shape of an EfficientViT-SAM model, and the registry of the released ones."""

from __future__ import annotations

from dataclasses import dataclass

from sam_core.models.configs import DecoderFields, config_named

# Block kinds of a backbone stage: "res" (ResBlock), "fmb" (FusedMBConv), "mb" (MBConv), "att@K" (EfficientViT
# blocks: LiteMLA with a KxK multi-scale aggregation, then an MBConv).
BLOCK_KINDS = ("res", "fmb", "mb")


@dataclass(frozen=True)
class EfficientViTSamConfig(DecoderFields):
    """Shapes of an EfficientViT-SAM model: the EfficientViT ("large") backbone, the SAM neck, and SAM 1's prompt
    encoder and mask decoder (:class:`~sam_core.models.configs.DecoderFields`). Defaults are the released L0."""

    encoder_image_size: int = 512
    """Side of the square encoder input (L models 512, XL models 1024); prompts and masks stay in the
    ``prompt_image_size`` frame whatever it is."""
    widths: tuple[int, ...] = (32, 64, 128, 256, 512)
    depths: tuple[int, ...] = (1, 1, 1, 4, 4)
    block_kinds: tuple[str, ...] = ("res", "fmb", "fmb", "mb", "att@5")
    expand_ratios: tuple[float, ...] = (1, 4, 4, 4, 6)
    fewer_norm: tuple[bool, ...] = (False, False, False, True, True)
    """Per stage: whether its blocks normalise only their last convolution (the others get biases)."""
    attention_head_dim: int = 32
    neck_stages: tuple[int, ...] = (4, 3, 2)
    """Backbone stages whose outputs the neck sums (projected and resized to the embedding grid), in order."""
    neck_width: int = 256
    neck_depth: int = 4
    neck_expand_ratio: float = 1
    prompt_embed_dim: int = 256
    embedding_size: int = 64
    prompt_image_size: int = 1024
    norm_eps: float = 1e-6
    """eps of every normalisation layer of the encoder, BatchNorm included (the released models set 1e-6)."""
    decoder_layer_norm_eps: float = 1e-6
    """eps of the two-way transformer's LayerNorms (the released models set 1e-6; SAM 1 uses 1e-5)."""

    def __post_init__(self) -> None:
        for name in ("widths", "depths", "block_kinds", "expand_ratios", "fewer_norm", "neck_stages"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        problems = []
        stages = len(self.widths)
        per_stage = ("depths", "block_kinds", "expand_ratios", "fewer_norm")
        if any(len(getattr(self, name)) != stages for name in per_stage):
            problems.append(f"{', '.join(per_stage)} must have one entry per stage ({stages}, as widths)")
        bad_kinds = [kind for kind in self.block_kinds if kind not in BLOCK_KINDS and not _is_attention(kind)]
        if bad_kinds:
            problems.append(f"unknown block kinds {bad_kinds} (known: {BLOCK_KINDS} and 'att@K' with K odd)")
        if self.block_kinds and _is_attention(self.block_kinds[0]):
            problems.append("the first stage cannot be an attention stage")
        for kind, width in zip(self.block_kinds, self.widths):
            if _is_attention(kind) and width % self.attention_head_dim:
                problems.append(f"attention stage width {width} is not a multiple of attention_head_dim "
                                f"{self.attention_head_dim}")
        if not self.neck_stages or any(not 0 <= s < stages for s in self.neck_stages):
            problems.append(f"neck_stages {self.neck_stages} must name stages 0..{stages - 1}")
        problems += self.decoder_width_problems(self.prompt_embed_dim, "prompt_embed_dim")
        if self.prompt_image_size != 16 * self.embedding_size:
            problems.append(f"prompt_image_size {self.prompt_image_size} must be 16 x embedding_size "
                            f"{self.embedding_size}")
        if problems:
            raise ValueError("invalid EfficientViTSamConfig: " + "; ".join(problems))

    def summary(self) -> str:
        return (f"widths={list(self.widths)}, depths={list(self.depths)}, "
                f"encoder_image_size={self.encoder_image_size}")


def _is_attention(kind: str) -> bool:
    prefix, _, scale = kind.partition("@")
    return prefix == "att" and scale.isdigit() and int(scale) % 2 == 1


def attention_scale(kind: str) -> int | None:
    """K of an "att@K" stage (the multi-scale aggregation's kernel), None for a convolution stage."""
    return int(kind.partition("@")[2]) if _is_attention(kind) else None


_L_STAGES = dict(widths=(32, 64, 128, 256, 512), block_kinds=("res", "fmb", "fmb", "mb", "att@5"),
                 expand_ratios=(1, 4, 4, 4, 6), fewer_norm=(False, False, False, True, True), neck_stages=(4, 3, 2),
                 encoder_image_size=512, neck_expand_ratio=1)
_XL_STAGES = dict(widths=(32, 64, 128, 256, 512, 1024), block_kinds=("res", "fmb", "fmb", "fmb", "att@3", "att@3"),
                  expand_ratios=(1, 4, 4, 4, 4, 6), fewer_norm=(False, False, False, False, True, True),
                  neck_stages=(5, 4, 3), encoder_image_size=1024, neck_expand_ratio=4)

EFFICIENTVIT_SAM_CONFIGS: dict[str, EfficientViTSamConfig] = {
    "efficientvit_sam_l0": EfficientViTSamConfig(**_L_STAGES, depths=(1, 1, 1, 4, 4), neck_depth=4),
    "efficientvit_sam_l1": EfficientViTSamConfig(**_L_STAGES, depths=(1, 1, 1, 6, 6), neck_depth=8),
    "efficientvit_sam_l2": EfficientViTSamConfig(**_L_STAGES, depths=(1, 2, 2, 8, 8), neck_depth=12),
    "efficientvit_sam_xl0": EfficientViTSamConfig(**_XL_STAGES, depths=(0, 1, 1, 2, 3, 3), neck_depth=6),
    "efficientvit_sam_xl1": EfficientViTSamConfig(**_XL_STAGES, depths=(1, 2, 2, 4, 6, 6), neck_depth=12),
}


def get_efficientvit_sam_config(name_or_config: str | EfficientViTSamConfig) -> EfficientViTSamConfig:
    """Return the config itself, or the registry entry of that name (``ValueError`` for an unknown name)."""
    return config_named(name_or_config, EFFICIENTVIT_SAM_CONFIGS, EfficientViTSamConfig, "EfficientViT-SAM model")
