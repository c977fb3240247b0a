"""SAM 2's entry in the model family registry (``sam_core.registry``): registry names, official files,
how its checkpoints are recognised and read by ``load_sam``."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch

from sam_core.errors import CheckpointError
from sam_core.interface import ModelFamily, OfficialCheckpoint
from sam_core.models.hf_names import reading_hf_names
from sam_core.models.sam2.checkpoint import (
    config_signature,
    recognise_official_model,
    shape_signature,
    split_state_dict,
)
from sam_core.models.sam2.config import SAM2_CONFIGS, Sam2Config
from sam_core.models.sam2.hf_format import hf_to_meta_state_dict, sam2_config_from_hf
from sam_core.models.sam2.model import build_sam2_model

_SAM2_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_SAM2_1_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_SIZES = ("tiny", "small", "base_plus", "large")


def _is_sam2_checkpoint(names: Collection[str]) -> bool:
    """Meta's names (a Hiera trunk) or Hugging Face Sam2Model's (a Hiera backbone)."""
    return any(name.startswith(("image_encoder.trunk.", "vision_encoder.backbone.")) for name in names)


def _infer_sam2_config(state_dict: Mapping[str, torch.Tensor], origin: str) -> Sam2Config:
    """The official config with these shapes, else another registry entry with them (the test model)."""
    try:
        return recognise_official_model(state_dict, origin)[1]
    except CheckpointError:
        signature = shape_signature(state_dict, origin)
        for config in SAM2_CONFIGS.values():
            if config_signature(config) == signature:
                return config
        raise


# The sha256 values and sizes of Meta's SAM 2 files are not known from a verifiable source (see
# weights/README.md): these entries name the files and never download them; a file placed in the cache
# by hand is used as it is.
SAM2_OFFICIAL_CHECKPOINTS = {
    **{f"sam2_hiera_{size}": OfficialCheckpoint(f"sam2_hiera_{size}.pt", None, None, _SAM2_BASE_URL)
       for size in _SIZES},
    **{f"sam2.1_hiera_{size}": OfficialCheckpoint(f"sam2.1_hiera_{size}.pt", None, None, _SAM2_1_BASE_URL)
       for size in _SIZES},
}

SAM2_FAMILY = ModelFamily(  # Hugging Face Sam2Model files hold the image model only, under names of their own
    name="sam2", config_type=Sam2Config, configs=SAM2_CONFIGS, build=build_sam2_model,
    infer_config=_infer_sam2_config, owns_checkpoint=_is_sam2_checkpoint,
    official_checkpoints=SAM2_OFFICIAL_CHECKPOINTS, split_extras=split_state_dict,  # video-only tensors, apart
    to_native_names=reading_hf_names(hf_to_meta_state_dict), config_from_hf=sam2_config_from_hf,
)
