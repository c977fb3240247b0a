"""sam_core: Segment Anything, compact, checkpoint-compatible and fast."""

from sam_core.checkpoint import CheckpointError, load_sam, sam_model_registry, save_sam
from sam_core.config import SAM_CONFIGS, SamConfig, get_config
from sam_core.fast_paths import fast_paths, fast_paths_enabled
from sam_core.mask_generator import AutomaticMaskGenerator, SamAutomaticMaskGenerator
from sam_core.modeling import Sam, build_sam
from sam_core.predictor import Predictor, SamPredictor
from sam_core.runtime import keep_freed_memory, quantize_encoder_int8
from sam_core.transforms import ResizeLongestSide

__all__ = [
    "SAM_CONFIGS",
    "AutomaticMaskGenerator",
    "CheckpointError",
    "Predictor",
    "ResizeLongestSide",
    "Sam",
    "SamAutomaticMaskGenerator",
    "SamConfig",
    "SamPredictor",
    "build_sam",
    "fast_paths",
    "fast_paths_enabled",
    "get_config",
    "keep_freed_memory",
    "load_sam",
    "quantize_encoder_int8",
    "sam_model_registry",
    "save_sam",
]
