"""The reference projects' names, so that code written against them runs after changing its imports.

``sam_core.compat`` itself holds Meta's names (``segment_anything`` and ``sam2``, from :mod:`.meta`).
Nothing in sam_core uses this package.
"""

from sam_core.compat.meta import (
    SAM2AutomaticMaskGenerator,
    SAM2ImagePredictor,
    SAM2VideoPredictor,
    SamAutomaticMaskGenerator,
    SamPredictor,
    VideoPredictor,
    build_sam2,
    build_sam2_hf,
    build_sam2_video_predictor,
    sam2_registry_name,
    sam_model_registry,
)

__all__ = ["SAM2AutomaticMaskGenerator", "SAM2ImagePredictor", "SAM2VideoPredictor", "SamAutomaticMaskGenerator",
           "SamPredictor", "VideoPredictor", "build_sam2", "build_sam2_hf", "build_sam2_video_predictor",
           "sam2_registry_name", "sam_model_registry"]
