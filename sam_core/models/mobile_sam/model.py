"""MobileSam: the SAM model with a TinyViT encoder, and its builder."""

from __future__ import annotations

from sam_core.models.mobile_sam.config import MOBILE_SAM_CONFIGS, MobileSamConfig
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
    if isinstance(name_or_config, str):
        try:
            name_or_config = MOBILE_SAM_CONFIGS[name_or_config]
        except KeyError:
            raise ValueError(f"unknown MobileSAM model {name_or_config!r}; "
                             f"known: {sorted(MOBILE_SAM_CONFIGS)}") from None
    config = name_or_config
    return MobileSam(TinyViT(config.encoder), build_prompt_encoder(config), build_mask_decoder(config), config).eval()
