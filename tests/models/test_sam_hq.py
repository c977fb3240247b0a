"""SAM-HQ against segment-anything-hq (ViT and TinyViT encoders) and transformers' SamHQModel, on identical
random weights (every tensor random), saved in each one's own format and loaded with ``load_sam``.

SAM-HQ returns one mask per prompt set: the HQ token's mask plus SAM's (token 0, or with multimask the
best of tokens 1-3 by predicted IoU), or the HQ mask alone with ``hq_token_only``. Tolerance 1e-4.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import segment_anything_hq
import torch
from record_checks import assert_records_equal
from test_mobile_sam import SMALL as SMALL_MOBILE_SAM
from test_modeling import max_diff, prompt_cases

import sam_core
from sam_core.cli import amg_main
from sam_core.interface import Prompts
from sam_core.models.sam.config import SAM_CONFIGS
from sam_core.models.sam_hq import SamHqConfig
from sam_core.models.sam_hq.parity import make_hf_sam_hq, make_reference_sam_hq

# The reference package's imports warn about timm's moved modules and its re-registered model names.
pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::UserWarning")]

TOL = 1e-4
VIT = SamHqConfig(SAM_CONFIGS["vit_tiny"])  # 256 pixels, global blocks 1 and 3: the early feature is block 1's
TINY_VIT = SamHqConfig(SMALL_MOBILE_SAM)
CONFIGS = {"vit": VIT, "tiny_vit": TINY_VIT}


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference, our model loaded from its .pth, and the reference's encoder outputs on one image."""
    config = CONFIGS[request.param]
    reference = make_reference_sam_hq(config, seed=1)
    path = tmp_path_factory.mktemp("sam_hq") / f"sam_hq_{request.param}.pth"
    torch.save(reference.state_dict(), path)
    size = config.base.image_size
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        embedding, early = reference.image_encoder(reference.preprocess(image))
    return dict(name=request.param, config=config, reference=reference, ours=sam_core.load_sam(path),
                image=image, embedding=embedding, early=early[0])


def test_pth_loads_as_sam_hq(pair: dict[str, Any]) -> None:
    assert pair["ours"].family == "sam_hq" and pair["ours"].config == pair["config"]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_embedding_and_early_feature_match(pair: dict[str, Any], fast: bool) -> None:
    ours = pair["ours"]
    with torch.no_grad(), sam_core.fast_paths(fast):
        features = ours.encode(ours.preprocess(pair["image"]))
    tolerance = 1e-3 if fast and pair["name"] == "tiny_vit" else TOL  # folded BatchNorm
    assert max_diff(features["image_embeddings"], pair["embedding"]) <= tolerance
    assert features["early_features"].shape == pair["early"].shape
    assert max_diff(features["early_features"], pair["early"]) <= tolerance


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
@pytest.mark.parametrize("hq_token_only", [False, True], ids=["sam+hq", "hq_only"])
@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
@pytest.mark.parametrize("case", ["points", "box", "box_and_points", "mask_input"])
def test_decoder_matches(pair: dict[str, Any], case: str, multimask: bool, hq_token_only: bool, fast: bool) -> None:
    reference, ours, config = pair["reference"], pair["ours"], pair["config"]
    prompt = prompt_cases(config.base.image_size, 4 * config.base.embedding_size)[case]
    with torch.no_grad(), sam_core.fast_paths(fast):
        sparse, dense = reference.prompt_encoder(**prompt)
        expected, expected_iou = reference.mask_decoder(
            pair["embedding"], reference.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=multimask,
            hq_token_only=hq_token_only, interm_embeddings=[pair["early"]])
        prepared = ours.prepare_image({"image_embeddings": pair["embedding"], "early_features": pair["early"]})
        points = prompt["points"] or (None, None)
        prediction = ours.decode(prepared, Prompts(*points, prompt["boxes"], prompt["masks"]), multimask,
                                 hq_token_only=hq_token_only)
    assert prediction.low_res_logits.shape == expected.shape == (3, 1, *expected.shape[-2:])
    assert max_diff(prediction.low_res_logits, expected) <= TOL
    assert max_diff(prediction.iou_predictions, expected_iou) <= TOL


