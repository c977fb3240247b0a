"""EdgeTam: EdgeTAM's image model (RepViT trunk, SAM 2's FPN neck, prompt encoder and mask decoder) behind the
model interface, and its builder. Everything but the trunk is :class:`~sam_core.models.sam2.model.Sam2`'s, under
Meta's names; the trunk's are EdgeSAM's (``image_encoder.trunk.features.N``), which the checkpoint readers map
from timm's (``sam_core.models.edgetam.checkpoint``)."""

from __future__ import annotations

from sam_core.models.edgetam.config import EdgeTamConfig, get_edgetam_config
from sam_core.models.edgetam.trunk import RepViTTrunk
from sam_core.models.sam2.model import Sam2, assemble_sam2


class EdgeTam(Sam2):
    """EdgeTAM for images: SAM 2's decoding (and its ``predict_masks``, ``encode_image``...) on a RepViT trunk.

    Args: as :class:`~sam_core.models.sam2.model.Sam2`'s; ``config`` is an EdgeTamConfig.
    """

    family = "edgetam"


def build_edgetam(name_or_config: str | EdgeTamConfig = "edgetam") -> EdgeTam:
    """A randomly initialised EdgeTAM image model, in eval mode.

    Args:
        name_or_config: a registry name of ``EDGETAM_CONFIGS`` ("edgetam", "edgetam_test") or an EdgeTamConfig.

    Returns:
        The EdgeTam.
    """
    config = get_edgetam_config(name_or_config)
    return assemble_sam2(config, RepViTTrunk(config), EdgeTam)
