"""transformers' EdgeTamModel / EdgeTamVideoModel folders: tensor names and config.json in sam_core's terms.

Their trunk is timm's RepViT under ``vision_encoder.backbone.timm_model.``; everything else has SAM 2's
Hugging Face names (``sam_core.models.sam2.hf_format``), the spatial perceiver and the memory attention's
memory attention's feed-forward names of their own (``sam_core.models.edgetam.hf_video_format``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from sam_core.errors import CheckpointError
from sam_core.models.edgetam.checkpoint import HF_TRUNK, META_TRUNK, rename_timm_trunk
from sam_core.models.edgetam.config import EdgeTamConfig
from sam_core.models.edgetam.hf_video_format import edgetam_video_settings_from_hf, hf_perceiver_to_meta
from sam_core.models.sam2.hf_format import heads_settings_from_hf, hf_to_meta_state_dict

# timm's repvit_m1 (what EdgeTamVisionConfig's backbone builds unless its model_args say otherwise).
M1_EMBED_DIMS, M1_DEPTHS = (48, 96, 192, 384), (2, 2, 14, 2)


def to_native_names(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta's (``edgetam.pt``), transformers' or sam_core's EdgeTAM names -> sam_core's."""
    if any(name.startswith(HF_TRUNK) for name in tensors):
        trunk = {META_TRUNK + name[len(HF_TRUNK):] if name.startswith(HF_TRUNK) else name: tensor
                 for name, tensor in tensors.items()}
        tensors = hf_to_meta_state_dict(hf_perceiver_to_meta(trunk))
    return rename_timm_trunk(tensors, META_TRUNK)


def edgetam_config_from_hf(hf_config: Mapping[str, Any], origin: str = "config.json") -> EdgeTamConfig:
    """The EdgeTamConfig of a transformers EdgeTamModel or EdgeTamVideoModel ``config.json``."""
    try:
        vision = hf_config["vision_config"]
        backbone = vision.get("backbone_config") or {}
        architecture = backbone.get("architecture", "repvit_m1")
        if architecture != "repvit_m1":
            raise ValueError(f"backbone {architecture!r}: sam_core's EdgeTAM has timm's repvit_m1 trunk")
        model_args = backbone.get("model_args") or {}
        d_model = vision.get("fpn_hidden_size", 256)
        image_size = hf_config.get("prompt_encoder_config", {}).get("image_size", 1024)
        return EdgeTamConfig(
            image_size=image_size,
            repvit_embed_dims=tuple(model_args.get("embed_dim", M1_EMBED_DIMS)),
            repvit_depths=tuple(model_args.get("depth", M1_DEPTHS)),
            d_model=d_model,
            scalp=4 - vision.get("num_feature_levels", 3),
            fpn_top_down_levels=tuple(vision.get("fpn_top_down_levels", (2, 3))),
            **heads_settings_from_hf(hf_config),
            **edgetam_video_settings_from_hf(hf_config, d_model, image_size),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{origin}: not a usable Hugging Face EdgeTAM config ({error!r})") from None
