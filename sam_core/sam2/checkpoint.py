"""Load SAM 2 / SAM 2.1 checkpoints into the image model.

An official ``.pt`` file holds ``{"model": state_dict}`` for the whole video model. Sam2's parameter names
are Meta's, so the image part loads as it is; the video-only tensors (memory encoder and attention,
object-pointer projections...) are returned apart, untouched, for a video model to use. A Hugging Face
``Sam2Model.save_pretrained`` folder (image model only) loads through a few rename rules.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from sam_core.errors import CheckpointError
from sam_core.sam2.config import OFFICIAL_SAM2_MODELS, SAM2_CONFIGS, Sam2Config, get_sam2_config
from sam_core.sam2.hf_format import hf_to_meta_state_dict, sam2_config_from_hf
from sam_core.sam2.model import Sam2, build_sam2

StateDict = dict[str, torch.Tensor]

IMAGE_MODULES = frozenset({"image_encoder", "sam_prompt_encoder", "sam_mask_decoder", "no_mem_embed"})
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


def read_checkpoint(path: str | os.PathLike) -> StateDict:
    """The state dict of a Meta SAM 2 ``.pt`` file (``{"model": state_dict}`` or a bare state dict), read with
    ``torch.load(weights_only=True)``: pickled code is refused, never run."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # The safe unpickler names every callable or class it blocks as "GLOBAL module.name".
        if blocked := re.search(r"GLOBAL ([\w.]+)", str(error)):
            raise CheckpointError(f"{path}: refused to load; its pickle references {blocked.group(1)}, which is "
                                  "not a tensor and could run code") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (a state dict of tensors was expected)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable or truncated PyTorch checkpoint ({error})") from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping):
        loaded = loaded["model"]
    if not isinstance(loaded, Mapping) or not all(isinstance(t, torch.Tensor) for t in loaded.values()):
        raise CheckpointError(f"{path}: not a SAM 2 checkpoint (expected {{'model': state_dict}} of tensors)")
    return dict(loaded)


def read_hf_folder(folder: str | os.PathLike) -> tuple[StateDict, Sam2Config, str]:
    """(state dict with Meta's names, config, weights path) of a Hugging Face Sam2Model folder."""
    folder = Path(folder).expanduser()
    config_path = folder / "config.json"
    try:
        hf_config = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{config_path}: not a readable Hugging Face config ({error})") from None
    config = sam2_config_from_hf(hf_config, str(config_path))
    weights = folder / "model.safetensors"
    if weights.is_file():
        try:
            with safe_open(str(weights), framework="pt", device="cpu") as handle:
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"{weights}: unreadable safetensors file ({error})") from None
    else:
        weights = folder / "pytorch_model.bin"
        tensors = read_checkpoint(weights)
    return hf_to_meta_state_dict(tensors), config, str(weights)


def infer_config(state_dict: Mapping[str, torch.Tensor], origin: str = "state dict") -> tuple[str, Sam2Config]:
    """(registry name, config) of the official model whose shapes ``state_dict`` has.

    Shapes give the trunk's widths, stages and position embedding sizes, but not its heads, global blocks
    or windows, so only the official sizes are recognised; other models need an explicit config.
    """
    signature = _signature(state_dict, origin)
    version = "sam2.1" if all(name in state_dict for name in SAM2_1_ONLY) else "sam2"
    for name in OFFICIAL_SAM2_MODELS:
        if name.startswith(version + "_") and _config_signature(SAM2_CONFIGS[name]) == signature:
            return name, SAM2_CONFIGS[name]
    described = ", ".join(f"{key}={value}" for key, value in signature.items())
    raise CheckpointError(f"{origin}: tensor shapes ({described}) match no official SAM 2 model; "
                          "pass its Sam2Config explicitly")


def load_sam2(source: str | os.PathLike | Mapping[str, torch.Tensor], config: str | Sam2Config | None = None,
              device: str | torch.device | None = None, dtype: torch.dtype | None = None,
              ) -> tuple[Sam2, StateDict]:
    """(Sam2 with the checkpoint's image weights, the video-only tensors) from a Meta ``.pt`` file, a Hugging
    Face ``save_pretrained`` folder or a state dict with Meta's names.

    ``config`` (registry name or Sam2Config) defaults to the folder's config.json, else to the official
    model recognised from the shapes. Every image tensor must be present with the right shape: one
    CheckpointError lists all that are missing, unexpected or mis-shaped. ``dtype`` defaults to the
    checkpoint's floating dtype.
    """
    stored = None
    if isinstance(source, Mapping):
        state_dict, origin = dict(source), "state dict"
    elif Path(source).expanduser().is_dir():
        state_dict, stored, origin = read_hf_folder(source)
    else:
        state_dict, origin = read_checkpoint(source), str(source)
    image_part, video_part = split_state_dict(state_dict)
    if config is None and stored is not None:
        config_name, wanted = "from config.json", stored
    elif config is None:
        config_name, wanted = infer_config(state_dict, origin)
    else:
        wanted = get_sam2_config(config)
        config_name = config if isinstance(config, str) else "the given config"
    # Imported here: sam_core.checkpoint reaches this module through the family registry.
    from sam_core.checkpoint import check_fits, common_float_dtype
    from sam_core.sam2.family import SAM2_FAMILY

    check_fits(image_part, SAM2_FAMILY, wanted, config_name, origin)
    model = build_sam2(wanted)
    model.load_state_dict(image_part, strict=True)
    return model.to(device=device, dtype=dtype or common_float_dtype(image_part)), video_part


def _signature(state_dict: Mapping[str, torch.Tensor], origin: str) -> dict[str, object]:
    """What the tensor shapes say about the image model."""
    def shape(name: str) -> torch.Size:
        if name not in state_dict:
            raise CheckpointError(f"{origin} is not a SAM 2 checkpoint: tensor {name!r} is missing")
        return state_dict[name].shape

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


def _config_signature(config: Sam2Config) -> dict[str, object]:
    return {"embed_dim": config.embed_dim, "stages": config.stages,
            "window_pos_embed_bkg_spatial_size": config.window_pos_embed_bkg_spatial_size,
            "first_window": config.window_spec[0], "d_model": config.d_model}
