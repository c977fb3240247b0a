"""Old path, kept as a re-export: ``sam_core.sam2`` is now ``sam_core.models.sam2`` (the networks),
``sam_core.pipelines.video_predictor`` and ``sam_core.io.checkpoints.load_sam2``."""

from sam_core.compat.meta import build_sam2_video_predictor
from sam_core.io.checkpoints import load_sam2
from sam_core.models.sam2 import (
    OFFICIAL_SAM2_MODELS,
    SAM2_CONFIGS,
    Sam2,
    Sam2Config,
    Sam2Video,
    build_sam2_model,
    build_sam2_video,
    get_sam2_config,
)
from sam_core.models.sam2 import build_sam2_model as build_sam2
from sam_core.pipelines.video_predictor import VideoPredictor

__all__ = ["OFFICIAL_SAM2_MODELS", "SAM2_CONFIGS", "Sam2", "Sam2Config", "Sam2Video", "VideoPredictor", "build_sam2",
           "build_sam2_model", "build_sam2_video", "build_sam2_video_predictor", "get_sam2_config", "load_sam2"]
