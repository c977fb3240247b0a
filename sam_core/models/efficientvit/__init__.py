"""EfficientViT-SAM (Zhang et al., 2024): SAM 1's prompt encoder and mask decoder on an EfficientViT image
encoder (MBConv / FusedMBConv stages and ReLU linear attention with multi-scale aggregation)."""

from sam_core.models.efficientvit.config import EFFICIENTVIT_SAM_CONFIGS, EfficientViTSamConfig
from sam_core.models.efficientvit.model import EfficientViTSam, build_efficientvit_sam

__all__ = ["EFFICIENTVIT_SAM_CONFIGS", "EfficientViTSam", "EfficientViTSamConfig", "build_efficientvit_sam"]
