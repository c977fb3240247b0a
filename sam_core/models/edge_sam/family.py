"""EdgeSAM's entry in the model family registry (``sam_core.registry``)."""

from __future__ import annotations

import logging
from collections.abc import Collection

from sam_core.interface import ModelFamily, OfficialCheckpoint, StateDict
from sam_core.models.edge_sam.config import EDGE_SAM_CONFIGS, EdgeSamConfig, infer_edge_sam_config
from sam_core.models.edge_sam.model import build_edge_sam

logger = logging.getLogger(__name__)

# RepViT's stem and EdgeSAM's stage-3 projection: no other family has either under its image encoder.
REP_VIT_NAMES = ("image_encoder.features.0.0.c.", "image_encoder.fuse_stage3.op_list.")
MODEL_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
EDGE_SAM_BASE_URL = "https://huggingface.co/spaces/chongzhou/EdgeSAM/resolve/main/weights/"
SSSEG_BASE_URL = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_edgesam/"
"""sssegmentation's copies of the same two files (same names; its EdgeSAMPredictor loads them strictly into a
model with EdgeSAM's tensor names, so they hold exactly the model's tensors)."""


def is_edge_sam_checkpoint(names: Collection[str]) -> bool:
    """EdgeSAM's flat state dict (``edge_sam.pth``, ``edge_sam_3x.pth``, sssegmentation's copies): Meta's
    prompt encoder and decoder names beside a RepViT encoder."""
    return any(name.startswith(REP_VIT_NAMES) for name in names)


def split_detector_heads(state_dict: StateDict) -> tuple[StateDict, StateDict]:
    """(the model's tensors, anything else). EdgeSAM's ``Sam`` can carry an optional box-proposal head
    (``fpn.``, ``rpn_head.``) that its released SAM models do not use."""
    extras = {name: tensor for name, tensor in state_dict.items() if not name.startswith(MODEL_PREFIXES)}
    if extras:
        logger.info("left out %d tensors outside EdgeSAM's encoder and decoder (%s)", len(extras),
                    ", ".join(sorted(extras)[:5]))
    return {name: tensor for name, tensor in state_dict.items() if name not in extras}, extras


# The sha256 values and sizes of the released files are not known from a verifiable source: these entries name
# the files and are never downloaded; a file placed in the cache by hand is used as it is.
EDGE_SAM_OFFICIAL_CHECKPOINTS = {name: OfficialCheckpoint(f"{name}.pth", None, None, EDGE_SAM_BASE_URL)
                                 for name in EDGE_SAM_CONFIGS}

EDGE_SAM_FAMILY = ModelFamily(  # EdgeSAM's files use sam_core's names: to_native_names is the default
    name="edge_sam", config_type=EdgeSamConfig, configs=EDGE_SAM_CONFIGS, build=build_edge_sam,
    infer_config=infer_edge_sam_config, owns_checkpoint=is_edge_sam_checkpoint,
    official_checkpoints=EDGE_SAM_OFFICIAL_CHECKPOINTS, split_extras=split_detector_heads,
    to_meta_file=dict,  # edge_sam.pth is the plain state dict under these names
)
