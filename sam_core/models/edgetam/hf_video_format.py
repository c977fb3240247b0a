"""transformers' EdgeTamVideoModel: the spatial perceiver's names and the video settings of its config.json."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from sam_core.models.hf_names import rename_tensors
from sam_core.models.sam2.hf_video_format import video_settings_from_hf

_HF_PERCEIVER_RENAMES: list[tuple[str, str]] = []


def hf_perceiver_to_meta(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EdgeTamVideoModel's perceiver and memory-attention names -> Meta's; other names unchanged."""
    return rename_tensors(tensors, _HF_PERCEIVER_RENAMES)


def edgetam_video_settings_from_hf(hf_config: Mapping[str, Any], d_model: int, image_size: int) -> dict[str, Any]:
    """EdgeTamConfig's video fields of an EdgeTamVideoConfig (an EdgeTamModel's config has none: defaults)."""
    if "memory_attention_num_layers" not in hf_config:
        return {}
    return video_settings_from_hf(hf_config, d_model, image_size)
