"""AutomaticMaskGenerator with a SAM 2 model vs Meta's ``SAM2AutomaticMaskGenerator``, and ``sam-amg`` with SAM 2.

Random weights give nearly the same mask for every point, so the parity tests use
weights/sam2_hiera_test_shapes.safetensors: the ``sam2_hiera_test`` config trained on synthetic shapes by
tests/make_sam2_shapes_model.py, whose masks follow the prompt. Records must agree: the same masks in the
same order (pixels equal on >= 99.99 %), boxes, points and crop boxes equal, scores within 1e-4.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from make_sam2_shapes_model import DEFAULT_OUTPUT as SHAPES_WEIGHTS
from make_shapes_model import draw_shapes_image
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator as ReferenceGenerator

from sam_core import load_sam
from sam_core.cli import amg as cli
from sam_core.compat import SAM2AutomaticMaskGenerator
from sam_core.jobs.amg import build_generator
from sam_core.models.sam2 import SAM2_CONFIGS
from sam_core.models.sam2.parity import make_reference_sam2, save_reference_pt
from sam_core.pipelines import mask_generator
from sam_core.pipelines.mask_generator import AutomaticMaskGenerator

MASK_AGREEMENT = 0.9999
TOL = 1e-4
TEST_CONFIG = SAM2_CONFIGS["sam2_hiera_test"]
# The toy model's predicted IoUs are lower than a real model's: with SAM 2's defaults (0.8 / 0.95) no mask of
# the test image survives, so the quality filters are lowered.
THRESHOLDS = {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.8}
OPTIONS = {"points_per_side": 12, **THRESHOLDS}


@pytest.fixture(scope="module")
def shapes_state_dict() -> dict[str, torch.Tensor]:
    assert SHAPES_WEIGHTS.exists(), f"{SHAPES_WEIGHTS} is missing: run tests/make_sam2_shapes_model.py"
    model = load_sam(SHAPES_WEIGHTS, dtype=torch.float32)
    return model.state_dict()


@pytest.fixture(scope="module")
def reference_model(shapes_state_dict) -> torch.nn.Module:
    model = make_reference_sam2(TEST_CONFIG, seed=0)
    missing, unexpected = model.load_state_dict(shapes_state_dict, strict=False)
    assert not unexpected and all(name.split(".")[0] not in ("image_encoder", "sam_prompt_encoder",
                                                             "sam_mask_decoder", "no_mem_embed") for name in missing)
    return model.eval()


@pytest.fixture(scope="module")
def meta_pt(reference_model, tmp_path_factory) -> Path:
    return save_reference_pt(reference_model, tmp_path_factory.mktemp("sam2") / "sam2_shapes.pt")


@pytest.fixture(scope="module")
def our_model(meta_pt):
    return load_sam(meta_pt)


@pytest.fixture(scope="module")
def shapes_image() -> np.ndarray:
    image, _ = draw_shapes_image(np.random.default_rng(11), 180, 270, n_shapes=7)
    return image


def reference_generator(model: torch.nn.Module, **options: Any) -> ReferenceGenerator:
    generator = ReferenceGenerator(model, **options)
    side = TEST_CONFIG.image_size // 4  # Meta's predictor hard-codes the feature sizes of a 1024 input
    generator.predictor._bb_feat_sizes = [(side, side), (side // 2, side // 2), (side // 4, side // 4)]
    return generator


def assert_same_records(ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs)
    for mine, expected in zip(ours, theirs):
        assert mine.keys() == expected.keys()
        assert (mine["segmentation"] == expected["segmentation"]).mean() >= MASK_AGREEMENT
        assert mine["bbox"] == expected["bbox"] and mine["crop_box"] == expected["crop_box"]
        assert mine["point_coords"] == expected["point_coords"]
        assert abs(mine["area"] - expected["area"]) <= mine["segmentation"].size * (1 - MASK_AGREEMENT)
        assert abs(mine["predicted_iou"] - expected["predicted_iou"]) <= TOL
        # A pixel whose logit sits within float error of the threshold +- offset may fall on the other side (the
        # summation order differs with the CPU's vector width): that moves the score by about 1 / area.
        assert abs(mine["stability_score"] - expected["stability_score"]) <= max(TOL, 2 / max(expected["area"], 1))


@pytest.mark.parametrize("use_m2m", [False, True], ids=["plain", "m2m"])
def test_records_equal_the_reference_records(our_model, reference_model, shapes_image, use_m2m):
    options = dict(OPTIONS, use_m2m=use_m2m)
    theirs = reference_generator(reference_model, **options).generate(shapes_image)
    ours = AutomaticMaskGenerator(our_model, **options).generate(shapes_image)
    assert len(theirs) >= 4  # the model's masks follow the prompts: several shapes survive the filters
    assert_same_records(ours, theirs)


def test_m2m_changes_the_result(our_model, shapes_image):
    plain = AutomaticMaskGenerator(our_model, **OPTIONS).generate(shapes_image)
    refined = AutomaticMaskGenerator(our_model, use_m2m=True, **OPTIONS).generate(shapes_image)
    assert [r["predicted_iou"] for r in plain] != [r["predicted_iou"] for r in refined]


def test_single_mask_crops_and_threshold_equal_the_reference(our_model, reference_model, shapes_image):
    options = dict(points_per_side=8, multimask_output=False, crop_n_layers=1, mask_threshold=0.5,
                   output_mode="uncompressed_rle", **THRESHOLDS)
    theirs = reference_generator(reference_model, **options).generate(shapes_image)
    ours = SAM2AutomaticMaskGenerator(our_model, **options).generate(shapes_image)
    assert len(theirs) >= 4
    from sam_core.pipelines.masks import rle_to_mask

    for record in (*ours, *theirs):
        record["segmentation"] = rle_to_mask(record["segmentation"])
    assert_same_records(ours, theirs)


ALL_MASKS = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}  # every mask reaches post-processing


@pytest.mark.parametrize("options", [
    dict(points_per_side=8, crop_n_layers=1, **ALL_MASKS),
    dict(points_per_side=6, use_m2m=True, **ALL_MASKS),
    dict(points_per_side=8, multimask_output=False, mask_threshold=0.5, min_mask_region_area=30, **ALL_MASKS),
], ids=["crops", "m2m", "single-mask-threshold-cleanup"])
def test_fast_post_processing_equals_the_plain_one(our_model, shapes_image, options, monkeypatch):
    """Stability scores and boxes from low-res cell bounds, masks drawn after NMS: the records of upscaling
    every mask with torch (the model keeps its fast paths in both runs)."""
    large = cv2.resize(shapes_image, (shapes_image.shape[1] * 3, shapes_image.shape[0] * 3))
    for image in (shapes_image, large):
        fast = AutomaticMaskGenerator(our_model, **options).generate(image)
        with monkeypatch.context() as patch:
            patch.setattr(mask_generator, "fast_paths_enabled", lambda: False)
            plain = AutomaticMaskGenerator(our_model, **options).generate(image)
        assert len(fast) >= 5
        assert len(fast) == len(plain)
        for mine, expected in zip(fast, plain):
            assert mine.keys() == expected.keys()
            for key, value in expected.items():
                np.testing.assert_equal(mine[key], value, err_msg=key)  # NaN stability scores equal too


def test_every_mask_kept_gives_the_reference_records(our_model, reference_model, shapes_image):
    options = dict(points_per_side=8, crop_n_layers=1, **ALL_MASKS)
    theirs = reference_generator(reference_model, **options).generate(shapes_image)
    ours = AutomaticMaskGenerator(our_model, **options).generate(shapes_image)
    assert len(theirs) >= 10
    assert_same_records(ours, theirs)


def _connected_components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What Meta's CUDA kernel returns (8-connectivity): each foreground pixel's label and component area."""
    labels, areas = torch.zeros(mask.shape, dtype=torch.int32), torch.zeros(mask.shape, dtype=torch.int32)
    for index, image in enumerate(mask[:, 0].to(torch.uint8).numpy()):
        _, label, stats, _ = cv2.connectedComponentsWithStats(image, connectivity=8)
        area = stats[:, cv2.CC_STAT_AREA].copy()
        area[0] = 0
        labels[index, 0] = torch.from_numpy(label)
        areas[index, 0] = torch.from_numpy(area[label])
    return labels, areas


