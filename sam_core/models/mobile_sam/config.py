"""MobileSamConfig: a TinyViT encoder's shapes plus SAM's prompt encoder and mask decoder shapes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from sam_core.errors import CheckpointError
from sam_core.models.sam.config import infer_decoder_fields
from sam_core.models.tiny_vit.config import TinyViTConfig, infer_tiny_vit_config


@dataclass(frozen=True)
class MobileSamConfig:
    """Every shape of a MobileSAM model. Defaults are the released ``vit_t``. The decoder fields mean what
    SamConfig's do; the prompt embedding width is the encoder's ``out_chans``."""

    encoder: TinyViTConfig = field(default_factory=TinyViTConfig)
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    def __post_init__(self) -> None:
        if self.prompt_embed_dim % self.decoder_num_heads or self.prompt_embed_dim % 8:
            raise ValueError(f"invalid MobileSamConfig: the embedding width {self.prompt_embed_dim} must be "
                             f"divisible by 8 and by decoder_num_heads {self.decoder_num_heads}")

    @property
    def image_size(self) -> int:
        return self.encoder.image_size

    @property
    def prompt_embed_dim(self) -> int:
        return self.encoder.out_chans

    @property
    def embedding_size(self) -> int:
        return self.encoder.image_size // 16

    def summary(self) -> str:
        return self.encoder.summary()

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**values, "encoder": self.encoder.to_dict()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MobileSamConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown MobileSamConfig fields: {unknown}")
        encoder = values.get("encoder", {})
        return cls(**{**values, "encoder": TinyViTConfig.from_dict(encoder)})


MOBILE_SAM_CONFIGS: dict[str, MobileSamConfig] = {"vit_t": MobileSamConfig()}


def infer_mobile_sam_config(state_dict: Mapping[str, torch.Tensor], origin: str = "state dict") -> MobileSamConfig:
    """The MobileSamConfig whose shapes produce ``state_dict`` (MobileSAM's names); see
    ``infer_tiny_vit_config`` for what the weights cannot tell."""
    encoder = infer_tiny_vit_config(state_dict, "image_encoder.", origin)
    try:
        return MobileSamConfig(encoder=encoder, **infer_decoder_fields(state_dict, origin))
    except ValueError as error:
        raise CheckpointError(f"{origin}: tensor shapes describe no valid MobileSAM model ({error})") from None
