"""sam_core: Segment Anything, compact, checkpoint-compatible and fast."""

from sam_core.config import SAM_CONFIGS, SamConfig, get_config
from sam_core.modeling import Sam, build_sam
from sam_core.transforms import ResizeLongestSide

__all__ = [
    "SAM_CONFIGS",
    "ResizeLongestSide",
    "Sam",
    "SamConfig",
    "build_sam",
    "get_config",
]
