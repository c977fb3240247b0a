"""SAM's network modules."""

from sam_core.modeling.image_encoder import ImageEncoderViT
from sam_core.modeling.mask_decoder import MaskDecoder
from sam_core.modeling.prompt_encoder import PromptEncoder
from sam_core.modeling.sam import Sam, build_sam
from sam_core.modeling.transformer import TwoWayTransformer

__all__ = ["ImageEncoderViT", "MaskDecoder", "PromptEncoder", "Sam", "TwoWayTransformer", "build_sam"]
