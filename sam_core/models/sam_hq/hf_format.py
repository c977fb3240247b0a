"""Hugging Face ``transformers`` SamHQModel checkpoints: tensor names and config.json in segment-anything-hq's
terms. The encoder, prompt encoder and SAM decoder parts are named as in SamModel."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from sam_core.errors import CheckpointError
from sam_core.models.sam.hf_format import hf_to_meta_state_dict, sam_config_from_hf
from sam_core.models.sam_hq.config import SamHqConfig

# SamHQModel's HQ layers -> segment-anything-hq's (each fusion stack is a Sequential: conv, norm, GELU, conv).
_HQ_RENAMES = [
    (r"^mask_decoder\.hq_token\.", "mask_decoder.hf_token."),
    *[(rf"^mask_decoder\.{hf}_{part}\.", f"mask_decoder.{meta}.{index}.")
      for hf, meta in (("compress_vit", "compress_vit_feat"), ("encoder", "embedding_encoder"),
                       ("mask", "embedding_maskfeature"))
      for part, index in (("conv1", 0), ("norm", 1), ("conv2", 3))],
]
_HQ_MLP = re.compile(r"^mask_decoder\.hq_mask_mlp\.(proj_in|proj_out|layers\.(\d+))\.")


def hf_to_sam_hq_state_dict(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a SamHQModel state dict to segment-anything-hq's names (the layouts are the same)."""
    renamed = hf_to_meta_state_dict(tensors)
    hidden = 1 + max((int(m.group(2)) for name in renamed if (m := _HQ_MLP.match(name)) and m.group(2)), default=-1)

    def rename_mlp(match: re.Match[str]) -> str:
        part, index = match.groups()
        position = 0 if part == "proj_in" else hidden + 1 if part == "proj_out" else int(index) + 1
        return f"mask_decoder.hf_mlp.layers.{position}."

    result = {}
    for name, tensor in renamed.items():
        name = _HQ_MLP.sub(rename_mlp, name)
        for pattern, replacement in _HQ_RENAMES:
            name = re.sub(pattern, replacement, name)
        result[name] = tensor
    return result


def sam_hq_config_from_hf(hf_config: Mapping[str, object], origin: str = "config.json") -> SamHqConfig:
    """Translate a ``transformers`` SamHQConfig (as the dict of its config.json) into a SamHqConfig."""
    if hf_config.get("model_type", "sam_hq") != "sam_hq":
        raise CheckpointError(f"{origin}: describes a {hf_config['model_type']!r} model, not SAM-HQ")
    config = SamHqConfig(sam_config_from_hf({**hf_config, "model_type": "sam"}, origin))
    vit_dim = (hf_config.get("mask_decoder_config") or {}).get("vit_dim", config.vit_dim)  # type: ignore[union-attr]
    if vit_dim != config.vit_dim:
        raise CheckpointError(f"{origin}: mask_decoder_config.vit_dim {vit_dim} differs from the encoder's width "
                              f"{config.vit_dim}, which SAM-HQ fuses")
    return config
