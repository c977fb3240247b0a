"""AutomaticMaskGenerator against Meta's SamAutomaticMaskGenerator on identical weights.

Random weights return nearly the same mask for every point prompt, so NMS would leave one mask and a
parity test would prove little. These tests use weights/sam_vit_tiny_shapes.safetensors instead: the
vit_tiny config trained for 2000 seeded steps on synthetic images of coloured rectangles and
ellipses over noise, with a point prompt inside one shape (BCE + dice on the low-res masks, MSE on the
IoU head); tests/make_shapes_model.py regenerates it. The test images are drawn the same way, so the
model returns a different mask for each shape, with predicted IoUs that spread across the thresholds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from make_shapes_model import DEFAULT_OUTPUT as SHAPES_WEIGHTS
from make_shapes_model import draw_shapes_image
from pycocotools import mask as mask_utils
from record_checks import assert_records_equal
from safetensors.torch import load_file
from segment_anything import SamAutomaticMaskGenerator as ReferenceGenerator

import sam_core
from sam_core import AutomaticMaskGenerator, SamConfig
from sam_core.models.sam.parity import make_reference_sam
from sam_core.pipelines import mask_generator, upscaled_masks
from sam_core.pipelines.masks import build_point_grid

# pycocotools' decode trips a numpy 2 deprecation warning inside the library itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# Filters set where this small model's scores spread, so that they keep some masks and drop others.
THRESHOLDS = {"pred_iou_thresh": 0.55, "stability_score_thresh": 0.8}
# Options that exercise every stage: crops, all filters, and the small-region cleanup.
CROPS_AND_CLEANUP = dict(points_per_side=8, crop_n_layers=1, min_mask_region_area=60, points_per_batch=32,
                         **THRESHOLDS)


@pytest.fixture(scope="module")
def shapes_state_dict() -> dict[str, torch.Tensor]:
    assert SHAPES_WEIGHTS.exists(), f"{SHAPES_WEIGHTS} is missing: run tests/make_shapes_model.py"
    return load_file(str(SHAPES_WEIGHTS))


@pytest.fixture(scope="module")
def reference_sam(tiny_config: SamConfig, shapes_state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    sam = make_reference_sam(tiny_config)
    sam.load_state_dict(shapes_state_dict)
    return sam


@pytest.fixture(scope="module")
def our_sam(shapes_state_dict: dict[str, torch.Tensor]) -> sam_core.Sam:
    sam = sam_core.build_sam("vit_tiny")
    sam.load_state_dict(shapes_state_dict)
    return sam


@pytest.fixture(scope="module")
def shapes_image() -> np.ndarray:
    image, _ = draw_shapes_image(np.random.default_rng(11), 180, 270, n_shapes=7)
    return image


def assert_records_identical(ours: list[dict[str, Any]], theirs: list[dict[str, Any]],
                             score_tolerance: float = 0.0) -> None:
    """Same records in the same order: masks, boxes, points and crops equal, scores within the tolerance."""
    assert len(ours) == len(theirs)
    for mine, expected in zip(ours, theirs):
        assert mine.keys() == expected.keys()
        for key, value in expected.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(mine[key], value)
            elif isinstance(value, float):
                assert mine[key] == pytest.approx(value, abs=score_tolerance), key
            else:
                assert mine[key] == value, key


def mask_iou_matrix(first: list[np.ndarray], second: list[np.ndarray]) -> np.ndarray:
    a = np.stack(first).reshape(len(first), -1).astype(np.float64)
    b = np.stack(second).reshape(len(second), -1).astype(np.float64)
    intersection = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - intersection
    return intersection / np.maximum(union, 1)


@pytest.fixture(scope="module")
def reference_records(reference_sam: torch.nn.Module, shapes_image: np.ndarray) -> list[dict[str, Any]]:
    return ReferenceGenerator(reference_sam, **CROPS_AND_CLEANUP).generate(shapes_image)


def test_sam_core_model_gives_the_reference_mask_set(our_sam: sam_core.Sam, shapes_image: np.ndarray,
                                                    reference_records: list[dict[str, Any]]) -> None:
    """sam_core end to end vs segment_anything end to end, crops on and small regions cleaned up.

    Tolerances: the models agree to float32 rounding, so each mask must match one reference mask
    one-to-one with IoU >= 0.99, the same prompt and crop, and scores within 1e-4.
    """
    ours = AutomaticMaskGenerator(our_sam, **CROPS_AND_CLEANUP).generate(shapes_image)
    # The test is only meaningful with many distinct masks, from the crops as well as the whole image.
    assert len(reference_records) >= 8
    assert len({tuple(r["crop_box"]) for r in reference_records}) >= 3
    assert len(ours) == len(reference_records)
    ious = mask_iou_matrix([r["segmentation"] for r in ours], [r["segmentation"] for r in reference_records])
    match = ious.argmax(axis=1)
    assert sorted(match.tolist()) == list(range(len(ours))), "not a one-to-one matching"
    assert ious[np.arange(len(ours)), match].min() >= 0.99
    for mine, index in zip(ours, match):
        expected = reference_records[index]
        assert mine["point_coords"] == expected["point_coords"]
        assert mine["crop_box"] == expected["crop_box"]
        assert mine["predicted_iou"] == pytest.approx(expected["predicted_iou"], abs=1e-4)
        assert mine["stability_score"] == pytest.approx(expected["stability_score"], abs=1e-3)


def test_cleanup_changes_the_result(our_sam: sam_core.Sam, shapes_image: np.ndarray,
                                    reference_records: list[dict[str, Any]]) -> None:
    """min_mask_region_area really removes regions here, so the parity test above covers that code."""
    options = {**CROPS_AND_CLEANUP, "min_mask_region_area": 0}
    without = AutomaticMaskGenerator(our_sam, **options).generate(shapes_image)
    areas_with = sorted(r["area"] for r in reference_records)
    assert sorted(r["area"] for r in without) != areas_with


def test_records_equal_the_reference_records(our_sam: sam_core.Sam, shapes_image: np.ndarray,
                                              reference_records: list[dict[str, Any]]) -> None:
    """The reordered pipeline returns the reference's records in its order: every mask pixel, box, point and
    crop equal; scores within 1e-5 (the two models agree to float32 rounding)."""
    ours = AutomaticMaskGenerator(our_sam, **CROPS_AND_CLEANUP).generate(shapes_image)
    assert_records_identical(ours, reference_records, score_tolerance=1e-5)


@pytest.mark.parametrize("output_mode", ["binary_mask", "uncompressed_rle", "coco_rle"])
def test_output_modes_match_reference(output_mode: str, reference_sam: torch.nn.Module, our_sam: sam_core.Sam,
                                      shapes_image: np.ndarray) -> None:
    options = dict(points_per_side=6, output_mode=output_mode, **THRESHOLDS)
    ours = AutomaticMaskGenerator(our_sam, **options).generate(shapes_image)
    theirs = ReferenceGenerator(reference_sam, **options).generate(shapes_image)
    assert len(ours) >= 3
    assert_records_identical(ours, theirs, score_tolerance=1e-5)
    height, width = shapes_image.shape[:2]
    for record in ours:
        segmentation = record["segmentation"]
        if output_mode == "binary_mask":
            mask = segmentation
        elif output_mode == "coco_rle":
            mask = mask_utils.decode(segmentation).astype(bool)
            assert isinstance(segmentation["counts"], str)
        else:
            mask = mask_utils.decode(mask_utils.frPyObjects(segmentation, height, width)).astype(bool)
        assert mask.shape == (height, width) and mask.dtype == bool
        assert mask.sum() == record["area"]


def test_explicit_point_grids_match_reference(reference_sam: torch.nn.Module, our_sam: sam_core.Sam,
                                              shapes_image: np.ndarray) -> None:
    grids = [build_point_grid(5)[::2], np.random.default_rng(3).random((20, 2))]
    options = dict(points_per_side=None, point_grids=grids, crop_n_layers=1, crop_overlap_ratio=0.2, **THRESHOLDS)
    ours = AutomaticMaskGenerator(our_sam, **options).generate(shapes_image)
    theirs = ReferenceGenerator(reference_sam, **options).generate(shapes_image)
    assert_records_identical(ours, theirs, score_tolerance=1e-5)


def test_gray_image_is_converted(our_sam: sam_core.Sam, shapes_image: np.ndarray) -> None:
    gray = shapes_image[:, :, 1]
    generator = AutomaticMaskGenerator(our_sam, points_per_side=4, **THRESHOLDS)
    records = generator.generate(gray)
    assert records
    assert_records_identical(records, generator.generate(np.repeat(gray[:, :, None], 3, axis=2)))


def test_images_a_few_pixels_across(our_sam: sam_core.Sam) -> None:
    """Crops of such images can be empty (the reference fails on them); they are skipped."""
    generator = AutomaticMaskGenerator(our_sam, points_per_side=4, crop_n_layers=1, min_mask_region_area=10,
                                       pred_iou_thresh=0.0, stability_score_thresh=0.0)
    for shape in [(1, 1, 3), (1, 40, 3), (3, 2, 3)]:
        records = generator.generate(np.full(shape, 100, np.uint8))
        assert records
        assert all(record["segmentation"].shape == shape[:2] for record in records)


def test_bad_images_raise(our_sam: sam_core.Sam) -> None:
    generator = AutomaticMaskGenerator(our_sam, points_per_side=2)
    for image in (np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), np.full((4, 4, 3), 2.0)):
        with pytest.raises(ValueError):
            generator.generate(image)


@pytest.mark.parametrize(("options", "message"), [
    ({"points_per_side": None}, "exactly one"),
    ({"points_per_side": 8, "point_grids": [build_point_grid(2)]}, "exactly one"),
    ({"output_mode": "png"}, "output_mode"),
    ({"points_per_side": None, "point_grids": [build_point_grid(2)], "crop_n_layers": 1}, "crop_n_layers=1 needs 2"),
    ({"points_per_side": None, "point_grids": [np.zeros((3, 3))]}, r"\(N, 2\)"),
    ({"points_per_side": 2, "crop_n_layers": 2, "crop_n_points_downscale_factor": 2}, "no points"),
    ({"points_per_batch": 0}, "points_per_batch"),
    ({"min_mask_region_area": -1}, "min_mask_region_area"),
])
def test_bad_options_raise(our_sam: sam_core.Sam, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AutomaticMaskGenerator(our_sam, **options)


def test_from_pretrained_and_alias(tmp_path: Path, shapes_state_dict: dict[str, torch.Tensor],
                                   our_sam: sam_core.Sam, shapes_image: np.ndarray) -> None:
    checkpoint = tmp_path / "sam_vit_tiny_shapes.pth"
    torch.save(shapes_state_dict, checkpoint)
    options = dict(points_per_side=4, **THRESHOLDS)
    loaded = AutomaticMaskGenerator.from_pretrained(str(checkpoint), device="cpu", **options)
    assert loaded.pred_iou_thresh == THRESHOLDS["pred_iou_thresh"]
    records = loaded.generate(shapes_image)
    assert records
    assert_records_identical(records, AutomaticMaskGenerator(our_sam, **options).generate(shapes_image))
    assert sam_core.SamAutomaticMaskGenerator is AutomaticMaskGenerator


# ------------------------------------------------------------------ post-processing without full-size masks

ALL_MASKS = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}  # every mask reaches post-processing


def plain_post_processing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the generator's post-processing takes its plain path (upscale every mask with torch); the
    model keeps its fast paths, so that both runs see the same logits."""
    monkeypatch.setattr(mask_generator, "fast_paths_enabled", lambda: False)


