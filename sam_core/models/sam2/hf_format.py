"""Hugging Face ``transformers`` SAM 2 checkpoints (``Sam2Model.save_pretrained``): names and config.json in
Meta's terms, which are sam_core's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from sam_core.errors import CheckpointError
from sam_core.models.hf_names import rename_tensors, split_mlp_renumbering
from sam_core.models.sam2.config import Sam2Config
from sam_core.models.sam2.hf_video_format import hf_video_to_meta_names, video_settings_from_hf

# Hugging Face's Sam2Model names -> Meta's, applied in order to each name (after the MLP renumbering).
_HF_RENAMES: list[tuple[str, str]] = [
    (r"^vision_encoder\.backbone\.patch_embed\.projection\.", "image_encoder.trunk.patch_embed.proj."),
    (r"^vision_encoder\.backbone\.blocks\.(\d+)\.layer_norm(\d)\.", r"image_encoder.trunk.blocks.\1.norm\2."),
    (r"^vision_encoder\.backbone\.", "image_encoder.trunk."),
    (r"^vision_encoder\.neck\.convs\.(\d+)\.", r"image_encoder.neck.convs.\1.conv."),
    (r"^no_memory_embedding$", "no_mem_embed"),
    (r"^shared_image_embedding\.positional_embedding$",
     "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
    (r"^prompt_encoder\.mask_embed\.conv1\.", "sam_prompt_encoder.mask_downscaling.0."),
    (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "sam_prompt_encoder.mask_downscaling.1."),
    (r"^prompt_encoder\.mask_embed\.conv2\.", "sam_prompt_encoder.mask_downscaling.3."),
    (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "sam_prompt_encoder.mask_downscaling.4."),
    (r"^prompt_encoder\.mask_embed\.conv3\.", "sam_prompt_encoder.mask_downscaling.6."),
    (r"^prompt_encoder\.", "sam_prompt_encoder."),
    (r"^(mask_decoder\.transformer\.layers\.\d+)\.layer_norm(\d)\.", r"\1.norm\2."),
    (r"^(mask_decoder\.transformer\..*)\.o_proj\.", r"\1.out_proj."),
    (r"^mask_decoder\.transformer\.layer_norm_final_attn\.", "mask_decoder.transformer.norm_final_attn."),
    (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
    (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
    (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
    (r"^mask_decoder\.", "sam_mask_decoder."),
]
# Sam2Model keeps the prompt encoder's copy of the positional matrix tied to the shared one.
_HF_TIED_COPY = "prompt_encoder.shared_embedding.positional_embedding"
_HF_SHARED = "shared_image_embedding.positional_embedding"
_HF_POINT_EMBED = "prompt_encoder.point_embed.weight"  # (4, C): Meta has four (1, C) embeddings


def hf_to_meta_state_dict(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face Sam2Model (or Sam2VideoModel) state dict to Meta's SAM 2 names."""
    # The two tensors whose layout differs too, first; then names only.
    untied: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if name == _HF_TIED_COPY:
            if _HF_SHARED not in tensors:
                untied[_HF_SHARED] = tensor  # only the copy was saved
            elif not torch.equal(tensor, tensors[_HF_SHARED]):
                # Meta's model has one matrix for prompts and image positions alike.
                raise CheckpointError(f"{_HF_TIED_COPY} differs from {_HF_SHARED}; they should be tied")
        elif name == _HF_POINT_EMBED:
            for index, row in enumerate(tensor):
                untied[f"sam_prompt_encoder.point_embeddings.{index}.weight"] = row[None].clone()
        else:
            untied[name] = tensor
    # Every MLP of Sam2Model is split (Hiera blocks, decoder transformer, heads).
    renamed = rename_tensors(untied, [split_mlp_renumbering(untied), *_HF_RENAMES])
    return hf_video_to_meta_names(renamed)


def decoder_settings_from_hf(hf_config: Mapping[str, Any]) -> dict[str, Any]:
    """Sam2Config's prompt encoder and mask decoder fields of a Hugging Face SAM 2 (or EdgeTAM) ``config.json``."""
    decoder = hf_config.get("mask_decoder_config", {})
    return dict(
        mask_in_chans=hf_config.get("prompt_encoder_config", {}).get("mask_input_channels", 16),
        decoder_depth=decoder.get("num_hidden_layers", 2),
        decoder_num_heads=decoder.get("num_attention_heads", 8),
        decoder_mlp_dim=decoder.get("mlp_dim", 2048),
        num_multimask_outputs=decoder.get("num_multimask_outputs", 3),
        iou_head_depth=decoder.get("iou_head_depth", 3),
        iou_head_hidden_dim=decoder.get("iou_head_hidden_dim", 256),
        dynamic_multimask_via_stability=decoder.get("dynamic_multimask_via_stability", True),
        dynamic_multimask_stability_delta=decoder.get("dynamic_multimask_stability_delta", 0.05),
        dynamic_multimask_stability_thresh=decoder.get("dynamic_multimask_stability_thresh", 0.98),
    )


def sam2_config_from_hf(hf_config: Mapping[str, Any], origin: str = "config.json") -> Sam2Config:
    """The Sam2Config of a Hugging Face Sam2Model or Sam2VideoModel ``config.json`` (Meta's model has per-stage
    widths and heads that double at every stage; others are refused)."""
    try:
        vision = hf_config["vision_config"]
        trunk = vision["backbone_config"]
        embed_dim, heads = trunk["hidden_size"], trunk["num_attention_heads"]
        stages = tuple(trunk["blocks_per_stage"])
        image_size = trunk.get("image_size", [1024, 1024])
        image_size = image_size[0] if isinstance(image_size, (list, tuple)) else image_size
        doubling = [embed_dim * 2**s for s in range(len(stages))], [heads * 2**s for s in range(len(stages))]
        if (list(trunk.get("embed_dim_per_stage", doubling[0])), list(trunk.get("num_attention_heads_per_stage",
                                                                                   doubling[1]))) != doubling:
            raise ValueError("per-stage widths and heads must double from stage to stage")
        query_stride = trunk.get("query_stride", [2, 2])
        return Sam2Config(
            image_size=image_size,
            embed_dim=embed_dim,
            num_heads=heads,
            stages=stages,
            q_pool=trunk.get("num_query_pool_stages", 3),
            q_stride=query_stride[0] if isinstance(query_stride, (list, tuple)) else query_stride,
            window_spec=tuple(trunk["window_size_per_stage"]),
            global_att_blocks=tuple(trunk["global_attention_blocks"]),
            window_pos_embed_bkg_spatial_size=tuple(trunk.get("window_positional_embedding_background_size", (7, 7))),
            mlp_ratio=trunk.get("mlp_ratio", 4.0),
            d_model=vision.get("fpn_hidden_size", 256),
            scalp=len(stages) - vision.get("num_feature_levels", 3),
            fpn_top_down_levels=tuple(vision.get("fpn_top_down_levels", (2, 3))),
            **decoder_settings_from_hf(hf_config),
            **video_settings_from_hf(hf_config, vision.get("fpn_hidden_size", 256), image_size),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{origin}: not a usable Hugging Face SAM 2 config ({error!r})") from None
