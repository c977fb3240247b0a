"""Old path, kept as a re-export: SAM's network modules are now in ``sam_core.models.sam``."""

from sam_core.models.sam import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
    build_sam1,
)
from sam_core.models.sam import build_sam1 as build_sam

__all__ = ["ImageEncoderViT", "MaskDecoder", "PromptEncoder", "Sam", "TwoWayTransformer", "build_sam", "build_sam1"]
