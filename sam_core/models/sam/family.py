"""SAM's entry in the model family registry (``sam_core.registry``): registry names, the official files, how its
checkpoints are recognised and read by ``load_sam``."""

from __future__ import annotations

from collections.abc import Collection

from sam_core.interface import ModelFamily, OfficialCheckpoint
from sam_core.models.hf_names import reading_hf_names
from sam_core.models.sam.config import SAM_CONFIGS, SamConfig, infer_sam_config
from sam_core.models.sam.hf_format import hf_to_meta_state_dict, sam_config_from_hf
from sam_core.models.sam.model import build_sam1

_SAM_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

SAM_OFFICIAL_CHECKPOINTS = {
    "vit_h": OfficialCheckpoint("sam_vit_h_4b8939.pth",
                                "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", 2564550879,
                                _SAM_BASE_URL),
    "vit_l": OfficialCheckpoint("sam_vit_l_0b3195.pth",
                                "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", 1249524607,
                                _SAM_BASE_URL),
    "vit_b": OfficialCheckpoint("sam_vit_b_01ec64.pth",
                                "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 375042383,
                                _SAM_BASE_URL),
}
"""Meta's released SAM files, by registry name."""


def is_sam_checkpoint(names: Collection[str]) -> bool:
    """Meta's names or Hugging Face SamModel's: a ViT with a plain patch embedding. (SAM-HQ's files have them
    too; SAM-HQ's entry specialises this one, see ``ModelFamily.specialises``.)"""
    return any(name.startswith(("image_encoder.patch_embed.proj.", "vision_encoder.patch_embed.")) for name in names)


SAM_FAMILY = ModelFamily(
    name="sam", config_type=SamConfig, configs=SAM_CONFIGS, build=build_sam1, infer_config=infer_sam_config,
    owns_checkpoint=is_sam_checkpoint, official_checkpoints=SAM_OFFICIAL_CHECKPOINTS,
    to_native_names=reading_hf_names(hf_to_meta_state_dict), config_from_hf=sam_config_from_hf,
    to_meta_file=dict,  # segment_anything's .pth files are the plain state dict, under these names
)
