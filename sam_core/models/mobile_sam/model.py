"""MobileSam: the SAM model with a TinyViT encoder, and its builder."""

from __future__ import annotations

from sam_core.models.mobile_sam.config import MobileSamConfig, get_mobile_sam_config
from sam_core.models.sam.model import Sam, build_mask_decoder, build_prompt_encoder
from sam_core.models.tiny_vit.encoder import TinyViT


class MobileSam(Sam):
    """MobileSAM: SAM with TinyViT as its image encoder; prompts and masks work exactly as SAM's.

    TinyViT's BatchNorm layers are folded into their convolutions in eval mode when the fast paths are on
    (``sam_core.fast_paths``); the plain path runs them as separate layers.
    """

    family = "mobile_sam"


def build_mobile_sam(name_or_config: str | MobileSamConfig = "vit_t") -> MobileSam:
    """A randomly initialised MobileSam of a registry name or config (eval mode)."""
    config = get_mobile_sam_config(name_or_config)
    return MobileSam(TinyViT(config.encoder), build_prompt_encoder(config), build_mask_decoder(config), config).eval()
