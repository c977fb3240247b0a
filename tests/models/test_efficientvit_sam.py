"""EfficientViT-SAM against mit-han-lab's reference (``efficientsam==1.0.0``) on identical random weights.

Every tensor of the reference is randomised (BatchNorm running statistics and zero-initialised biases included)
and its state dict is written as the released files are, then loaded by ``load_sam``. L0 runs at its real
encoder size (512, with prompts in the 1024 frame); XL0 at a reduced encoder input (256), which keeps the test
fast and exercises both forms of the linear attention (maps of 8x8 and 4x4 pixels); L1, L2 and XL1 (the same
blocks, deeper) at an encoder input of 128.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from efficientsam.models.efficientvit.sam import EfficientViTSamAutomaticMaskGenerator, EfficientViTSamPredictor
from PIL import Image

import sam_core
from sam_core import AutomaticMaskGenerator, Predictor, load_sam, save_sam
from sam_core.cli import amg_main
from sam_core.errors import CheckpointError
from sam_core.io import checkpoints as checkpoint
from sam_core.models.efficientvit import EFFICIENTVIT_SAM_CONFIGS, EfficientViTSam
from sam_core.models.efficientvit.checkpoint import infer_efficientvit_sam_config
from sam_core.models.efficientvit.parity import make_reference_efficientvit_sam

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TOL = 1e-4
ENCODER_SIZES = {"efficientvit_sam_l0": 256, "efficientvit_sam_xl0": 128}
CASES = {
    "point": dict(point_coords=np.array([[150.0, 80.0]]), point_labels=np.array([1])),
    "points": dict(point_coords=np.array([[150.0, 80.0], [40.0, 170.0]]), point_labels=np.array([1, 0])),
    "box": dict(box=np.array([30.0, 20.0, 250.0, 160.0])),
    "box_and_point": dict(point_coords=np.array([[100.0, 90.0]]), point_labels=np.array([0]),
                          box=np.array([30.0, 20.0, 250.0, 160.0])),
}


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (190, 283, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[torch.nn.Module, EfficientViTSam, Path]]:
    """name -> (reference, sam_core's model loaded from the reference's file, that file)."""
    folder = tmp_path_factory.mktemp("efficientvit")
    result = {}
    for name, wrapped in (("efficientvit_sam_l0", False), ("efficientvit_sam_xl0", True)):
        size = ENCODER_SIZES[name]
        reference = make_reference_efficientvit_sam(name, size, seed=1)
        path = folder / f"{name}.pt"
        # The released files come flat or as {"state_dict": ...}: one of each.
        torch.save({"state_dict": reference.state_dict()} if wrapped else reference.state_dict(), path)
        config = dataclasses.replace(EFFICIENTVIT_SAM_CONFIGS[name], encoder_image_size=size)
        result[name] = (reference, load_sam(path, config=config), path)
    return result


@pytest.fixture(scope="module")
def predictors(models, image) -> dict[str, tuple[EfficientViTSamPredictor, Predictor]]:
    result = {}
    for name, (reference, ours, _) in models.items():
        theirs = EfficientViTSamPredictor(reference)
        theirs.set_image(image)
        mine = Predictor(ours)
        mine.set_image(image)
        result[name] = (theirs, mine)
    return result


def max_diff(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


@pytest.mark.parametrize("name", ["efficientvit_sam_l0", "efficientvit_sam_xl0"])
def test_checkpoint_names_shapes_and_config(models, name):
    reference, ours, _ = models[name]
    theirs = reference.state_dict()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.items()}
    assert ours.family == "efficientvit_sam"
    assert infer_efficientvit_sam_config(theirs) == EFFICIENTVIT_SAM_CONFIGS[name]
    assert checkpoint.model_type_name(EFFICIENTVIT_SAM_CONFIGS[name]) == name


@pytest.mark.parametrize("name", ["efficientvit_sam_l0", "efficientvit_sam_xl0"])
def test_embedding_matches_reference(predictors, name):
    theirs, mine = predictors[name]
    embedding = mine.get_image_embedding()
    assert embedding.shape == (1, 256, 64, 64)
    assert max_diff(embedding, theirs.features) <= TOL
    assert mine.original_size == theirs.original_size


@pytest.mark.parametrize("name", ["efficientvit_sam_l0", "efficientvit_sam_xl0"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("multimask", [True, False])
def test_prediction_matches_reference(predictors, name, case, multimask):
    theirs, mine = predictors[name]
    expected = theirs.predict(**CASES[case], multimask_output=multimask, return_logits=True)
    got = mine.predict(**CASES[case], multimask_output=multimask, return_logits=True)
    assert max_diff(got[2], expected[2]) <= TOL  # low-res logits
    assert max_diff(got[1], expected[1]) <= TOL  # IoU predictions
    assert max_diff(got[0], expected[0]) <= TOL  # logits at the image size


@pytest.mark.parametrize("name", ["efficientvit_sam_l0", "efficientvit_sam_xl0"])
def test_mask_input_matches_reference(predictors, name):
    theirs, mine = predictors[name]
    first = theirs.predict(**CASES["point"], multimask_output=True, return_logits=True)
    mask_input = first[2][np.argmax(first[1])][None]
    for multimask in (True, False):
        expected = theirs.predict(**CASES["points"], mask_input=mask_input, multimask_output=multimask,
                                  return_logits=True)
        got = mine.predict(**CASES["points"], mask_input=mask_input, multimask_output=multimask, return_logits=True)
        assert max_diff(got[2], expected[2]) <= TOL
        assert max_diff(got[1], expected[1]) <= TOL


@pytest.mark.parametrize("name", ["efficientvit_sam_l1", "efficientvit_sam_l2", "efficientvit_sam_xl1"])
def test_deeper_models_match_reference(name, image, tmp_path):
    """L1, L2 and XL1 are L0 and XL0 with more blocks per stage and in the neck: their released shapes
    are recognised, and embeddings, logits and IoU match the reference (at a reduced encoder input, for time)."""
    reference = make_reference_efficientvit_sam(name, 128, seed=2)
    path = tmp_path / f"{name}.pt"
    torch.save(reference.state_dict(), path)
    assert infer_efficientvit_sam_config(reference.state_dict()) == EFFICIENTVIT_SAM_CONFIGS[name]
    ours = load_sam(path, config=dataclasses.replace(EFFICIENTVIT_SAM_CONFIGS[name], encoder_image_size=128))
    theirs, mine = EfficientViTSamPredictor(reference), Predictor(ours)
    theirs.set_image(image)
    mine.set_image(image)
    assert max_diff(mine.get_image_embedding(), theirs.features) <= TOL
    for case in ("points", "box_and_point"):
        expected = theirs.predict(**CASES[case], multimask_output=True, return_logits=True)
        got = mine.predict(**CASES[case], multimask_output=True, return_logits=True)
        assert max_diff(got[2], expected[2]) <= TOL and max_diff(got[1], expected[1]) <= TOL


def test_batchnorm_folding_matches_plain_path(models, predictors, image):
    _, ours, _ = models["efficientvit_sam_l0"]
    folded = predictors["efficientvit_sam_l0"][1].get_image_embedding()  # set_image ran on the fast path
    pixels = torch.as_tensor(ours.transform.apply_image(image)).permute(2, 0, 1)[None]
    with torch.no_grad(), sam_core.fast_paths(False):
        plain = ours.encode(ours.preprocess(pixels))[ours.embedding_key]
    assert max_diff(folded, plain) <= 1e-3
    assert not torch.equal(folded, plain)  # the folded convolutions did run


def test_encoder_and_prompt_frames():
    ours = sam_core.build_sam("efficientvit_sam_l0")
    assert ours.image_size == 512 and ours.transform.target_length == 1024
    assert ours.transform.apply_image(np.zeros((190, 283, 3), np.uint8)).shape == (344, 512, 3)
    assert ours.transform.prompt_frame_size((190, 283)) == (687, 1024)
    np.testing.assert_allclose(ours.transform.apply_coords(np.array([[283.0, 190.0]]), (190, 283)), [[1024, 687]])


# Random weights give every point nearly the same mask: no quality filter and no NMS (a threshold of 1
# suppresses nothing), so that every mask of every point is a record to compare.
GENERATOR_OPTIONS = dict(points_per_side=2, pred_iou_thresh=-100.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


@pytest.fixture(scope="module")
def generated(models, image) -> list[dict]:
    return AutomaticMaskGenerator(models["efficientvit_sam_l0"][1], **GENERATOR_OPTIONS).generate(image)


def test_generator_matches_reference(models, generated, image):
    reference = models["efficientvit_sam_l0"][0]
    expected = EfficientViTSamAutomaticMaskGenerator(reference, **GENERATOR_OPTIONS).generate(image)
    assert len(expected) == 12 and len(generated) == len(expected)
    for mine, theirs in zip(generated, expected):
        assert np.mean(mine["segmentation"] == theirs["segmentation"]) >= 0.9999
        assert mine["point_coords"] == theirs["point_coords"] and mine["crop_box"] == theirs["crop_box"]
        assert mine["bbox"] == theirs["bbox"] and mine["area"] == pytest.approx(theirs["area"], abs=10)
        assert mine["predicted_iou"] == pytest.approx(theirs["predicted_iou"], abs=TOL)
        assert mine["stability_score"] == pytest.approx(theirs["stability_score"], abs=1e-3)


@pytest.fixture(scope="module")
def l0_safetensors(models, tmp_path_factory) -> Path:
    _, ours, _ = models["efficientvit_sam_l0"]
    return save_sam(ours, tmp_path_factory.mktemp("saved") / "l0.safetensors")


def test_round_trip_and_wrong_config(models, l0_safetensors):
    _, ours, path = models["efficientvit_sam_l0"]
    again = load_sam(l0_safetensors)
    assert again.config == ours.config and again.config.encoder_image_size == ENCODER_SIZES["efficientvit_sam_l0"]
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), ours.state_dict().values()))
    with pytest.raises(CheckpointError, match="efficientvit_sam_l0"):
        load_sam(path, config="efficientvit_sam_l1")
    with pytest.raises(CheckpointError, match="efficientvit_sam"):
        load_sam(path, config="vit_b")


def test_registry_name_reads_the_cached_file(models, tmp_path, monkeypatch):
    """``load_sam("efficientvit_sam_l0")``: the released file, put in the cache by hand (never downloaded)."""
    _, ours, path = models["efficientvit_sam_l0"]
    (tmp_path / "efficientvit_sam_l0.pt").write_bytes(path.read_bytes())
    monkeypatch.setenv("SAM_CORE_CACHE", str(tmp_path))
    loaded = load_sam("efficientvit_sam_l0")
    assert loaded.config == EFFICIENTVIT_SAM_CONFIGS["efficientvit_sam_l0"]
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), ours.state_dict().values()))
    monkeypatch.setenv("SAM_CORE_CACHE", str(tmp_path / "empty"))
    with pytest.raises(CheckpointError, match="efficientvit_sam_xl1.pt"):
        load_sam("efficientvit_sam_xl1")


def test_sam_amg_with_model_option(generated, image, l0_safetensors, tmp_path):
    Image.fromarray(image).save(tmp_path / "photo.png")
    options = [item for name, value in GENERATOR_OPTIONS.items()
               for item in ("--" + name.replace("_", "-"), str(value))]
    assert amg_main(["--input", str(tmp_path / "photo.png"), "--output", str(tmp_path / "out"),
                     "--model", str(l0_safetensors), "--output-format", "coco", *options]) == 0
    written = json.loads((tmp_path / "out" / "photo.json").read_text())
    assert [record["bbox"] for record in written] == [record["bbox"] for record in generated]
    assert [record["predicted_iou"] for record in written] == [record["predicted_iou"] for record in generated]
