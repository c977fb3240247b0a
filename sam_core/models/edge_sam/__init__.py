"""EdgeSAM: SAM's prompt encoder and mask decoder on a RepViT image encoder, with EdgeSAM's decoding options
(1, 3 or 4 outputs, stability scores, point label -2)."""

from sam_core.models.edge_sam.config import EDGE_SAM_CONFIGS, TINY_EDGE_SAM, EdgeSamConfig, RepViTConfig
from sam_core.models.edge_sam.model import EdgeSam, EdgeSamDecoding, build_edge_sam

__all__ = ["EDGE_SAM_CONFIGS", "TINY_EDGE_SAM", "EdgeSam", "EdgeSamConfig", "EdgeSamDecoding", "RepViTConfig",
           "build_edge_sam"]
