"""SAM 2 / SAM 2.1 image model: Hiera + FPN image encoder, prompt encoder, mask decoder."""

from sam_core.sam2.checkpoint import load_sam2
from sam_core.sam2.config import OFFICIAL_SAM2_MODELS, SAM2_CONFIGS, Sam2Config, get_sam2_config
from sam_core.sam2.model import Sam2, build_sam2

__all__ = ["OFFICIAL_SAM2_MODELS", "SAM2_CONFIGS", "Sam2", "Sam2Config", "build_sam2", "get_sam2_config",
           "load_sam2"]
