"""SAM-HQ: SAM (or MobileSAM) with a high-quality output token and early-feature fusion in the decoder."""

from sam_core.models.sam_hq.config import SAM_HQ_CONFIGS, SamHQConfig, SamHqConfig
from sam_core.models.sam_hq.model import SamHQ, build_sam_hq

__all__ = ["SAM_HQ_CONFIGS", "SamHQ", "SamHQConfig", "SamHqConfig", "build_sam_hq"]
