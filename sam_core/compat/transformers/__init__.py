"""transformers' mask-generation names on sam_core: code written for the transformers task guide
(``pipeline("mask-generation")``, ``SamModel`` / ``SamProcessor``, ``SamHQModel``, ``Sam2Model`` /
``Sam2Processor``) runs after changing its imports to ``sam_core.compat.transformers``, without transformers
installed. Differences from transformers and from Meta's generator: docs/compat-transformers.md."""

from sam_core.compat.transformers.images import (
    BatchFeature,
    NativeImageProcessor,
    Sam2ImageProcessor,
    SamImageProcessor,
    image_processor_for,
    load_image,
)
from sam_core.compat.transformers.mask_generation import MaskGenerationPipeline, pipeline
from sam_core.compat.transformers.modeling import (
    Sam2ImageSegmentationOutput,
    Sam2Model,
    SamHQModel,
    SamImageSegmentationOutput,
    SamModel,
)
from sam_core.compat.transformers.processing import Sam2Processor, SamProcessor

SamHQProcessor = SamProcessor

__all__ = [
    "BatchFeature", "MaskGenerationPipeline", "NativeImageProcessor", "Sam2ImageProcessor",
    "Sam2ImageSegmentationOutput", "Sam2Model", "Sam2Processor", "SamHQModel", "SamHQProcessor", "SamImageProcessor",
    "SamImageSegmentationOutput", "SamModel", "SamProcessor", "image_processor_for", "load_image", "pipeline",
]
