"""sam_core: Segment Anything, compact, checkpoint-compatible and fast."""

# First, before anything imports torch: OpenMP reads its wait policy when torch loads (see the module).
import sam_core.openmp_wait  # noqa: F401
from sam_core import finetune
from sam_core.compat import (
    SAM2AutomaticMaskGenerator,
    SAM2ImagePredictor,
    SAM2VideoPredictor,
    SamAutomaticMaskGenerator,
    SamPredictor,
    build_sam2_video_predictor,
    sam_model_registry,
)
from sam_core.fast_paths import fast_paths, fast_paths_enabled
from sam_core.finetune.config import FinetuneConfig
from sam_core.finetune.evaluate import Evaluation, evaluate, format_comparison
from sam_core.interface import MaskPrediction, PromptableSegmenter, Prompts
from sam_core.io.checkpoints import CheckpointError, LoadedCheckpoint, infer_config, load_checkpoint, load_sam, save_sam
from sam_core.models.sam import Sam
from sam_core.models.sam.config import SAM_CONFIGS, SamConfig, get_config
from sam_core.models.sam2 import SAM2_CONFIGS, Sam2, Sam2Config, Sam2Video
from sam_core.pipelines.mask_generator import AutomaticMaskGenerator
from sam_core.pipelines.predictor import Predictor
from sam_core.pipelines.video_predictor import VideoPredictor
from sam_core.registry import FAMILIES, model_names
from sam_core.registry import build_model as build_sam
from sam_core.runtime import keep_freed_memory, quantize_encoder_int8
from sam_core.transforms import ResizeLongestSide, StretchToSquare

__all__ = [
    "FAMILIES",
    "SAM2_CONFIGS",
    "SAM_CONFIGS",
    "AutomaticMaskGenerator",
    "CheckpointError",
    "Evaluation",
    "FinetuneConfig",
    "LoadedCheckpoint",
    "MaskPrediction",
    "Predictor",
    "PromptableSegmenter",
    "Prompts",
    "ResizeLongestSide",
    "SAM2AutomaticMaskGenerator",
    "SAM2ImagePredictor",
    "SAM2VideoPredictor",
    "Sam",
    "Sam2",
    "Sam2Config",
    "Sam2Video",
    "SamAutomaticMaskGenerator",
    "SamConfig",
    "SamPredictor",
    "StretchToSquare",
    "VideoPredictor",
    "build_sam",
    "build_sam2_video_predictor",
    "evaluate",
    "fast_paths",
    "fast_paths_enabled",
    "finetune",
    "format_comparison",
    "get_config",
    "infer_config",
    "keep_freed_memory",
    "load_checkpoint",
    "load_sam",
    "model_names",
    "quantize_encoder_int8",
    "sam_model_registry",
    "save_sam",
]
