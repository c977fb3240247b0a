"""EdgeTAM's entry in the model family registry (``sam_core.registry``)."""

from __future__ import annotations

from collections.abc import Collection

from sam_core.interface import ModelFamily, OfficialCheckpoint
from sam_core.models.edgetam.checkpoint import (
    HF_TRUNK,
    META_TRUNK,
    NATIVE_TRUNK,
    infer_edgetam_config,
    split_state_dict,
    to_meta_file,
)
from sam_core.models.edgetam.config import EDGETAM_CONFIGS, EdgeTamConfig
from sam_core.models.edgetam.hf_format import edgetam_config_from_hf, to_native_names
from sam_core.models.edgetam.model import build_edgetam

EDGETAM_BASE_URL = "https://github.com/facebookresearch/EdgeTAM/raw/main/checkpoints/"


def is_edgetam_checkpoint(names: Collection[str]) -> bool:
    """A RepViT trunk under SAM 2's image encoder: Meta's timm names, transformers' or sam_core's."""
    return any(name.startswith((META_TRUNK, HF_TRUNK, NATIVE_TRUNK)) for name in names)


# The sha256 and size of edgetam.pt are not known from a verifiable source: the entry names the file and is never
# downloaded; a file placed in the cache by hand is used as it is.
EDGETAM_OFFICIAL_CHECKPOINTS = {"edgetam": OfficialCheckpoint("edgetam.pt", None, None, EDGETAM_BASE_URL)}

EDGETAM_FAMILY = ModelFamily(
    name="edgetam", config_type=EdgeTamConfig, configs=EDGETAM_CONFIGS, build=build_edgetam,
    infer_config=infer_edgetam_config, owns_checkpoint=is_edgetam_checkpoint,
    specialises=("sam2",),  # SAM 2's test (an image_encoder.trunk / vision_encoder.backbone prefix) claims them too
    official_checkpoints=EDGETAM_OFFICIAL_CHECKPOINTS, split_extras=split_state_dict,
    to_native_names=to_native_names, config_from_hf=edgetam_config_from_hf, to_meta_file=to_meta_file,
)
