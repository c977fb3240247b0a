"""Drop-in names of Meta's packages, kept in this one place: code written for ``segment_anything`` runs after
changing its import to ``sam_core``. Nothing in sam_core itself uses them."""

from __future__ import annotations

import os

from sam_core.checkpoint import load_sam
from sam_core.families import build_model
from sam_core.mask_generator import AutomaticMaskGenerator
from sam_core.model_interface import PromptableSegmenter
from sam_core.predictor import Predictor

SamPredictor = Predictor
SamAutomaticMaskGenerator = AutomaticMaskGenerator


class _RegistryBuilder:
    """``sam_model_registry[name](checkpoint=...)``: the reference's entry point, backed by load_sam."""

    def __init__(self, model_type: str) -> None:
        self.model_type = model_type

    def __call__(self, checkpoint: str | os.PathLike | None = None) -> PromptableSegmenter:
        if checkpoint is None:
            return build_model(self.model_type)
        return load_sam(checkpoint, config=self.model_type)


sam_model_registry: dict[str, _RegistryBuilder] = {
    name: _RegistryBuilder(name) for name in ("default", "vit_h", "vit_l", "vit_b")
}
