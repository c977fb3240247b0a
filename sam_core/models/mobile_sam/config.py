"""MobileSamConfig: a TinyViT encoder's shapes plus SAM's prompt encoder and mask decoder shapes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from sam_core.errors import CheckpointError
from sam_core.models.configs import EncoderDecoderConfig, config_named, infer_decoder_fields
from sam_core.models.tiny_vit.config import TinyViTConfig, infer_tiny_vit_config


@dataclass(frozen=True)
class MobileSamConfig(EncoderDecoderConfig):
    """Every shape of a MobileSAM model. Defaults are the released ``vit_t``. The decoder fields
    (:class:`~sam_core.models.configs.DecoderFields`) mean what SamConfig's do; the prompt embedding width is
    the encoder's ``out_chans``."""

    nested_configs = {"encoder": TinyViTConfig}

    encoder: TinyViTConfig = field(default_factory=TinyViTConfig)


MOBILE_SAM_CONFIGS: dict[str, MobileSamConfig] = {"vit_t": MobileSamConfig()}


def get_mobile_sam_config(name_or_config: str | MobileSamConfig) -> MobileSamConfig:
    """Return the config itself, or the registry entry of that name (``ValueError`` for an unknown name)."""
    return config_named(name_or_config, MOBILE_SAM_CONFIGS, MobileSamConfig, "MobileSAM model")


def infer_mobile_sam_config(state_dict: Mapping[str, torch.Tensor], origin: str = "state dict") -> MobileSamConfig:
    """The MobileSamConfig whose shapes produce ``state_dict`` (MobileSAM's names); see
    ``infer_tiny_vit_config`` for what the weights cannot tell."""
    encoder = infer_tiny_vit_config(state_dict, "image_encoder.", origin)
    try:
        return MobileSamConfig(encoder=encoder, **infer_decoder_fields(state_dict, origin))
    except ValueError as error:
        raise CheckpointError(f"{origin}: tensor shapes describe no valid MobileSAM model ({error})") from None
