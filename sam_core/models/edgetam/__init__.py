"""EdgeTAM: SAM 2's FPN neck, prompt encoder, mask decoder and memory on a RepViT trunk (EdgeSAM's blocks), with a
spatial perceiver compressing each frame's memory and two memory-attention layers."""

from sam_core.models.edgetam.config import EDGETAM_CONFIGS, EdgeTamConfig, get_edgetam_config
from sam_core.models.edgetam.model import EdgeTam, build_edgetam

__all__ = ["EDGETAM_CONFIGS", "EdgeTam", "EdgeTamConfig", "build_edgetam", "get_edgetam_config"]
