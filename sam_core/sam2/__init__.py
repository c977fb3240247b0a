"""SAM 2 / SAM 2.1: the image model (Hiera + FPN image encoder, prompt encoder, mask decoder) and video tracking."""

from sam_core.sam2.checkpoint import load_sam2
from sam_core.sam2.config import OFFICIAL_SAM2_MODELS, SAM2_CONFIGS, Sam2Config, get_sam2_config
from sam_core.sam2.model import Sam2, build_sam2
from sam_core.sam2.video_model import Sam2Video, build_sam2_video
from sam_core.sam2.video_predictor import VideoPredictor, build_sam2_video_predictor

__all__ = ["OFFICIAL_SAM2_MODELS", "SAM2_CONFIGS", "Sam2", "Sam2Config", "Sam2Video", "VideoPredictor",
           "build_sam2", "build_sam2_video", "build_sam2_video_predictor", "get_sam2_config", "load_sam2"]
