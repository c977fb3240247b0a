"""Hugging Face ``transformers`` SAM 3 tracker checkpoints (``Sam3TrackerModel.save_pretrained``, and the video
tensors of ``Sam3TrackerVideoModel``'s): names and config.json in sam_core's (Meta's) terms.

The heads and video modules are named as in ``Sam2Model`` / ``Sam2VideoModel`` (renamed by SAM 2's readers);
the vision encoder differs: transformers splits the ViT's ``qkv`` projection into three, stores the absolute
position embedding without the class token's row (sam_core keeps Meta's layout: a row of zeros is put back;
it is never read), and names the neck's levels ``fpn_layers.i`` with ``scale_layers`` / ``proj1`` / ``proj2``.

Two transformers deviations, where sam_core follows Meta: a neck with a 0.5x level (transformers' and
SAM 3's default scales) makes ``Sam3TrackerModel`` add ``no_memory_embedding`` to that level, which it then
drops; sam_core adds it to the 1x level, as Meta's tracker does, and leaves the 0.5x level out. The ViT's layer
norm epsilon is Meta's 1e-5 whatever ``layer_norm_eps`` the file gives (``Sam3ViTConfig`` defaults to 1e-6).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from sam_core.errors import CheckpointError
from sam_core.models.sam2.hf_format import heads_settings_from_hf, hf_to_meta_state_dict
from sam_core.models.sam2.hf_video_format import video_settings_from_hf
from sam_core.models.sam3.config import NECK_SCALES, Sam3Config

_HF_TRUNK = "vision_encoder.backbone."
_HF_DETECTOR_TRUNK = "detector_model.vision_encoder.backbone."
_HF_VIT_RENAMES: list[tuple[str, str]] = [
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^layer_norm\.", "ln_pre."),
    (r"^layers\.(\d+)\.layer_norm(\d)\.", r"blocks.\1.norm\2."),
    (r"^layers\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
    (r"^layers\.(\d+)\.mlp\.", r"blocks.\1.mlp."),
]
_HF_QKV = re.compile(r"^layers\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)$")
_HF_NECK = re.compile(r"^vision_encoder\.neck\.fpn_layers\.(\d+)\.(scale_layers\.(\d+)|proj1|proj2)\.(.+)$")
# Meta's names of a level's transposed convolutions, by scale and position in transformers' scale_layers.
_NECK_UPSAMPLING = {(4.0, "0"): "dconv_2x2_0", (4.0, "2"): "dconv_2x2_1", (2.0, "0"): "dconv_2x2"}


def hf_file_to_model_names(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The names a ``Sam3TrackerModel`` has in memory, from those its files have (``save_pretrained`` writes the
    hub's ``facebook/sam3`` layout: ``tracker_model.`` ahead of the tracker's names, the ViT under
    ``detector_model.vision_encoder.backbone.``, the tracker neck as ``tracker_neck.``). The detector's other
    tensors (concept parts, its own neck) are left out."""
    renamed = {}
    for name, tensor in tensors.items():
        name = name.removeprefix("tracker_model.")
        if name.startswith("detector_model."):
            if not name.startswith(_HF_DETECTOR_TRUNK):
                continue
            name = _HF_TRUNK + name[len(_HF_DETECTOR_TRUNK):]
        elif name.startswith("tracker_neck."):
            name = "vision_encoder.neck." + name[len("tracker_neck."):]
        renamed[name] = tensor
    return renamed


def hf_to_native_state_dict(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face Sam3TrackerModel (or Sam3TrackerVideoModel) state dict, as saved or as in memory,
    to sam_core's names."""
    vision, rest = {}, {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for name, tensor in hf_file_to_model_names(tensors).items():
        if name.startswith(_HF_TRUNK):
            local = name[len(_HF_TRUNK):]
            if local == "embeddings.position_embeddings":
                class_row = torch.zeros_like(tensor[:, :1])
                vision["image_encoder.trunk.pos_embed"] = torch.cat([class_row, tensor], dim=1)
            elif match := _HF_QKV.match(local):
                block, part, kind = match.groups()
                qkv.setdefault((block, kind), {})[part] = tensor
            else:
                for pattern, replacement in _HF_VIT_RENAMES:
                    local = re.sub(pattern, replacement, local)
                vision["image_encoder.trunk." + local] = tensor
        elif match := _HF_NECK.match(name):
            level, part, position, rest_of_name = match.groups()
            if int(level) >= len(NECK_SCALES):
                continue  # the 0.5x level, which the tracker drops
            if position is not None:
                part = _NECK_UPSAMPLING[(NECK_SCALES[int(level)], position)]
            else:
                part = {"proj1": "conv_1x1", "proj2": "conv_3x3"}[part]
            vision[f"image_encoder.neck.convs.{level}.{part}.{rest_of_name}"] = tensor
        else:
            rest[name] = tensor
    for (block, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"block {block}: the attention's {kind} is missing some of q_proj, k_proj, v_proj")
        vision[f"image_encoder.trunk.blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts[p] for p in "qkv"])
    return {**vision, **hf_to_meta_state_dict(rest)}


def sam3_config_from_hf(hf_config: Mapping[str, Any], origin: str = "config.json") -> Sam3Config:
    """The Sam3Config of a Hugging Face Sam3TrackerModel or Sam3TrackerVideoModel ``config.json`` (or of a whole
    Sam3VideoModel's, as on the hub's ``facebook/sam3``: its ``tracker_config``)."""
    hf_config = hf_config.get("tracker_config") or hf_config
    try:
        vision = hf_config["vision_config"]
        trunk = vision["backbone_config"]

        def side(value: Any) -> int:
            return value[0] if isinstance(value, (list, tuple)) else value

        image_size, patch_size = side(trunk.get("image_size", 1008)), side(trunk.get("patch_size", 14))
        embed_dim = trunk.get("hidden_size", 1024)
        d_model = vision.get("fpn_hidden_size", 256)
        scales = [float(scale) for scale in vision.get("scale_factors") or [4.0, 2.0, 1.0, 0.5]]
        if tuple(scales[: len(NECK_SCALES)]) != NECK_SCALES:
            raise ValueError(f"neck scales {scales} do not start with {list(NECK_SCALES)}")
        video = video_settings_from_hf(hf_config, d_model, image_size, patch_size)
        return Sam3Config(
            image_size=image_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=trunk.get("num_hidden_layers", 32),
            num_heads=trunk.get("num_attention_heads", 16),
            mlp_ratio=trunk.get("intermediate_size", 4736) / embed_dim,
            window_size=trunk.get("window_size", 24),
            global_att_blocks=tuple(trunk.get("global_attn_indexes") or (7, 15, 23, 31)),
            pretrain_image_size=side(trunk.get("pretrain_image_size", 336)),
            d_model=d_model,
            **heads_settings_from_hf(hf_config),
            **video,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{origin}: not a usable Hugging Face SAM 3 tracker config ({error!r})") from None
