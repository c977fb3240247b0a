"""Hugging Face ``transformers`` ``Sam2VideoModel`` checkpoints: the video-only tensors (memory attention, memory
encoder, object pointers...) under Meta's names.

A ``Sam2VideoModel.save_pretrained`` folder holds the image model under ``Sam2Model``'s names (renamed by
``sam_core.sam2.hf_format``) and the video modules under names of its own, renamed here. The layouts are the same:
every tensor keeps its shape and values, only its name changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

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

    renamed = {}
    for name, tensor in tensors.items():
        new_name = _HF_DOWNSAMPLER.sub(rename_downsampler, name)
        for pattern, replacement in _HF_VIDEO_RENAMES:
            new_name = re.sub(pattern, replacement, new_name)
        renamed[new_name] = tensor
    return renamed
