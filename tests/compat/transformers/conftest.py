"""Tiny transformers checkpoints of SAM, SAM-HQ and SAM 2 with every tensor random, written by transformers'
own ``save_pretrained`` (weights and processor) into temporary folders: the reference side of the
``sam_core.compat.transformers`` tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from sam_core.models.sam.config import SAM_CONFIGS
from sam_core.models.sam.parity import hf_config_parts, randomize_every_tensor_
from sam_core.models.sam2.config import SAM2_CONFIGS
from sam_core.models.sam2.parity import make_hf_sam2
from sam_core.models.sam_hq.parity import make_hf_sam_hq

SIDE = 256  # the tiny configs' input side


def _tie_positional_embeddings(model: torch.nn.Module) -> None:
    """transformers saves one copy of the prompt encoder's Fourier matrix, shared with the model's."""
    with torch.no_grad():
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding)


def _save(model: torch.nn.Module, processor: object, folder: Path) -> Path:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """family -> a transformers save_pretrained folder (model + processor) of a tiny random model."""
    # Imported here: the reference package (test extra).
    import transformers

    root = tmp_path_factory.mktemp("hf")
    sam_processor = transformers.SamProcessor(transformers.SamImageProcessor(
        size={"longest_edge": SIDE}, pad_size={"height": SIDE, "width": SIDE}))
    parts = hf_config_parts(SAM_CONFIGS["vit_tiny"])
    # Meta's LayerNorm eps in the decoder's transformer (transformers' SamConfig defaults to 1e-6; real checkpoints'
    # config.json say 1e-6 too, and sam_core follows Meta: docs/compat-transformers.md).
    parts["mask_decoder_config"]["layer_norm_eps"] = 1e-5
    sam = randomize_every_tensor_(transformers.SamModel(transformers.SamConfig(**parts)).eval(), seed=1)
    _tie_positional_embeddings(sam)
    sam2 = randomize_every_tensor_(make_hf_sam2(SAM2_CONFIGS["sam2_hiera_test"]), seed=2)
    _tie_positional_embeddings(sam2)
    sam2_processor = transformers.Sam2Processor(transformers.Sam2ImageProcessor(size={"height": SIDE, "width": SIDE}))
    confident = randomize_every_tensor_(transformers.SamModel(transformers.SamConfig(**parts)).eval(), seed=4)
    _tie_positional_embeddings(confident)
    with torch.no_grad():
        # Predicted IoUs near 0.9 and steep mask logits: masks that pass the guide's quality filters.
        confident.mask_decoder.iou_prediction_head.proj_out.bias.add_(0.9)
        for mlp in confident.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(300)
    return {
        "sam": _save(sam, sam_processor, root / "sam"),
        "sam_confident": _save(confident, sam_processor, root / "sam_confident"),
        "sam_hq": _save(make_hf_sam_hq(SAM_CONFIGS["vit_tiny"], seed=3), sam_processor, root / "sam_hq"),
        "sam2": _save(sam2, sam2_processor, root / "sam2"),
    }


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    """A small non-square photo every clone has (scikit-image's chelsea)."""
    return Image.fromarray(skimage.data.chelsea()).resize((96, 64), Image.Resampling.BILINEAR)


@pytest.fixture(scope="session")
def square_photo() -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(skimage.data.chelsea()[:300, :300])).resize((64, 64))
