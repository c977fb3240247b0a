"""SAM 3's entry in the model family registry (``sam_core.registry``): registry names, official files, how its
checkpoints (Meta's ``sam3.pt``, transformers' Sam3TrackerModel folders, sam_core's own) are recognised and read."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch

from sam_core.interface import ModelFamily, OfficialCheckpoint
from sam_core.models.hf_names import HF_VISION_PREFIX
from sam_core.models.sam3.checkpoint import (
    SAM3_MARKERS,
    infer_sam3_config,
    is_meta_sam3,
    meta_to_native,
    split_state_dict,
)
from sam_core.models.sam3.config import SAM3_CONFIGS, Sam3Config
from sam_core.models.sam3.hf_format import hf_to_native_state_dict, sam3_config_from_hf
from sam_core.models.sam3.model import build_sam3_model

# transformers' SAM 3 ViT: the one vision encoder whose patch embedding is under "embeddings" (in memory, or
# under the prefixes its files add).
_HF_SAM3_MARKER = HF_VISION_PREFIX + "backbone.embeddings.patch_embeddings.projection.weight"


def _is_hf_sam3(names: Collection[str]) -> bool:
    return any(name.endswith(_HF_SAM3_MARKER) for name in names)


def _is_sam3_checkpoint(names: Collection[str]) -> bool:
    return is_meta_sam3(names) or _is_hf_sam3(names) or any(name in names for name in SAM3_MARKERS)


def _to_native_names(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if is_meta_sam3(tensors):
        return meta_to_native(tensors)
    if _is_hf_sam3(tensors):
        return hf_to_native_state_dict(tensors)
    return dict(tensors)


# sam3.pt is gated on the Hugging Face hub (facebook/sam3) and its sha256 is not known from a verifiable source:
# the entry names the file and never downloads it; a file placed in the cache by hand is used as it is.
SAM3_OFFICIAL_CHECKPOINTS = {"sam3": OfficialCheckpoint("sam3.pt", None, None, "https://huggingface.co/facebook/sam3/resolve/main")}

SAM3_FAMILY = ModelFamily(
    name="sam3", config_type=Sam3Config, configs=SAM3_CONFIGS, build=build_sam3_model,
    infer_config=infer_sam3_config, owns_checkpoint=_is_sam3_checkpoint,
    # SAM 2's recognisers also claim a SAM 3 file (image_encoder.trunk., vision_encoder.backbone.).
    specialises=("sam2",), official_checkpoints=SAM3_OFFICIAL_CHECKPOINTS, split_extras=split_state_dict,
    to_native_names=_to_native_names, config_from_hf=sam3_config_from_hf,
)
