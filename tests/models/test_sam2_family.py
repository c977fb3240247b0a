"""SAM 2 as a model family: the registry, load_sam / save_sam / sam-convert on Meta .pt files, Hugging Face
folders and sam_core files, the official names, SAM2Transforms' pixels, and the model interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sam_core
from sam_core import registry as families
from sam_core.cli import convert_main
from sam_core.interface import Prompts
from sam_core.io.checkpoints import CheckpointError, download_official_checkpoint, load_sam, load_sam2, save_sam
from sam_core.models.sam2 import SAM2_CONFIGS, Sam2
from sam_core.models.sam2.checkpoint import VIDEO_MODULES
from sam_core.models.sam2.config import image_settings
from sam_core.models.sam2.model import EMBEDDING_KEY, HIGH_RES_KEYS
from sam_core.models.sam2.parity import make_hf_sam2, make_reference_sam2, save_reference_pt
from sam_core.transforms import StretchToSquare

TEST_CONFIG = SAM2_CONFIGS["sam2_hiera_test"]


@pytest.fixture(scope="module")
def reference():
    return make_reference_sam2(TEST_CONFIG, seed=0)


@pytest.fixture(scope="module")
def meta_pt(reference, tmp_path_factory) -> Path:
    return save_reference_pt(reference, tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_test.pt")


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_registry_knows_sam2():
    assert families.FAMILIES["sam2"] is families.family_named("sam2")
    names = sam_core.model_names()
    for size in ("tiny", "small", "base_plus", "large"):
        assert f"sam2_hiera_{size}" in names and f"sam2.1_hiera_{size}" in names
    family, config = families.lookup_model("sam2.1_hiera_small")
    assert family.name == "sam2" and config == SAM2_CONFIGS["sam2.1_hiera_small"]
    model = sam_core.build_sam("sam2_hiera_test")
    assert isinstance(model, Sam2) and isinstance(model, sam_core.PromptableSegmenter)
    assert families.model_type_name(model.config) == "sam2_hiera_test"
    entry = families.OFFICIAL_CHECKPOINTS["sam2.1_hiera_large"]
    assert entry.filename == "sam2.1_hiera_large.pt"
    assert entry.base_url == "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
    assert families.OFFICIAL_CHECKPOINTS["sam2_hiera_tiny"].base_url.endswith("/072824/")


def test_load_sam_reads_meta_pt_and_leaves_video_weights(meta_pt, reference):
    ours = load_sam(meta_pt)  # the test config, recognised from the shapes
    assert isinstance(ours, Sam2) and ours.config == TEST_CONFIG
    assert not any(name.split(".")[0] in VIDEO_MODULES for name in ours.state_dict())
    with_video, video = load_sam2(meta_pt, config="sam2_hiera_test")
    assert same_weights(ours, with_video) and video  # the video issue reads them through load_sam2
    expected_video = {k: v for k, v in reference.state_dict().items() if k.split(".")[0] in VIDEO_MODULES}
    loaded = sam_core.load_checkpoint(meta_pt)
    assert same_weights(ours, loaded.model) and loaded.extras.keys() == video.keys() == expected_video.keys()
    assert all(torch.equal(loaded.extras[k], v) for k, v in expected_video.items())
    expected = {k: v for k, v in reference.state_dict().items() if k.split(".")[0] not in VIDEO_MODULES}
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in expected.items())
    assert load_sam(meta_pt, config=TEST_CONFIG).config == TEST_CONFIG
    with pytest.raises(CheckpointError, match="sam2 model, but a sam config"):
        load_sam(meta_pt, config="vit_tiny")


def test_official_sizes_are_recognised_from_shapes(tmp_path):
    full = sam_core.build_sam("sam2.1_hiera_tiny")
    torch.save({"model": full.state_dict()}, tmp_path / "tiny.pt")
    assert load_sam(tmp_path / "tiny.pt").config == SAM2_CONFIGS["sam2.1_hiera_tiny"]


def test_save_sam_and_sam_convert_round_trip_bit_identical(meta_pt, tmp_path):
    ours = load_sam(meta_pt)
    again = load_sam(save_sam(ours, tmp_path / "ours.safetensors"))
    assert isinstance(again, Sam2) and again.config == TEST_CONFIG and same_weights(ours, again)
    assert convert_main([str(meta_pt), str(tmp_path / "converted.safetensors")]) == 0
    assert same_weights(ours, load_sam(tmp_path / "converted.safetensors"))
    assert convert_main([str(meta_pt), str(tmp_path / "half.safetensors"), "--dtype", "bfloat16"]) == 0
    assert load_sam(tmp_path / "half.safetensors").dtype == torch.bfloat16


def test_hugging_face_folder_loads_through_load_sam(tmp_path):
    make_hf_sam2(TEST_CONFIG).save_pretrained(tmp_path)
    ours = load_sam(tmp_path)
    # A Sam2Model folder describes the image model only: the video settings keep their defaults.
    assert isinstance(ours, Sam2) and image_settings(ours.config) == image_settings(TEST_CONFIG)
    assert same_weights(ours, load_sam2(tmp_path)[0])


def test_official_names_are_never_downloaded_without_a_known_hash(tmp_path, monkeypatch, meta_pt):
    monkeypatch.setenv("SAM_CORE_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match="sha256 is not known") as error:
        load_sam("sam2.1_hiera_tiny")
    message = str(error.value)
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt" in message
    assert str(tmp_path / "sam2.1_hiera_tiny.pt") in message
    # A file placed there by hand is used as it is.
    full = sam_core.build_sam("sam2.1_hiera_tiny")
    torch.save({"model": full.state_dict()}, tmp_path / "sam2.1_hiera_tiny.pt")
    assert download_official_checkpoint("sam2.1_hiera_tiny") == tmp_path / "sam2.1_hiera_tiny.pt"
    assert same_weights(load_sam("sam2.1_hiera_tiny"), full)


def test_preprocess_reproduces_sam2_transforms_pixels():
    from sam2.utils.transforms import SAM2Transforms

    model = sam_core.build_sam("sam2_hiera_test")
    rng = np.random.default_rng(0)
    for shape in [(300, 500), (90, 120), (256, 256)]:
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        expected = SAM2Transforms(resolution=256, mask_threshold=0.0)(image)
        pixels = torch.as_tensor(model.transform.apply_image(image)).permute(2, 0, 1)[None]
        assert torch.equal(model.preprocess(pixels)[0], expected)


def test_stretch_to_square_coordinates_match_sam2_transforms():
    from sam2.utils.transforms import SAM2Transforms

    reference = SAM2Transforms(resolution=1024, mask_threshold=0.0)
    ours = StretchToSquare(1024)
    coords = np.array([[[17.3, 900.1], [1799.0, 0.5]]])
    expected = reference.transform_coords(torch.as_tensor(coords, dtype=torch.float), True, (1200, 1800))
    assert np.array_equal(ours.apply_coords(coords, (1200, 1800)), expected.numpy())
    assert torch.equal(ours.apply_coords(torch.as_tensor(coords), (1200, 1800)), expected)
    boxes = np.array([[10.0, 20.0, 300.5, 400.25]])
    expected = reference.transform_boxes(torch.as_tensor(boxes, dtype=torch.float), True, (1200, 1800))
    assert np.array_equal(ours.apply_boxes(boxes, (1200, 1800)), expected.reshape(-1, 4).numpy())
    fractions = np.array([[0.25, 0.75]])
    expected = reference.transform_coords(torch.as_tensor(fractions, dtype=torch.float), False, (1200, 1800))
    assert np.array_equal(ours.apply_normalized_coords(fractions, (1200, 1800)), expected.numpy())
    assert ours.input_size((1200, 1800)) == (1200, 1800)
    low_res = torch.randn(2, 3, 256, 256)
    expected = torch.nn.functional.interpolate(low_res, (120, 180), mode="bilinear", align_corners=False)
    assert torch.equal(ours.upscale_logits(low_res, (120, 180), (120, 180)), expected)
    assert np.abs(ours.upscale_logits(low_res, (120, 180), (120, 180), backend="opencv")
                  - expected.numpy()).max() < 1e-3  # OpenCV fixed-point weights


def test_interface_features_and_extras(meta_pt):
    model = load_sam(meta_pt)
    assert model.family == "sam2" and model.embedding_key == EMBEDDING_KEY and model.mask_input_size == 64
    defaults = model.generator_defaults
    assert (defaults.pred_iou_thresh, defaults.stability_score_thresh, defaults.box_nms_thresh) == (0.8, 0.95, 0.7)
    images = torch.randint(0, 256, (2, 3, 100, 140), dtype=torch.uint8)
    with torch.no_grad():
        features = model.encode(model.preprocess(images))
    assert set(features) == {EMBEDDING_KEY, *HIGH_RES_KEYS}
    assert {name: tuple(f.shape[1:]) for name, f in features.items()} == model.feature_shapes
    image = model.prepare_image({name: f[:1] for name, f in features.items()})
    prompts = Prompts(point_coords=torch.tensor([[[30.0, 40.0]], [[200.0, 100.0]]]),
                      point_labels=torch.ones(2, 1, dtype=torch.int))
    with torch.no_grad():
        prediction = model.decode(image, prompts, multimask_output=True)
        embed, high_res = model.encode_image(model.preprocess(images[:1]))
        masks, iou, object_scores = model.predict_masks(embed, high_res, prompts.point_coords, prompts.point_labels)
    assert torch.allclose(prediction.low_res_logits, masks, atol=1e-5)
    assert torch.allclose(prediction.iou_predictions, iou, atol=1e-6)
    assert torch.allclose(prediction.extras["object_score_logits"], object_scores, atol=1e-6)
