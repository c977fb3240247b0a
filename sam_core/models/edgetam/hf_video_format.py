"""transformers' EdgeTamVideoModel: the names of its spatial perceiver and memory attention, and the video settings
of its config.json, in sam_core's (Meta's) terms. The other video modules have Sam2VideoModel's names
(``sam_core.models.sam2.hf_video_format``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from sam_core.models.hf_names import rename_tensors
from sam_core.models.sam2.hf_video_format import video_settings_from_hf

_PERCEIVER = r"^spatial_perceiver\."
_HF_VIDEO_RENAMES: list[tuple[str, str]] = [
    (r"^(memory_attention\.layers\.\d+)\.mlp\.up_proj\.", r"\1.linear1."),
    (r"^(memory_attention\.layers\.\d+)\.mlp\.down_proj\.", r"\1.linear2."),
    (_PERCEIVER + r"latents_1d$", "spatial_perceiver.latents"),
    (_PERCEIVER + r"layer_norm\.", "spatial_perceiver.norm."),
    (_PERCEIVER + r"layers\.(\d+)\.layer_norm_input\.", r"spatial_perceiver.layers.\1.attn.norm_x."),
    (_PERCEIVER + r"layers\.(\d+)\.layer_norm_latents\.", r"spatial_perceiver.layers.\1.attn.norm_latents."),
    (_PERCEIVER + r"layers\.(\d+)\.layer_norm_self\.", r"spatial_perceiver.layers.\1.self_attn.norm."),
    (_PERCEIVER + r"layers\.(\d+)\.cross_attention\.", r"spatial_perceiver.layers.\1.attn."),
    (_PERCEIVER + r"layers\.(\d+)\.self_attention\.", r"spatial_perceiver.layers.\1.self_attn."),
    (_PERCEIVER + r"layers\.(\d+)\.mlp\.", r"spatial_perceiver.layers.\1.ff."),
    (_PERCEIVER + r"layers\.(\d+)\.self_mlp\.", r"spatial_perceiver.layers.\1.self_ff."),
    (r"^(spatial_perceiver\.layers\.\d+\.(?:attn|self_attn))\.q_proj\.", r"\1.to_q."),
    (r"^(spatial_perceiver\.layers\.\d+\.(?:attn|self_attn))\.o_proj\.", r"\1.to_out."),
    (r"^(spatial_perceiver\.layers\.\d+\.(?:ff|self_ff))\.layer_norm\.", r"\1.0."),
    (r"^(spatial_perceiver\.layers\.\d+\.(?:ff|self_ff))\.up_proj\.", r"\1.1."),
    (r"^(spatial_perceiver\.layers\.\d+\.(?:ff|self_ff))\.down_proj\.", r"\1.3."),
]
# transformers projects keys and values apart; Meta with one matrix, keys first.
_HF_KEY_PROJ = re.compile(_PERCEIVER + r"layers\.(\d+)\.(cross_attention|self_attention)\.k_proj\.weight$")


def hf_perceiver_to_meta(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """EdgeTamVideoModel's perceiver and memory-attention names -> Meta's; other names unchanged."""
    merged = dict(tensors)
    for name in [name for name in tensors if _HF_KEY_PROJ.match(name)]:
        value_name = name.replace(".k_proj.", ".v_proj.")
        merged[name.replace(".k_proj.", ".to_kv.")] = torch.cat([merged.pop(name), merged.pop(value_name)])
    return rename_tensors(merged, _HF_VIDEO_RENAMES)


# EdgeTamVideoConfig's names -> Sam2VideoConfig's, where they differ.
_HF_SAM2_NAMES = {"memory_attention_mlp_hidden_size": "memory_attention_feed_forward_hidden_size",
                  "memory_attention_mlp_hidden_act": "memory_attention_feed_forward_hidden_act"}


def edgetam_video_settings_from_hf(hf_config: Mapping[str, Any], d_model: int, image_size: int) -> dict[str, Any]:
    """EdgeTamConfig's video fields of an EdgeTamVideoConfig (an EdgeTamModel's config.json has none: the
    released model's). Raises ``ValueError`` naming the settings sam_core's EdgeTAM cannot take."""
    if "perceiver_resampler_num_latents" not in hf_config:
        return {}
    sam2_named = {_HF_SAM2_NAMES.get(key, key): value for key, value in hf_config.items()}
    settings = video_settings_from_hf(sam2_named, d_model, image_size)
    settings.setdefault("add_tpos_enc_to_obj_ptrs", False)
    settings.setdefault("proj_tpos_enc_in_obj_ptrs", False)
    settings.setdefault("use_signed_tpos_enc_to_obj_ptrs", False)
    settings.setdefault("no_obj_embed_spatial", False)
    mem_dim = settings.get("mem_dim", 64)
    heads, head_dim = hf_config.get("perceiver_resampler_num_attention_heads", 1), \
        hf_config.get("perceiver_resampler_attention_head_dim", 64)
    latents_2d = hf_config.get("perceiver_resampler_num_latents_2d", 256)
    intermediate = hf_config.get("perceiver_resampler_mlp_intermediate_size", 4 * mem_dim)
    key_grid = [math.isqrt(latents_2d)] * 2
    fixed = {"perceiver_resampler_hidden_size": mem_dim, "memory_attention_rope_k_sizes": key_grid}
    unsupported = [f"{key}={hf_config[key]!r} (sam_core: {value!r})" for key, value in fixed.items()
                   if hf_config.get(key) not in (None, value)]
    if intermediate % mem_dim:
        unsupported.append(f"perceiver_resampler_mlp_intermediate_size={intermediate} (a multiple of {mem_dim})")
    if unsupported:
        raise ValueError(f"EdgeTAM video settings sam_core does not implement: {', '.join(unsupported)}")
    return {**settings, "perceiver_latents": hf_config["perceiver_resampler_num_latents"],
            "perceiver_latents_2d": latents_2d, "perceiver_heads": heads, "perceiver_dim_head": head_dim,
            "perceiver_ff_mult": intermediate // mem_dim,
            "perceiver_depth": hf_config.get("perceiver_resampler_num_layers", 2)}
