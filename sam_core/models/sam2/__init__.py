"""SAM 2 / SAM 2.1: the image model (Hiera + FPN image encoder, prompt encoder, mask decoder) and, in ``video/``,
the tracking model."""

from sam_core.models.sam2.config import OFFICIAL_SAM2_MODELS, SAM2_CONFIGS, Sam2Config, get_sam2_config
from sam_core.models.sam2.model import Sam2, build_sam2_model
from sam_core.models.sam2.video.model import Sam2Video, build_sam2_video

__all__ = ["OFFICIAL_SAM2_MODELS", "SAM2_CONFIGS", "Sam2", "Sam2Config", "Sam2Video", "build_sam2_model",
           "build_sam2_video", "get_sam2_config"]