@pytest.fixture(scope="module")
def large_shapes_image(shapes_image: np.ndarray) -> np.ndarray:
    """The test image at 4x the size: cells of the upscaling span about 12 x 12 pixels instead of 3 x 3."""
    return cv2.resize(shapes_image, (shapes_image.shape[1] * 4, shapes_image.shape[0] * 4),
                      interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize(("options", "large"), [
    (dict(points_per_side=8, crop_n_layers=1, **ALL_MASKS), False),
    (dict(points_per_side=8, crop_n_layers=1, **ALL_MASKS), True),
    (dict(points_per_side=6, output_mode="uncompressed_rle", **THRESHOLDS), True),
    (dict(points_per_side=8, crop_n_layers=1, min_mask_region_area=60, stability_score_offset=0.5,
          **ALL_MASKS), False),
], ids=["all-masks-crops", "all-masks-crops-large", "thresholds-large", "cleanup-offset"])
def test_fast_post_processing_equals_the_plain_one(our_sam: sam_core.Sam, shapes_image: np.ndarray,
                                                   large_shapes_image: np.ndarray, options: dict[str, Any],
                                                   large: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    image = large_shapes_image if large else shapes_image
    fast = AutomaticMaskGenerator(our_sam, **options).generate(image)
    plain_post_processing(monkeypatch)
    plain = AutomaticMaskGenerator(our_sam, **options).generate(image)
    assert len(fast) >= 5
    assert_records_equal(fast, plain)


def test_every_mask_kept_gives_the_reference_records(reference_sam: torch.nn.Module, our_sam: sam_core.Sam,
                                                     shapes_image: np.ndarray) -> None:
    """With the quality filters off, every mask is post-processed; NMS still leaves many distinct ones."""
    options = dict(points_per_side=8, crop_n_layers=1, **ALL_MASKS)
    ours = AutomaticMaskGenerator(our_sam, **options).generate(shapes_image)
    theirs = ReferenceGenerator(reference_sam, **options).generate(shapes_image)
    assert len(theirs) >= 20
    assert_records_equal(ours, theirs, score_tolerance=1e-5)


def test_unresolved_masks_and_small_chunks_give_the_same_records(our_sam: sam_core.Sam,
                                                                 large_shapes_image: np.ndarray,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Masks whose cell bounds are too loose to decide go the plain way; memory-bounding chunks (one mask
    at a time here) change nothing."""
    options = dict(points_per_side=6, crop_n_layers=1, **ALL_MASKS)
    expected = AutomaticMaskGenerator(our_sam, **options).generate(large_shapes_image)
    monkeypatch.setattr(upscaled_masks, "RELATIVE_ERROR", 0.05)
    monkeypatch.setattr(mask_generator, "_CELLS_PER_CHUNK", 1)
    monkeypatch.setattr(mask_generator, "_UPSCALE_CHUNK_BYTES", 1)
    assert_records_equal(AutomaticMaskGenerator(our_sam, **options).generate(large_shapes_image), expected)


def test_masks_crossed_in_most_cells_are_upscaled_with_the_same_records(our_sam: sam_core.Sam,
                                                                        large_shapes_image: np.ndarray,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Masks whose cells the thresholds mostly cross go the plain way: with the cut at the median crossed
    fraction (half the masks each way) and below every mask (all plain), the records are unchanged."""
    options = dict(points_per_side=6, crop_n_layers=1, stability_score_thresh=0.5, pred_iou_thresh=0.0)
    fractions, plain_masks = [], []
    crossed_fraction = upscaled_masks.UpscaledThresholds.crossed_fraction
    upscaled_scores = AutomaticMaskGenerator._upscaled_scores

    def recording_fraction(self, bounds, thresholds):
        fractions.append(result := crossed_fraction(self, bounds, thresholds))
        return result

    def counting_scores(self, low_res, *args):
        plain_masks.append(len(low_res))
        return upscaled_scores(self, low_res, *args)

    monkeypatch.setattr(upscaled_masks.UpscaledThresholds, "crossed_fraction", recording_fraction)
    monkeypatch.setattr(AutomaticMaskGenerator, "_upscaled_scores", counting_scores)
    default = AutomaticMaskGenerator(our_sam, **options).generate(large_shapes_image)
    measured = torch.cat(fractions)
    monkeypatch.setattr(mask_generator, "_MAX_CROSSED_FRACTION", float(measured.median()))
    plain_masks.clear()
    half = AutomaticMaskGenerator(our_sam, **options).generate(large_shapes_image)
    assert 0 < sum(plain_masks) < len(measured)
    monkeypatch.setattr(mask_generator, "_MAX_CROSSED_FRACTION", -1.0)
    plain_masks.clear()
    every = AutomaticMaskGenerator(our_sam, **options).generate(large_shapes_image)
    assert sum(plain_masks) == len(measured)
    plain_post_processing(monkeypatch)
    expected = AutomaticMaskGenerator(our_sam, **options).generate(large_shapes_image)
    assert len(expected) >= 5
    for records in (default, half, every):
        assert_records_equal(records, expected)


def test_batches_that_keep_nothing_between_batches_that_keep_masks(reference_sam: torch.nn.Module,
                                                                     our_sam: sam_core.Sam, shapes_image: np.ndarray,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Proposals of a batch whose masks were all filtered out join those of the other batches."""
    options = dict(points_per_side=6, points_per_batch=2, **THRESHOLDS)
    kept_per_batch = []
    process_batch = AutomaticMaskGenerator._process_batch

    def counting(self: AutomaticMaskGenerator, *args: Any) -> Any:
        proposals = process_batch(self, *args)
        kept_per_batch.append(len(proposals))
        return proposals

    monkeypatch.setattr(AutomaticMaskGenerator, "_process_batch", counting)
    ours = AutomaticMaskGenerator(our_sam, **options).generate(shapes_image)
    assert 0 in kept_per_batch and max(kept_per_batch) > 0
    assert_records_identical(ours, ReferenceGenerator(reference_sam, **options).generate(shapes_image),
                             score_tolerance=1e-5)
