"""MobileSAM (TinyViT encoder) against the MobileSAM package (``mobilesam-mirror``) on identical random weights.

Every tensor of the reference is random (BatchNorm statistics and attention-bias tables included); it is
saved as MobileSAM's ``.pt`` (classifier head and all) and loaded with ``load_sam``. The reference TinyViT
works at 1024 pixels with a 64x64 embedding, so the small config keeps that size with narrow, one-block
stages. Tolerances: 1e-4 for the plain path (BatchNorm as its own layer) against the reference, 1e-3 between
the folded BatchNorm of the fast path and the plain path.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mobile_sam
import numpy as np
import pytest
import torch
from record_checks import assert_records_equal
from test_modeling import max_diff, prompt_cases

import sam_core
from sam_core.interface import Prompts
from sam_core.models.mobile_sam import MOBILE_SAM_CONFIGS, MobileSamConfig
from sam_core.models.mobile_sam.parity import make_reference_mobile_sam
from sam_core.models.sam.parity import randomize_every_tensor_
from sam_core.models.tiny_vit import TinyViTConfig

# The reference package's imports warn about timm's moved modules and its re-registered model names.
pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::UserWarning")]

TOL = 1e-4
FOLDED_TOL = 1e-3
SMALL = MobileSamConfig(
    encoder=TinyViTConfig(embed_dims=(16, 24, 32, 320), depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 4),
                          window_sizes=(7, 7, 14, 7), mlp_ratio=2.0, mbconv_expand_ratio=2.0),
    decoder_mlp_dim=64, iou_head_hidden_dim=32)


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    return make_reference_mobile_sam(SMALL, seed=0)


@pytest.fixture(scope="module")
def checkpoint(reference: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mobile_sam") / "mobile_sam.pt"
    torch.save(reference.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def ours(checkpoint: Path) -> sam_core.PromptableSegmenter:
    return sam_core.load_sam(checkpoint)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0)) * 255


@pytest.fixture(scope="module")
def embeddings(reference: torch.nn.Module, ours: sam_core.PromptableSegmenter,
               image: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        expected = reference.image_encoder(reference.preprocess(image))
        with sam_core.fast_paths(False):
            plain = ours.image_encoder(ours.preprocess(image))
        with sam_core.fast_paths(True):
            folded = ours.image_encoder(ours.preprocess(image))
    return {"reference": expected, "plain": plain, "folded": folded}


def test_checkpoint_loads_as_mobile_sam_without_its_classifier_head(checkpoint: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sam_core.models.mobile_sam.family"):
        loaded = sam_core.load_checkpoint(checkpoint)
    assert loaded.model.family == "mobile_sam" and loaded.model.config == SMALL
    assert sorted(loaded.extras) == ["image_encoder.head.bias", "image_encoder.head.weight",
                                     "image_encoder.norm_head.bias", "image_encoder.norm_head.weight"]
    assert "classifier head" in caplog.text and "image_encoder.head.weight" in caplog.text


def test_vit_t_has_the_reference_tensors() -> None:
    reference = mobile_sam.sam_model_registry["vit_t"]().state_dict()  # its init cannot run on the meta device
    with torch.device("meta"):
        ours = sam_core.build_sam("vit_t").state_dict()
    head = {name for name in reference if name.startswith(("image_encoder.head.", "image_encoder.norm_head."))}
    assert set(reference) - head == set(ours)
    assert all(reference[name].shape == tensor.shape for name, tensor in ours.items())
    assert sam_core.infer_config(reference) == MOBILE_SAM_CONFIGS["vit_t"]


def test_embeddings_match(embeddings: dict[str, torch.Tensor]) -> None:
    assert embeddings["plain"].shape == (1, 256, 64, 64)
    assert max_diff(embeddings["plain"], embeddings["reference"]) <= TOL
    assert max_diff(embeddings["folded"], embeddings["plain"]) <= FOLDED_TOL
    assert embeddings["reference"].abs().mean() > 0.1  # a real signal, not a constant


def test_folded_weights_follow_new_weights(ours: sam_core.PromptableSegmenter, image: torch.Tensor) -> None:
    """Folding happens on the first fast pass after the weights change (here: another load)."""
    model = sam_core.build_sam(SMALL)
    model.load_state_dict(ours.state_dict())
    x = model.preprocess(image)
    with torch.no_grad():
        first = model.image_encoder(x)
        model.load_state_dict(randomize_every_tensor_(sam_core.build_sam(SMALL), seed=5).state_dict())
        folded = model.image_encoder(x)
        with sam_core.fast_paths(False):
            plain = model.image_encoder(x)
    assert max_diff(folded, plain) <= FOLDED_TOL < max_diff(folded, first)


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
@pytest.mark.parametrize("case", ["points", "negative_points", "box", "box_and_points", "mask_input"])
def test_decoder_matches(reference: torch.nn.Module, ours: sam_core.PromptableSegmenter,
                         embeddings: dict[str, torch.Tensor], case: str, multimask: bool) -> None:
    prompt = prompt_cases(1024, 256)[case]
    embedding = embeddings["reference"]
    with torch.no_grad():
        sparse, dense = reference.prompt_encoder(**prompt)
        expected, expected_iou = reference.mask_decoder(embedding, reference.prompt_encoder.get_dense_pe(), sparse,
                                                        dense, multimask)
        points = prompt["points"] or (None, None)
        prediction = ours.decode(ours.prepare_image({"image_embeddings": embedding}),
                                 Prompts(*points, prompt["boxes"], prompt["masks"]), multimask)
    assert prediction.low_res_logits.shape == expected.shape
    assert max_diff(prediction.low_res_logits, expected) <= TOL
    assert max_diff(prediction.iou_predictions, expected_iou) <= TOL


def test_predictor_matches_the_reference_predictor(reference: torch.nn.Module,
                                                   ours: sam_core.PromptableSegmenter) -> None:
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    theirs = mobile_sam.SamPredictor(reference)
    theirs.set_image(image)
    mine = sam_core.Predictor(ours, mask_upscaling="torch")
    with sam_core.fast_paths(False):
        mine.set_image(image)
    assert max_diff(mine.get_image_embedding(), theirs.get_image_embedding()) <= TOL
    prompt = dict(point_coords=np.array([[120.0, 80.0]]), point_labels=np.array([1]),
                  box=np.array([50.0, 40.0, 300.0, 250.0]))
    masks, scores, low_res = mine.predict(**prompt, return_logits=True)
    their_masks, their_scores, their_low_res = theirs.predict(**prompt, return_logits=True)
    assert np.abs(low_res - their_low_res).max() <= TOL and np.abs(scores - their_scores).max() <= TOL
    assert np.abs(masks - their_masks).max() <= TOL


def test_generator_gives_the_reference_records(reference: torch.nn.Module,
                                               ours: sam_core.PromptableSegmenter) -> None:
    options = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)  # masks survive
    image = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    theirs = mobile_sam.SamAutomaticMaskGenerator(reference, **options).generate(image)
    with sam_core.fast_paths(False):
        records = sam_core.AutomaticMaskGenerator(ours, **options).generate(image)
    assert len(theirs) >= 3
    assert_records_equal(records, theirs, score_tolerance=1e-5)