@pytest.mark.parametrize("hq_token_only", [False, True], ids=["sam+hq", "hq_only"])
@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
def test_predictor_matches_the_reference_predictor(pair: dict[str, Any], multimask: bool,
                                                   hq_token_only: bool) -> None:
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    theirs = segment_anything_hq.SamPredictor(pair["reference"])
    theirs.set_image(image)
    mine = sam_core.Predictor(pair["ours"], mask_upscaling="torch")
    with sam_core.fast_paths(False):
        mine.set_image(image)
    assert max_diff(mine.get_image_embedding(), theirs.get_image_embedding()) <= TOL
    prompt = dict(point_coords=np.array([[120.0, 80.0], [30.0, 40.0]]), point_labels=np.array([1, 0]),
                  multimask_output=multimask, hq_token_only=hq_token_only, return_logits=True)
    masks, scores, low_res = mine.predict(**prompt)
    their_masks, their_scores, their_low_res = theirs.predict(**prompt)
    assert masks.shape == their_masks.shape == (1, 200, 300)
    for actual, expected in ((masks, their_masks), (scores, their_scores), (low_res, their_low_res)):
        assert np.abs(actual - expected).max() <= TOL


def test_hq_token_only_is_refused_by_other_families(tiny_pth: Path) -> None:
    predictor = sam_core.Predictor(sam_core.load_sam(tiny_pth))
    predictor.set_image(np.zeros((64, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="hq_token_only: not an option of sam models"):
        predictor.predict(point_coords=np.array([[10.0, 10.0]]), point_labels=np.array([1]), hq_token_only=True)


@pytest.mark.parametrize("name", ["sam_hq_vit_b", "sam_hq_vit_l", "sam_hq_vit_h", "sam_hq_vit_tiny"])
def test_registry_models_have_the_reference_tensors(name: str) -> None:
    build_reference = segment_anything_hq.sam_model_registry[name.removeprefix("sam_hq_")]
    if name == "sam_hq_vit_tiny":  # TinyViT's init cannot run on the meta device
        reference = build_reference().state_dict()
    else:
        with torch.device("meta"):
            reference = build_reference().state_dict()
    with torch.device("meta"):
        ours = sam_core.build_sam(name).state_dict()
    head = {n for n in reference if n.startswith(("image_encoder.head.", "image_encoder.norm_head."))}
    assert set(reference) - head == set(ours)
    assert all(reference[n].shape == tensor.shape for n, tensor in ours.items())
    assert sam_core.infer_config(reference) == sam_core.registry.lookup_model(name)[1]


def test_non_official_vit_shapes_are_inferred(tmp_path: Path) -> None:
    config = SamHqConfig(sam_core.SamConfig(image_size=128, encoder_embed_dim=32, encoder_depth=3,
                                            encoder_num_heads=2, encoder_global_attn_indexes=(2,), window_size=4,
                                            prompt_embed_dim=32, decoder_mlp_dim=64, iou_head_hidden_dim=16))
    torch.save(make_reference_sam_hq(config).state_dict(), tmp_path / "custom.pth")
    model = sam_core.load_sam(tmp_path / "custom.pth")
    assert model.config == config and model.early_layer == 2


# ------------------------------------------------------------------ Hugging Face SamHQModel

@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, sam_core.PromptableSegmenter]:
    hf = make_hf_sam_hq(SAM_CONFIGS["vit_tiny"], seed=2)
    directory = tmp_path_factory.mktemp("hf_sam_hq")
    hf.save_pretrained(directory)
    return hf, sam_core.load_sam(directory)


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single"])
def test_hugging_face_model_matches(hf_pair: tuple[torch.nn.Module, sam_core.PromptableSegmenter],
                                    multimask: bool) -> None:
    """Encoder outputs, HQ features, the HQ token's hypernetwork and the IoU predictions equal SamHQModel's.

    Its masks are not compared: transformers' SamHQMaskDecoder (5.23) upscales the image embedding it gave
    the two-way transformer, with height and width swapped, where segment-anything-hq upscales the
    transformer's output image tokens; sam_core's masks follow segment-anything-hq (tests above).
    """
    hf, ours = hf_pair
    assert ours.family == "sam_hq" and ours.config == VIT
    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(3)) * 255
    pixels = ours.preprocess(image)
    prompt = prompt_cases(256, 64)["box_and_points"]
    (points, labels), boxes = prompt["points"], prompt["boxes"]
    decoder = hf.mask_decoder
    with torch.no_grad():
        embedding, intermediate = hf.get_image_embeddings(pixels)
        features = ours.encode(pixels)
        expected = hf(image_embeddings=embedding, intermediate_embeddings=intermediate, input_points=points[None],
                      input_labels=labels[None], input_boxes=boxes[None], multimask_output=multimask)
        prepared = ours.prepare_image(features)
        prediction = ours.decode(prepared, Prompts(points, labels, boxes), multimask)
        encoded = decoder.encoder_conv2(decoder.activation(decoder.encoder_norm(decoder.encoder_conv1(embedding))))
        early = intermediate[0].permute(0, 3, 1, 2)
        compressed = decoder.compress_vit_conv2(decoder.activation(decoder.compress_vit_norm(
            decoder.compress_vit_conv1(early))))
        tokens = torch.randn(5, 64, generator=torch.Generator().manual_seed(4))
        hq_mlp = (decoder.hq_mask_mlp(tokens), ours.mask_decoder.hf_mlp(tokens))
    assert max_diff(features["image_embeddings"], embedding) <= TOL
    assert max_diff(features["early_features"], intermediate[0]) <= TOL
    assert max_diff(prepared.hq_features, encoded + compressed) <= TOL
    assert max_diff(*hq_mlp) <= TOL
    # transformers returns all three multimask outputs sorted by IoU; the reference (and sam_core) the best.
    assert max_diff(prediction.iou_predictions, expected.iou_scores[0, :, :1]) <= TOL


