"""Hugging Face ``transformers`` SAM checkpoints: their tensor names and config.json, in sam_core's terms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from sam_core.errors import CheckpointError
from sam_core.models.hf_names import Rename, rename_tensors, split_mlp_renumbering
from sam_core.models.sam.config import SamConfig

# Hugging Face's SamModel names -> Meta's, applied in order to each name.
_HF_RENAMES: list[tuple[str, str]] = [
    (r"^vision_encoder\.layers\.(\d+)\.layer_norm(\d)\.", r"image_encoder.blocks.\1.norm\2."),
    (r"^vision_encoder\.layers\.", "image_encoder.blocks."),
    (r"^vision_encoder\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
    (r"^vision_encoder\.neck\.conv1\.", "image_encoder.neck.0."),
    (r"^vision_encoder\.neck\.layer_norm1\.", "image_encoder.neck.1."),
    (r"^vision_encoder\.neck\.conv2\.", "image_encoder.neck.2."),
    (r"^vision_encoder\.neck\.layer_norm2\.", "image_encoder.neck.3."),
    (r"^vision_encoder\.", "image_encoder."),
    (r"^shared_image_embedding\.positional_embedding$", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
    (r"^prompt_encoder\.point_embed\.", "prompt_encoder.point_embeddings."),
    (r"^prompt_encoder\.mask_embed\.conv1\.", "prompt_encoder.mask_downscaling.0."),
    (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "prompt_encoder.mask_downscaling.1."),
    (r"^prompt_encoder\.mask_embed\.conv2\.", "prompt_encoder.mask_downscaling.3."),
    (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "prompt_encoder.mask_downscaling.4."),
    (r"^prompt_encoder\.mask_embed\.conv3\.", "prompt_encoder.mask_downscaling.6."),
    (r"^(mask_decoder\.transformer\.layers\.\d+)\.layer_norm(\d)\.", r"\1.norm\2."),
    (r"^mask_decoder\.transformer\.layer_norm_final_attn\.", "mask_decoder.transformer.norm_final_attn."),
    (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
    (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
    (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
]
# Hugging Face splits each decoder MLP into proj_in / layers.i / proj_out; Meta numbers them all layers.i.
_HF_MLPS = r"mask_decoder\.(?:iou_prediction_head|output_hypernetworks_mlps\.\d+)"
# SamModel ties the prompt encoder's copy of the positional matrix to the shared one.
_HF_TIED_COPY = "prompt_encoder.shared_embedding.positional_embedding"
_HF_SHARED = "shared_image_embedding.positional_embedding"


def hf_to_meta_state_dict(tensors: Mapping[str, torch.Tensor],
                          family_renames: Sequence[Rename] = ()) -> dict[str, torch.Tensor]:
    """Rename a ``transformers`` SamModel state dict to Meta's names (the layouts are the same).

    Args:
        tensors: the state dict, under Hugging Face's names.
        family_renames: applied after SAM's renames, for a model built on SamModel (SamHQModel's HQ layers).

    Returns:
        The same tensors under Meta's names.
    """
    tensors = dict(tensors)
    tied_copy = tensors.pop(_HF_TIED_COPY, None)
    if _HF_SHARED not in tensors and tied_copy is not None:
        tensors[_HF_SHARED] = tied_copy
    return rename_tensors(tensors, [split_mlp_renumbering(tensors, _HF_MLPS), *_HF_RENAMES, *family_renames])


# Defaults of transformers' SAM configs, for fields a config.json may leave out.
_HF_DEFAULTS = {
    "vision_config": {"hidden_size": 768, "output_channels": 256, "num_hidden_layers": 12,
                      "num_attention_heads": 12, "image_size": 1024, "patch_size": 16, "mlp_ratio": 4.0,
                      "window_size": 14, "global_attn_indexes": [2, 5, 8, 11], "num_channels": 3,
                      "hidden_act": "gelu", "use_abs_pos": True, "use_rel_pos": True, "qkv_bias": True},
    "prompt_encoder_config": {"hidden_size": 256, "mask_input_channels": 16, "num_point_embeddings": 4,
                              "hidden_act": "gelu"},
    "mask_decoder_config": {"hidden_size": 256, "mlp_dim": 2048, "num_hidden_layers": 2,
                            "num_attention_heads": 8, "attention_downsample_rate": 2, "num_multimask_outputs": 3,
                            "iou_head_depth": 3, "iou_head_hidden_dim": 256, "hidden_act": "relu"},
}
# Settings that sam_core's architecture fixes (Meta's values); a config.json that differs cannot be loaded.
_HF_FIXED = {
    "vision_config": ("num_channels", "hidden_act", "use_abs_pos", "use_rel_pos", "qkv_bias"),
    "prompt_encoder_config": ("num_point_embeddings", "hidden_act"),
    "mask_decoder_config": ("attention_downsample_rate", "hidden_act"),
}


def sam_config_from_hf(hf_config: Mapping[str, object], origin: str = "config.json") -> SamConfig:
    """Translate a ``transformers`` SamConfig (as the dict of its config.json) into a SamConfig."""
    if hf_config.get("model_type", "sam") != "sam":
        raise CheckpointError(f"{origin}: describes a {hf_config['model_type']!r} model, not SAM")
    parts = {key: {**defaults, **(hf_config.get(key) or {})} for key, defaults in _HF_DEFAULTS.items()}
    unsupported = [f"{key}.{field}={parts[key][field]!r}" for key, fields in _HF_FIXED.items() for field in fields
                   if parts[key][field] != _HF_DEFAULTS[key][field]]
    if unsupported:
        raise CheckpointError(f"{origin}: settings sam_core does not implement: {', '.join(unsupported)}")
    vision, prompt, decoder = (parts[key] for key in _HF_DEFAULTS)
    mlp_dim = vision.get("mlp_dim") or vision["hidden_size"] * vision["mlp_ratio"]
    try:
        return SamConfig(
            image_size=vision["image_size"], patch_size=vision["patch_size"],
            encoder_embed_dim=vision["hidden_size"], encoder_depth=vision["num_hidden_layers"],
            encoder_num_heads=vision["num_attention_heads"],
            encoder_global_attn_indexes=tuple(vision["global_attn_indexes"]), window_size=vision["window_size"],
            encoder_mlp_ratio=mlp_dim / vision["hidden_size"], prompt_embed_dim=vision["output_channels"],
            mask_in_chans=prompt["mask_input_channels"], decoder_depth=decoder["num_hidden_layers"],
            decoder_num_heads=decoder["num_attention_heads"], decoder_mlp_dim=decoder["mlp_dim"],
            num_multimask_outputs=decoder["num_multimask_outputs"], iou_head_depth=decoder["iou_head_depth"],
            iou_head_hidden_dim=decoder["iou_head_hidden_dim"],
        )
    except ValueError as error:
        raise CheckpointError(f"{origin}: not a valid SAM configuration ({error})") from None
