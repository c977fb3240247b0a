"""SAM 3's promptable visual segmentation (points, boxes, masks; images and video)."""

from sam_core.models.sam3.config import SAM3_CONFIGS, Sam3Config, get_sam3_config
from sam_core.models.sam3.model import Sam3, build_sam3_model

__all__ = ["SAM3_CONFIGS", "Sam3", "Sam3Config", "build_sam3_model", "get_sam3_config"]