def test_min_mask_region_area_cleans_low_res_logits_as_meta_on_a_gpu(our_model, reference_model, shapes_image,
                                                                     monkeypatch):
    """SAM 2's generator gives min_mask_region_area to its predictor as max_hole_area and max_sprinkle_area;
    Meta's predictor needs its CUDA extension for that. With the extension emulated, the records agree."""
    import sam2.utils.misc

    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", _connected_components)
    options = dict(OPTIONS, min_mask_region_area=30)
    theirs = reference_generator(reference_model, **options).generate(shapes_image)
    ours = AutomaticMaskGenerator(our_model, **options).generate(shapes_image)
    assert_same_records(ours, theirs)
    plain = AutomaticMaskGenerator(our_model, **OPTIONS).generate(shapes_image)
    assert [r["area"] for r in plain] != [r["area"] for r in ours]


def test_generator_uses_the_sam2_defaults(our_model):
    generator = AutomaticMaskGenerator(our_model)
    assert (generator.pred_iou_thresh, generator.stability_score_thresh, generator.box_nms_thresh) == (0.8, 0.95, 0.7)
    assert generator.mask_threshold == 0.0 and not generator.use_m2m
    compat = SAM2AutomaticMaskGenerator(our_model, 16, 32, 0.7, 0.9, 1.0, 0.25)  # Meta's positional order
    assert (compat.pred_iou_thresh, compat.stability_score_thresh, compat.mask_threshold) == (0.7, 0.9, 0.25)


