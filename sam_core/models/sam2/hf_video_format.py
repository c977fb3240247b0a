"""Hugging Face ``transformers`` ``Sam2VideoModel`` checkpoints: the video-only tensors (memory attention, memory
encoder, object pointers...) under Meta's names.

A ``Sam2VideoModel.save_pretrained`` folder holds the image model under ``Sam2Model``'s names (renamed by
``sam_core.models.sam2.hf_format``) and the video modules under names of its own, renamed here. The layouts
are the same: every tensor keeps its shape and values, only its name changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from sam_core.models.hf_names import rename_tensors

# Sam2VideoModel's names of the video modules -> Meta's, applied in order to each name.
_HF_VIDEO_RENAMES: list[tuple[str, str]] = [
    (r"^no_memory_positional_encoding$", "no_mem_pos_enc"),
    (r"^memory_temporal_positional_encoding$", "maskmem_tpos_enc"),
    (r"^no_object_pointer$", "no_obj_ptr"),
    (r"^occlusion_spatial_embedding_parameter$", "no_obj_embed_spatial"),
    (r"^object_pointer_proj\.", "obj_ptr_proj."),
    (r"^temporal_positional_encoding_projection_layer\.", "obj_ptr_tpos_proj."),
    (r"^(memory_attention\.layers\.\d+\.(?:self_attn|cross_attn_image))\.o_proj\.", r"\1.out_proj."),
    (r"^(memory_attention\.layers\.\d+)\.layer_norm(\d)\.", r"\1.norm\2."),
    (r"^memory_attention\.layer_norm\.", "memory_attention.norm."),
    (r"^memory_encoder\.feature_projection\.", "memory_encoder.pix_feat_proj."),
    (r"^memory_encoder\.projection\.", "memory_encoder.out_proj."),
    (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.scale$", r"memory_encoder.fuser.layers.\1.gamma"),
    (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.depthwise_conv\.", r"memory_encoder.fuser.layers.\1.dwconv."),
    (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.layer_norm\.", r"memory_encoder.fuser.layers.\1.norm."),
    (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.pointwise_conv(\d)\.",
     r"memory_encoder.fuser.layers.\1.pwconv\2."),
]
# The mask downsampler: Hugging Face has layers.i.{conv, layer_norm} and final_conv; Meta one Sequential, in which
# each layer is (conv, norm, activation) and the final 1x1 convolution follows the last layer.
_HF_DOWNSAMPLER = re.compile(r"^memory_encoder\.mask_downsampler\.(?:layers\.(\d+)\.(conv|layer_norm)|final_conv)\.")
_DOWNSAMPLER_LAYER = re.compile(r"^memory_encoder\.mask_downsampler\.layers\.(\d+)\.")
_META_DOWNSAMPLER = "memory_encoder.mask_downsampler.encoder."
_MODULES_PER_LAYER = 3  # conv, LayerNorm2d, GELU


def hf_video_to_meta_names(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the video-only tensors of a ``Sam2VideoModel`` state dict to Meta's names; other names (the image
    model's, for ``hf_format``) pass through unchanged."""
    downsampler_layers = len({match.group(1) for name in tensors if (match := _DOWNSAMPLER_LAYER.match(name))})

    def rename_downsampler(match: re.Match[str]) -> str:
        layer, part = match.groups()
        if layer is None:  # final_conv
            return f"{_META_DOWNSAMPLER}{downsampler_layers * _MODULES_PER_LAYER}."
        return f"{_META_DOWNSAMPLER}{int(layer) * _MODULES_PER_LAYER + (part == 'layer_norm')}."

    return rename_tensors(tensors, [(_HF_DOWNSAMPLER, rename_downsampler), *_HF_VIDEO_RENAMES])


# Sam2VideoConfig's video settings -> Sam2Config's fields of the same meaning (defaults: SAM 2.1's, which are also
# what an image-only Sam2Model config.json implies).
_HF_VIDEO_FIELDS = {
    "num_maskmem": "num_maskmem",
    "memory_encoder_output_channels": "mem_dim",
    "memory_attention_num_layers": "memory_attention_layers",
    "memory_attention_num_attention_heads": "memory_attention_heads",
    "memory_attention_feed_forward_hidden_size": "memory_attention_mlp_dim",
    "sigmoid_scale_for_mem_enc": "sigmoid_scale_for_mem_enc",
    "sigmoid_bias_for_mem_enc": "sigmoid_bias_for_mem_enc",
    "multimask_output_in_sam": "multimask_output_in_sam",
    "multimask_output_for_tracking": "multimask_output_for_tracking",
    "multimask_min_pt_num": "multimask_min_pt_num",
    "multimask_max_pt_num": "multimask_max_pt_num",
    "max_object_pointers_in_encoder": "max_obj_ptrs_in_encoder",
    "max_cond_frame_num": "max_cond_frames_in_attn",
    "enable_occlusion_spatial_embedding": "no_obj_embed_spatial",
}
# Settings sam_core's video modules fix (Meta's and transformers' defaults); a config.json that differs is refused.
_HF_VIDEO_FIXED = {
    "memory_attention_downsample_rate": 1, "memory_attention_feed_forward_hidden_act": "relu",
    "mask_downsampler_kernel_size": 3, "mask_downsampler_stride": 2, "mask_downsampler_padding": 1,
    "mask_downsampler_total_stride": 16, "mask_downsampler_hidden_act": "gelu", "memory_fuser_num_layers": 2,
    "memory_fuser_kernel_size": 7, "memory_fuser_padding": 3, "memory_fuser_hidden_act": "gelu",
}


def video_settings_from_hf(hf_config: Mapping[str, Any], d_model: int, image_size: int,
                           stride: int = 16) -> dict[str, Any]:
    """Sam2Config fields of the video settings of a Hugging Face ``Sam2VideoConfig`` (as the dict of its
    config.json; ``stride``: the image embedding's, 14 for SAM 3's tracker); absent fields keep sam_core's defaults.
    Raises ``ValueError`` naming the settings sam_core's video model cannot take."""
    settings = {ours: hf_config[theirs] for theirs, ours in _HF_VIDEO_FIELDS.items() if theirs in hf_config}
    if "enable_temporal_pos_encoding_for_object_pointers" in hf_config:
        # One switch in transformers: the pointers' signed temporal distance, projected to mem_dim (SAM 2.1).
        enabled = bool(hf_config["enable_temporal_pos_encoding_for_object_pointers"])
        settings.update(add_tpos_enc_to_obj_ptrs=enabled, proj_tpos_enc_in_obj_ptrs=enabled,
                        use_signed_tpos_enc_to_obj_ptrs=enabled)
    rope = hf_config.get("rope_parameters") or {}
    if "rope_theta" in rope:
        settings["rope_theta"] = float(rope["rope_theta"])
    grid = image_size // stride
    # The widths sam_core derives from d_model (Meta's configs set them all to the image embedding's width).
    derived = {"memory_attention_hidden_size": d_model, "memory_encoder_hidden_size": d_model,
               "mask_downsampler_embed_dim": d_model, "memory_fuser_embed_dim": d_model,
               "memory_fuser_intermediate_dim": 4 * d_model, "memory_attention_rope_feat_sizes": [grid, grid]}
    fixed = {**_HF_VIDEO_FIXED, **derived}
    unsupported = [f"{key}={hf_config[key]!r} (sam_core: {value!r})" for key, value in fixed.items()
                   if key in hf_config and hf_config[key] != value]
    if unsupported:
        raise ValueError(f"video settings sam_core does not implement: {', '.join(unsupported)}")
    return settings
