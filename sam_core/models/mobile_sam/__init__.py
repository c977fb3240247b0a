"""MobileSAM: SAM's prompt encoder and mask decoder on a TinyViT image encoder."""

from sam_core.models.mobile_sam.config import MOBILE_SAM_CONFIGS, MobileSamConfig
from sam_core.models.mobile_sam.model import MobileSam, build_mobile_sam

__all__ = ["MOBILE_SAM_CONFIGS", "MobileSam", "MobileSamConfig", "build_mobile_sam"]
