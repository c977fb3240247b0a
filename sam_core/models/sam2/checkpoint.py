"""What SAM 2 / SAM 2.1 checkpoints say about the model: the image and video parts of an official file, and
the official config recognised from the tensor shapes.

An official ``.pt`` file holds ``{"model": state_dict}`` for the whole video model. Sam2's parameter names
are Meta's, so the image part loads as it is; the video-only tensors (memory encoder and attention,
object-pointer projections...) are kept apart, untouched, for a video model to use. Reading files is
``sam_core.io.checkpoints``'s job, for every family; :func:`load_sam2` is ``load_checkpoint`` for SAM 2.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from sam_core.errors import CheckpointError
from sam_core.models.configs import shape_readers
from sam_core.models.sam2.config import OFFICIAL_SAM2_MODELS, SAM2_CONFIGS, Sam2Config

StateDict = dict[str, torch.Tensor]

# Top-level modules and parameters of Meta's SAM2Base that only video tracking uses.
VIDEO_MODULES = frozenset({
    "memory_attention", "memory_encoder", "obj_ptr_proj", "obj_ptr_tpos_proj", "mask_downsample",
    "maskmem_tpos_enc", "no_mem_pos_enc", "no_obj_ptr", "no_obj_embed_spatial",
})
# Only SAM 2.1 checkpoints have these (its video model adds them); the image parts are alike.
SAM2_1_ONLY = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")


def split_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, StateDict]:
    """(image part, video-only part) of a Meta SAM 2 state dict. Names of neither kind stay in the image
    part, where loading reports them as unexpected."""
    image, video = {}, {}
    for name, tensor in state_dict.items():
        (video if name.split(".")[0] in VIDEO_MODULES else image)[name] = tensor
    return image, video


def recognise_official_model(state_dict: Mapping[str, torch.Tensor],
                             origin: str = "state dict") -> tuple[str, Sam2Config]:
    """(registry name, config) of the official model whose shapes ``state_dict`` has (``sam_core.infer_config``
    reads any family's config, SAM 2's included).

    Shapes give the trunk's widths, stages and position embedding sizes, but not its heads, global blocks
    or windows, so only the official sizes are recognised; other models need an explicit config.
    """
    signature = shape_signature(state_dict, origin)
    # Only the video tensors tell the versions apart; without any (an image model's file), the image model
    # is the same either way and the newer release is assumed.
    has_video = any(name.split(".")[0] in VIDEO_MODULES for name in state_dict)
    version = "sam2" if has_video and not all(name in state_dict for name in SAM2_1_ONLY) else "sam2.1"
    for name in OFFICIAL_SAM2_MODELS:
        if name.startswith(version + "_") and config_signature(SAM2_CONFIGS[name]) == signature:
            return name, SAM2_CONFIGS[name]
    described = ", ".join(f"{key}={value}" for key, value in signature.items())
    raise CheckpointError(f"{origin}: tensor shapes ({described}) match no official SAM 2 model; "
                          "pass its Sam2Config explicitly")


def shape_signature(state_dict: Mapping[str, torch.Tensor], origin: str) -> dict[str, object]:
    """What the tensor shapes say about the image model."""
    shape, _ = shape_readers(state_dict, origin, "a SAM 2")
    prefix = "image_encoder.trunk."
    depth = len({name.split(".")[3] for name in state_dict if name.startswith(prefix + "blocks.")})
    # A block with a shortcut projection widens the channels: it starts a stage.
    starts = [i for i in range(depth) if f"{prefix}blocks.{i}.proj.weight" in state_dict]
    bounds = [0, *starts, depth]
    return {
        "embed_dim": shape(prefix + "patch_embed.proj.weight")[0],
        "stages": tuple(b - a for a, b in zip(bounds[:-1], bounds[1:])),
        "window_pos_embed_bkg_spatial_size": tuple(shape(prefix + "pos_embed")[-2:]),
        "first_window": shape(prefix + "pos_embed_window")[-1],
        "d_model": shape("image_encoder.neck.convs.0.conv.weight")[0],
    }


def config_signature(config: Sam2Config) -> dict[str, object]:
    """:func:`shape_signature` of the checkpoints of ``config``."""
    return {"embed_dim": config.embed_dim, "stages": config.stages,
            "window_pos_embed_bkg_spatial_size": config.window_pos_embed_bkg_spatial_size,
            "first_window": config.window_spec[0], "d_model": config.d_model}