# ------------------------------------------------------------------------------------------------ sam-amg

@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for seed, name in enumerate(("circles.png", "boxes.jpg")):
        image, _ = draw_shapes_image(np.random.default_rng(seed + 20), 120 + 30 * seed, 160, n_shapes=5)
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def read_metadata(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metadata.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("use_m2m", [False, True], ids=["plain", "m2m"])
def test_sam_amg_with_a_sam2_pt_writes_the_generator_masks(meta_pt, our_model, image_folder, tmp_path, use_m2m):
    flags = ["--points-per-side", "8", "--pred-iou-thresh", "0.5", "--stability-score-thresh", "0.8"]
    flags += ["--use-m2m"] if use_m2m else []
    assert cli.main(["--input", str(image_folder), "--output", str(tmp_path), "--checkpoint", str(meta_pt),
                         *flags]) == 0
    generator = AutomaticMaskGenerator(our_model, points_per_side=8, use_m2m=use_m2m, **THRESHOLDS)
    for name in ("circles.png", "boxes.jpg"):
        image = cv2.cvtColor(cv2.imread(str(image_folder / name)), cv2.COLOR_BGR2RGB)
        expected = generator.generate(image)
        rows = read_metadata(tmp_path / Path(name).stem)
        assert len(rows) == len(expected) >= 1
        for index, (row, record) in enumerate(zip(rows, expected)):
            assert abs(float(row["predicted_iou"]) - record["predicted_iou"]) <= 1e-6
            written = cv2.imread(str(tmp_path / Path(name).stem / f"{index}.png"), cv2.IMREAD_GRAYSCALE) > 0
            assert np.array_equal(written, record["segmentation"])


def test_sam_amg_model_options_take_the_sam2_defaults(meta_pt, tmp_path, monkeypatch):
    parser = cli.build_parser()
    args = parser.parse_args(["--input", "x", "--output", "y", "--checkpoint", str(meta_pt), "--use-m2m",
                              "--mask-threshold", "0.5", "--single-mask"])
    generator = build_generator(args)
    assert (generator.pred_iou_thresh, generator.stability_score_thresh) == (0.8, 0.95)
    assert generator.use_m2m and generator.mask_threshold == 0.5 and not generator.multimask_output


def test_sam_amg_by_registry_name_and_hugging_face_folder(image_folder, tmp_path, monkeypatch):
    from sam_core.models.sam2.parity import make_hf_sam2

    # --model sam2.1_hiera_tiny: the official file, placed in the cache by hand (its hash is not known, so
    # sam_core does not download it); random full-size weights stand in for it here.
    monkeypatch.setenv("SAM_CORE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    full = load_sam(save_reference_pt(make_reference_sam2(SAM2_CONFIGS["sam2.1_hiera_tiny"], seed=3),
                                      tmp_path / "cache" / "sam2.1_hiera_tiny.pt"))
    image = image_folder / "circles.png"
    options = ["--points-per-side", "2", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
    assert cli.main(["--input", str(image), "--output", str(tmp_path / "by_name"), "--model",
                         "sam2.1_hiera_tiny", *options]) == 0
    expected = AutomaticMaskGenerator(full, points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0)
    rows = read_metadata(tmp_path / "by_name" / "circles")
    assert len(rows) == len(expected.generate(cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB))) >= 1
    make_hf_sam2(TEST_CONFIG).save_pretrained(tmp_path / "hf")
    assert cli.main(["--input", str(image), "--output", str(tmp_path / "by_hf"), "--model",
                         str(tmp_path / "hf"), *options]) == 0
    assert (tmp_path / "by_hf" / "circles" / "metadata.csv").is_file()
