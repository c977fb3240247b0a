"""SamHQConfig: SAM-HQ is a SAM (ViT) or MobileSAM (TinyViT) model with an HQ mask decoder; its config is
the base model's config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sam_core.models.configs import config_named
from sam_core.models.mobile_sam.config import MobileSamConfig
from sam_core.models.sam.config import SAM_CONFIGS, SamConfig

EARLY_TINY_VIT_STAGE = 1  # TinyViT: the tokens after stage 1's patch merging (stride 16)


@dataclass(frozen=True)
class SamHQConfig:
    """Every shape of a SAM-HQ model: those of its base model (a SamConfig for the ViT encoders, a
    MobileSamConfig for TinyViT). The HQ layers' shapes follow from them."""

    base: SamConfig | MobileSamConfig = SAM_CONFIGS["vit_l"]

    def __post_init__(self) -> None:
        if not isinstance(self.base, SamConfig | MobileSamConfig):
            raise ValueError(f"invalid SamHQConfig: base must be a SamConfig or MobileSamConfig, got "
                             f"{type(self.base).__name__}")

    @property
    def uses_tiny_vit(self) -> bool:
        return isinstance(self.base, MobileSamConfig)

    @property
    def early_layer(self) -> int:
        """Where the early feature is taken: ViT: the first global-attention block; TinyViT: a stage."""
        if self.uses_tiny_vit:
            return EARLY_TINY_VIT_STAGE
        base = self.base
        if base.window_size == 0:
            return 0
        return min(base.encoder_global_attn_indexes)

    @property
    def vit_dim(self) -> int:
        """Channels of the early feature."""
        if isinstance(self.base, MobileSamConfig):
            return self.base.encoder.embed_dims[EARLY_TINY_VIT_STAGE + 1]
        return self.base.encoder_embed_dim

    @property
    def early_grid(self) -> int:
        return self.base.embedding_size

    def summary(self) -> str:
        return f"HQ, {self.base.summary()}"

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": "tiny_vit" if self.uses_tiny_vit else "vit", "base": self.base.to_dict()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SamHQConfig:
        unknown = sorted(set(values) - {"encoder", "base"})
        if unknown:
            raise ValueError(f"unknown SamHQConfig fields: {unknown}")
        base_type = {"vit": SamConfig, "tiny_vit": MobileSamConfig}.get(values.get("encoder", "vit"))
        if base_type is None:
            raise ValueError(f"SamHQConfig encoder must be 'vit' or 'tiny_vit', got {values.get('encoder')!r}")
        return cls(base_type.from_dict(values.get("base", {})))


SAM_HQ_CONFIGS: dict[str, SamHQConfig] = {
    **{f"sam_hq_{name}": SamHQConfig(SAM_CONFIGS[name]) for name in ("vit_b", "vit_l", "vit_h")},
    "sam_hq_vit_tiny": SamHQConfig(MobileSamConfig()),
}

SamHqConfig = SamHQConfig
"""The old spelling of :class:`SamHQConfig`, kept for existing callers."""


def get_sam_hq_config(name_or_config: str | SamHQConfig) -> SamHQConfig:
    """Return the config itself, or the registry entry of that name (``ValueError`` for an unknown name)."""
    return config_named(name_or_config, SAM_HQ_CONFIGS, SamHQConfig, "SAM-HQ model")