# ------------------------------------------------------------------ automatic mask generator

# Filters off and NMS keeping all but identical boxes: random weights give near-identical masks.
GENERATOR_OPTIONS = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


def test_generator_gives_the_reference_records(tmp_path: Path) -> None:
    """One mask per point (SAM's best of three plus the HQ mask), then the usual filters and NMS."""
    reference = make_reference_sam_hq(VIT, seed=4)
    torch.save(reference.state_dict(), tmp_path / "sam_hq.pth")
    image = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    theirs = segment_anything_hq.SamAutomaticMaskGenerator(reference, **GENERATOR_OPTIONS).generate(image)
    ours = sam_core.AutomaticMaskGenerator(sam_core.load_sam(tmp_path / "sam_hq.pth"), **GENERATOR_OPTIONS)
    records = ours.generate(image)
    assert len(theirs) >= 3
    assert_records_equal(records, theirs, score_tolerance=1e-5)

    # The same records through sam-amg --model with the .pth (family detected from its tensor names).
    cv2.imwrite(str(tmp_path / "photo.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    options = [item for name, value in GENERATOR_OPTIONS.items()
               for item in ("--" + name.replace("_", "-"), str(value))]
    assert amg_main(["--input", str(tmp_path / "photo.png"), "--output", str(tmp_path / "out"),
                     "--model", str(tmp_path / "sam_hq.pth"), "--output-format", "coco", *options]) == 0
    written = json.loads((tmp_path / "out" / "photo.json").read_text())
    assert [r["bbox"] for r in written] == [r["bbox"] for r in theirs]
    assert [r["area"] for r in written] == [r["area"] for r in theirs]


def test_saved_embedding_keeps_the_early_feature(tmp_path: Path) -> None:
    model = sam_core.build_sam(VIT)
    image = np.random.default_rng(2).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    prompt = dict(point_coords=np.array([[60.0, 40.0]]), point_labels=np.array([1]), return_logits=True)
    predictor = sam_core.Predictor(model)
    predictor.set_image(image)
    assert predictor.get_image_embedding().shape == (1, 64, 16, 16)
    expected = predictor.predict(**prompt)
    predictor.save_embedding(tmp_path / "features.safetensors")
    restored = sam_core.Predictor(model)
    restored.load_embedding(tmp_path / "features.safetensors")
    for actual, wanted in zip(restored.predict(**prompt), expected):
        np.testing.assert_array_equal(actual, wanted)
    with pytest.raises(ValueError, match="needs more than the embedding"):
        restored.set_image_embedding(predictor.get_image_embedding(), (90, 120))
