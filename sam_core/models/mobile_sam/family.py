"""MobileSAM's entry in the model family registry (``sam_core.registry``)."""

from __future__ import annotations

import logging
from collections.abc import Collection

from sam_core.interface import ModelFamily, OfficialCheckpoint, StateDict
from sam_core.models.mobile_sam.config import MOBILE_SAM_CONFIGS, MobileSamConfig, infer_mobile_sam_config
from sam_core.models.mobile_sam.model import build_mobile_sam

logger = logging.getLogger(__name__)

TINY_VIT_STEM = "image_encoder.patch_embed.seq."
# TinyViT's ImageNet classifier, which MobileSAM's file keeps and never runs.
CLASSIFIER_HEAD = ("image_encoder.head.", "image_encoder.norm_head.")


def is_tiny_vit_checkpoint(names: Collection[str]) -> bool:
    """A TinyViT image encoder under MobileSAM's names (SAM-HQ's TinyViT files have one too; SAM-HQ's entry
    specialises this one, see ``ModelFamily.specialises``)."""
    return any(name.startswith(TINY_VIT_STEM) for name in names)


def split_classifier_head(state_dict: StateDict) -> tuple[StateDict, StateDict]:
    """(the model's tensors, TinyViT's unused classifier head and attention-bias index tables). The index
    tables follow from the window sizes; some exports save them."""
    unused = {name: tensor for name, tensor in state_dict.items()
              if name.startswith(CLASSIFIER_HEAD) or name.endswith(".attention_bias_idxs")}
    if any(name.startswith(CLASSIFIER_HEAD) for name in unused):
        logger.info("dropped TinyViT's classifier head (%s), which SAM does not use",
                    ", ".join(sorted(name for name in unused if name.startswith(CLASSIFIER_HEAD))))
    return {name: tensor for name, tensor in state_dict.items() if name not in unused}, unused


# The sha256 of mobile_sam.pt is not known from a verifiable source: it is never downloaded, and a copy placed in
# the cache by hand is used as it is.
MOBILE_SAM_OFFICIAL_CHECKPOINTS = {"vit_t": OfficialCheckpoint(
    "mobile_sam.pt", None, None, "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/")}

MOBILE_SAM_FAMILY = ModelFamily(  # MobileSAM's file uses Meta's names: to_native_names is the default
    name="mobile_sam", config_type=MobileSamConfig, configs=MOBILE_SAM_CONFIGS, build=build_mobile_sam,
    infer_config=infer_mobile_sam_config, owns_checkpoint=is_tiny_vit_checkpoint,
    official_checkpoints=MOBILE_SAM_OFFICIAL_CHECKPOINTS, split_extras=split_classifier_head,
)
