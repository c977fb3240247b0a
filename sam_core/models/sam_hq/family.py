"""SAM-HQ's entry in the model family registry (``sam_core.registry``)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch

from sam_core.interface import ModelFamily, OfficialCheckpoint
from sam_core.models.hf_names import reading_hf_names
from sam_core.models.mobile_sam.config import infer_mobile_sam_config
from sam_core.models.mobile_sam.family import is_tiny_vit_checkpoint, split_classifier_head
from sam_core.models.sam.config import infer_sam_config
from sam_core.models.sam_hq.config import SAM_HQ_CONFIGS, SamHQConfig
from sam_core.models.sam_hq.hf_format import hf_to_sam_hq_state_dict, sam_hq_config_from_hf
from sam_core.models.sam_hq.model import build_sam_hq

# SAM-HQ's output token, in its official files and in Hugging Face's: a SAM or MobileSAM checkpoint with it is
# SAM-HQ's.
HQ_TOKEN_NAMES = ("mask_decoder.hf_token.weight", "mask_decoder.hq_token.weight")


def is_sam_hq_checkpoint(names: Collection[str]) -> bool:
    return any(name in HQ_TOKEN_NAMES for name in names)


def infer_sam_hq_config(state_dict: Mapping[str, torch.Tensor], origin: str = "state dict") -> SamHQConfig:
    """The base model's shapes, as SAM's or MobileSAM's loading reads them (the HQ layers follow)."""
    if is_tiny_vit_checkpoint(state_dict):
        return SamHQConfig(infer_mobile_sam_config(state_dict, origin))
    return SamHQConfig(infer_sam_config(state_dict, origin))


# The sha256 values of the released files are not known from a verifiable source: they are never
# downloaded, and a copy placed in the cache by hand is used as it is.
_SAM_HQ_BASE_URL = "https://huggingface.co/lkeab/hq-sam/resolve/main/"
SAM_HQ_OFFICIAL_CHECKPOINTS = {name: OfficialCheckpoint(f"{name}.pth", None, None, _SAM_HQ_BASE_URL)
                               for name in SAM_HQ_CONFIGS}

SAM_HQ_FAMILY = ModelFamily(
    name="sam_hq", config_type=SamHQConfig, configs=SAM_HQ_CONFIGS, build=build_sam_hq,
    infer_config=infer_sam_hq_config, owns_checkpoint=is_sam_hq_checkpoint, specialises=("sam", "mobile_sam"),
    to_native_names=reading_hf_names(hf_to_sam_hq_state_dict), config_from_hf=sam_hq_config_from_hf,
    official_checkpoints=SAM_HQ_OFFICIAL_CHECKPOINTS, split_extras=split_classifier_head,  # TinyViT's head
    to_meta_file=dict,  # segment-anything-hq's .pth files are the plain state dict, under these names
)
