"""Hugging Face ``transformers`` SamHQModel checkpoints: tensor names and config.json in segment-anything-hq's
terms. The encoder, prompt encoder and SAM decoder parts are named as in SamModel."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from sam_core.errors import CheckpointError
from sam_core.models.hf_names import split_mlp_renumbering
from sam_core.models.sam.hf_format import hf_to_meta_state_dict, sam_config_from_hf
from sam_core.models.sam_hq.config import SamHQConfig

# SamHQModel's HQ layers -> segment-anything-hq's (each fusion stack is a Sequential: conv, norm, GELU, conv).
_HQ_RENAMES = [
    (r"^mask_decoder\.hq_token\.", "mask_decoder.hf_token."),
    (r"^mask_decoder\.hq_mask_mlp\.", "mask_decoder.hf_mlp."),
    *[(rf"^mask_decoder\.{hf}_{part}\.", f"mask_decoder.{meta}.{index}.")
      for hf, meta in (("compress_vit", "compress_vit_feat"), ("encoder", "embedding_encoder"),
                       ("mask", "embedding_maskfeature"))
      for part, index in (("conv1", 0), ("norm", 1), ("conv2", 3))],
]
# Hugging Face's split MLP of the HQ token (renumbered as Meta's, see split_mlp_renumbering).
_HQ_MLP = r"mask_decoder\.hq_mask_mlp"


def hf_to_sam_hq_state_dict(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a SamHQModel state dict to segment-anything-hq's names (the layouts are the same)."""
    return hf_to_meta_state_dict(tensors, [split_mlp_renumbering(tensors, _HQ_MLP), *_HQ_RENAMES])


def sam_hq_config_from_hf(hf_config: Mapping[str, object], origin: str = "config.json") -> SamHQConfig:
    """Translate a ``transformers`` SamHQConfig (as the dict of its config.json) into a SamHQConfig."""
    if hf_config.get("model_type", "sam_hq") != "sam_hq":
        raise CheckpointError(f"{origin}: describes a {hf_config['model_type']!r} model, not SAM-HQ")
    config = SamHQConfig(sam_config_from_hf({**hf_config, "model_type": "sam"}, origin))
    vit_dim = (hf_config.get("mask_decoder_config") or {}).get("vit_dim", config.vit_dim)  # type: ignore[union-attr]
    if vit_dim != config.vit_dim:
        raise CheckpointError(f"{origin}: mask_decoder_config.vit_dim {vit_dim} differs from the encoder's width "
                              f"{config.vit_dim}, which SAM-HQ fuses")
    return config
