"""SAM's network modules."""

from sam_core.models.sam.image_encoder import ImageEncoderViT
from sam_core.models.sam.mask_decoder import MaskDecoder
from sam_core.models.sam.model import Sam, build_sam1
from sam_core.models.sam.prompt_encoder import PromptEncoder
from sam_core.models.sam.transformer import TwoWayTransformer

__all__ = ["ImageEncoderViT", "MaskDecoder", "PromptEncoder", "Sam", "TwoWayTransformer", "build_sam1"]
