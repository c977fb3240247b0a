"""Meta's ``sam3.pt`` in sam_core's names, and the config its shapes describe.

``sam3.pt`` holds the whole SAM 3 (``{"model": state_dict}`` or the state dict itself): the detector under
``detector.`` (its backbone, the ViT and two simple FPNs, under ``detector.backbone.vision_backbone``; the text
encoder, DETR transformer, geometry encoder and segmentation heads: the "concept" parts) and the tracker under
``tracker.`` (SAM 2.1's heads and memory, without a backbone of its own: it reads the ViT through the second
neck, ``sam2_convs``). sam_core's SAM 3 is the tracker path, so the file is read as:

- ``detector.backbone.vision_backbone.trunk.*`` -> ``image_encoder.trunk.*`` (the ViT; its stored rotary tables
  ``attn.freqs_cis`` are dropped: they are computed);
- ``detector.backbone.vision_backbone.sam2_convs.{0,1,2}.*`` -> ``image_encoder.neck.convs.*`` (the tracker
  neck's 4x, 2x, 1x levels; its 0.5x level, which the tracker drops, is left out);
- ``tracker.transformer.encoder.*`` -> ``memory_attention.*``, ``tracker.maskmem_backbone.*`` ->
  ``memory_encoder.*`` (SAM 2's names for the same modules), every other ``tracker.*`` without the prefix, the
  decoder transformer's MLP blocks ``mlp.lin1`` / ``mlp.lin2`` as SAM 2's ``mlp.layers.0`` / ``mlp.layers.1``;
- every other ``detector.*`` tensor (the concept parts and the detector's own neck) is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

import torch

from sam_core.errors import CheckpointError
from sam_core.models.configs import shape_readers
from sam_core.models.hf_names import rename_tensors
from sam_core.models.sam2.checkpoint import VIDEO_MODULES
from sam_core.models.sam3.config import NECK_SCALES, SAM3_CONFIGS, Sam3Config

StateDict = dict[str, torch.Tensor]

META_BACKBONE = "detector.backbone.vision_backbone."
_META_RENAMES = [
    (r"^detector\.backbone\.vision_backbone\.trunk\.", "image_encoder.trunk."),
    (r"^detector\.backbone\.vision_backbone\.sam2_convs\.", "image_encoder.neck.convs."),
    (r"^tracker\.transformer\.encoder\.", "memory_attention."),
    (r"^tracker\.maskmem_backbone\.", "memory_encoder."),
    (r"^tracker\.", ""),
    # SAM 3's two-way transformer has SAM's MLP blocks (lin1, lin2) where SAM 2's has an MLP (layers.0, .1).
    (r"^(sam_mask_decoder\.transformer\.layers\.\d+\.mlp)\.lin1\.", r"\1.layers.0."),
    (r"^(sam_mask_decoder\.transformer\.layers\.\d+\.mlp)\.lin2\.", r"\1.layers.1."),
]
_TRACKER_NECK = re.compile(r"^detector\.backbone\.vision_backbone\.sam2_convs\.(\d+)\.")
# A ViT tensor that no other family's file has: SAM 3's native and Meta's names.
SAM3_MARKERS = ("image_encoder.trunk.ln_pre.weight", META_BACKBONE + "trunk.ln_pre.weight")


def is_meta_sam3(names: Collection[str]) -> bool:
    """Whether these are the tensor names of Meta's ``sam3.pt``."""
    return any(name.startswith(("tracker.sam_mask_decoder.", META_BACKBONE)) for name in names)


def meta_to_native(tensors: Mapping[str, torch.Tensor]) -> StateDict:
    """The tracker path's tensors of a ``sam3.pt`` state dict under sam_core's names (see the module)."""
    kept = {}
    for name, tensor in tensors.items():
        if name.startswith("tracker."):
            kept[name] = tensor
        elif name.startswith(META_BACKBONE + "trunk."):
            if not name.endswith(".attn.freqs_cis"):
                kept[name] = tensor
        elif (match := _TRACKER_NECK.match(name)) and int(match.group(1)) < len(NECK_SCALES):
            kept[name] = tensor
    if not kept:
        raise CheckpointError("no tensor of SAM 3's tracker path (detector.backbone.vision_backbone.trunk, "
                              "sam2_convs, tracker.) in this SAM 3 state dict")
    return rename_tensors(kept, _META_RENAMES)


def split_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, StateDict]:
    """(image part, video-only part) of a native SAM 3 state dict (the video modules are SAM 2's)."""
    image, video = {}, {}
    for name, tensor in state_dict.items():
        (video if name.split(".")[0] in VIDEO_MODULES else image)[name] = tensor
    return image, video


def infer_sam3_config(state_dict: Mapping[str, torch.Tensor], origin: str) -> Sam3Config:
    """The registry config with these shapes (the released model, or the test model).

    Shapes give the widths, depth and grids but not the heads, windows or global blocks, so only registry
    models are recognised; others need an explicit config.
    """
    shape, count = shape_readers(state_dict, origin, "a SAM 3")
    patch = shape("image_encoder.trunk.patch_embed.proj.weight")
    pretrain_grid = round((shape("image_encoder.trunk.pos_embed")[1] - 1) ** 0.5)
    signature = dict(
        embed_dim=patch[0], patch_size=patch[-1], depth=count("image_encoder.trunk.blocks."),
        pretrain_image_size=pretrain_grid * patch[-1],
        mlp_ratio=shape("image_encoder.trunk.blocks.0.mlp.fc1.weight")[0] / patch[0],
        d_model=shape("image_encoder.neck.convs.0.conv_1x1.weight")[0],
        decoder_mlp_dim=shape("sam_mask_decoder.transformer.layers.0.mlp.layers.0.weight")[0])
    for config in SAM3_CONFIGS.values():
        if all(getattr(config, key) == value for key, value in signature.items()):
            return config
    described = ", ".join(f"{key}={value}" for key, value in signature.items())
    raise CheckpointError(f"{origin}: tensor shapes ({described}) match no registry SAM 3 model; "
                          "pass its Sam3Config explicitly")
