"""EfficientViT-SAM's entry in the model family registry (``sam_core.registry``)."""

from __future__ import annotations

from sam_core.interface import ModelFamily, OfficialCheckpoint
from sam_core.models.efficientvit.checkpoint import infer_efficientvit_sam_config, is_efficientvit_sam_checkpoint
from sam_core.models.efficientvit.config import EFFICIENTVIT_SAM_CONFIGS, EfficientViTSamConfig
from sam_core.models.efficientvit.model import build_efficientvit_sam

_BASE_URL = "https://huggingface.co/mit-han-lab/efficientvit-sam/resolve/main/"


# The sha256 values and sizes of the released files are not known from a verifiable source: these entries name
# the files and never download them; a file placed in the cache by hand is used as it is.
EFFICIENTVIT_SAM_OFFICIAL_CHECKPOINTS = {name: OfficialCheckpoint(f"{name}.pt", None, None, _BASE_URL)
                                         for name in EFFICIENTVIT_SAM_CONFIGS}

EFFICIENTVIT_SAM_FAMILY = ModelFamily(  # sam_core's names are the reference's: to_native_names is the default
    name="efficientvit_sam", config_type=EfficientViTSamConfig, configs=EFFICIENTVIT_SAM_CONFIGS,
    build=build_efficientvit_sam, infer_config=infer_efficientvit_sam_config,
    owns_checkpoint=is_efficientvit_sam_checkpoint, official_checkpoints=EFFICIENTVIT_SAM_OFFICIAL_CHECKPOINTS,
    to_meta_file=dict,  # the released .pt files are the plain state dict (some wrap it in {"state_dict": ...})
)
