"""SAM 3's promptable visual segmentation (points, boxes, masks; images and video)."""

from sam_core.models.sam3.config import SAM3_CONFIGS, Sam3Config, get_sam3_config
from sam_core.models.sam3.model import Sam3, build_sam3_model
from sam_core.models.sam3.video import Sam3Video, build_sam3_video

__all__ = ["SAM3_CONFIGS", "Sam3", "Sam3Config", "Sam3Video", "build_sam3_model", "build_sam3_video",
           "get_sam3_config"]
