"""sam_core.pipelines.masks against Meta's segment_anything.utils.amg and pycocotools, on random masks and boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from segment_anything.utils import amg as reference

from sam_core.layers import mask_stability
from sam_core.pipelines import masks

# pycocotools' decode trips a numpy 2 deprecation warning inside the library itself.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def random_blob_masks(count: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Masks with blobs and holes, many touching the edges; with 3 or more, the first is empty and the second full."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((count, 1, height // 4 + 1, width // 4 + 1), generator=generator)
    smooth = torch.nn.functional.interpolate(noise, size=(height, width), mode="bilinear", align_corners=False)
    thresholds = torch.linspace(0.2, 0.8, count).view(-1, 1, 1)
    result = smooth[:, 0] > thresholds
    if count >= 3:
        result[0] = False
        result[1] = True
    return result


@pytest.mark.parametrize("n_per_side", [1, 5, 32])
def test_point_grid_matches_reference(n_per_side: int) -> None:
    np.testing.assert_array_equal(masks.build_point_grid(n_per_side), reference.build_point_grid(n_per_side))


@pytest.mark.parametrize(("n_per_side", "n_layers", "scale"), [(32, 0, 1), (16, 2, 2), (12, 2, 3)])
def test_all_layer_point_grids_match_reference(n_per_side: int, n_layers: int, scale: int) -> None:
    ours = masks.build_all_layer_point_grids(n_per_side, n_layers, scale)
    theirs = reference.build_all_layer_point_grids(n_per_side, n_layers, scale)
    assert len(ours) == len(theirs)
    for grid, expected in zip(ours, theirs):
        np.testing.assert_array_equal(grid, expected)


@pytest.mark.parametrize("im_size", [(1200, 1800), (256, 256), (333, 97)])
@pytest.mark.parametrize("n_layers", [0, 1, 2])
@pytest.mark.parametrize("overlap", [512 / 1500, 0.0, 0.5])
def test_crop_boxes_match_reference(im_size: tuple[int, int], n_layers: int, overlap: float) -> None:
    assert masks.generate_crop_boxes(im_size, n_layers, overlap) == reference.generate_crop_boxes(
        im_size, n_layers, overlap)


@pytest.mark.parametrize("shape", [(3, 1, 1), (2, 4, 17, 15), (2, 300, 300)])
def test_count_true_counts_pixels(shape: tuple[int, ...]) -> None:
    pixels = torch.rand(shape, generator=torch.Generator().manual_seed(9)) > 0.3
    pixels[0] = True  # full blocks of 255 ones must not overflow the uint8 block sums
    counted = mask_stability.count_true(pixels)
    assert counted.dtype == torch.int32
    assert counted.tolist() == pixels.flatten(-2).sum(-1).tolist()


def test_stability_score_matches_reference() -> None:
    logits = torch.randn((6, 37, 53), generator=torch.Generator().manual_seed(1)) * 3
    for threshold, offset in [(0.0, 1.0), (0.5, 0.25), (0.0, 10.0)]:
        ours = mask_stability.calculate_stability_score(logits, threshold, offset)
        theirs = reference.calculate_stability_score(logits, threshold, offset)
        assert ours.dtype == theirs.dtype
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("shape", [(9, 31, 47), (2, 3, 20, 11), (13, 17)])
def test_mask_to_box_matches_reference(shape: tuple[int, ...]) -> None:
    blobs = random_blob_masks(int(np.prod(shape[:-2])) or 1, shape[-2], shape[-1], seed=2)
    blobs = blobs.reshape(shape)
    ours = masks.batched_mask_to_box(blobs)
    theirs = reference.batched_mask_to_box(blobs)
    assert ours.dtype == torch.int64
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_box_and_point_uncropping_match_reference() -> None:
    boxes = torch.randint(0, 200, (7, 4))
    points = torch.rand((7, 2), dtype=torch.float64) * 100
    crop = [13, 29, 300, 400]
    torch.testing.assert_close(masks.uncrop_boxes_xyxy(boxes, crop), reference.uncrop_boxes_xyxy(boxes, crop))
    torch.testing.assert_close(masks.uncrop_points(points, crop), reference.uncrop_points(points, crop))
    np.testing.assert_array_equal(masks.uncrop_points(points.numpy(), crop),
                                  reference.uncrop_points(points, crop).numpy())
    torch.testing.assert_close(masks.box_xyxy_to_xywh(boxes[0]), reference.box_xyxy_to_xywh(boxes[0]))


def test_uncrop_masks_matches_reference() -> None:
    blobs = random_blob_masks(4, 30, 40, seed=3)
    for crop in ([0, 0, 40, 30], [10, 5, 50, 35], [0, 20, 40, 50]):
        torch.testing.assert_close(masks.uncrop_masks(blobs, crop, 60, 70),
                                   reference.uncrop_masks(blobs, crop, 60, 70))


def test_box_near_crop_edge_matches_reference() -> None:
    boxes = torch.randint(0, 400, (200, 4))
    boxes[:, 2:] = boxes[:, :2] + torch.randint(0, 300, (200, 2))
    for crop, image in [([0, 0, 500, 400], [0, 0, 500, 400]), ([100, 0, 600, 400], [0, 0, 800, 400]),
                        ([150, 120, 420, 390], [0, 0, 800, 600])]:
        ours = masks.is_box_near_crop_edge(boxes, crop, image)
        theirs = reference.is_box_near_crop_edge(boxes, crop, image)
        # A crop that is the whole image has no inner edges; others cut some boxes but not all.
        assert (ours.any() and not ours.all()) if crop != image else not ours.any()
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("size", [(1, 1), (23, 41), (64, 5)])
def test_rle_matches_reference_and_round_trips(size: tuple[int, int]) -> None:
    blobs = random_blob_masks(8, *size, seed=4)
    ours = masks.mask_to_rle_pytorch(blobs)
    assert ours == reference.mask_to_rle_pytorch(blobs)
    for rle, mask in zip(ours, blobs.numpy()):
        decoded = masks.rle_to_mask(rle)
        np.testing.assert_array_equal(decoded, mask)
        np.testing.assert_array_equal(decoded, reference.rle_to_mask(rle))
        assert masks.area_from_rle(rle) == reference.area_from_rle(rle) == int(mask.sum())


@pytest.mark.parametrize("crop", [[0, 0, 40, 30], [7, 0, 47, 30], [0, 9, 40, 39], [5, 6, 45, 36],
                                  [30, 50, 70, 80], [10, 0, 50, 80], [0, 0, 70, 80]])
def test_crop_rle_equals_rle_of_padded_masks(crop: list[int]) -> None:
    """RLEs of crop masks placed into the image equal those of the explicitly padded masks."""
    image_h, image_w = 80, 70
    blobs = random_blob_masks(6, crop[3] - crop[1], crop[2] - crop[0], seed=5)
    blobs[2, 0, :] = True  # runs across column boundaries, at the crop's top and bottom rows
    blobs[2, -1, :] = True
    blobs[3], blobs[4] = True, False  # one run the size of the crop; none
    padded = reference.uncrop_masks(blobs, crop, image_h, image_w)
    assert masks.mask_to_rle_pytorch(blobs, crop, (image_h, image_w)) == reference.mask_to_rle_pytorch(padded)


def test_rle_round_trips_through_pycocotools() -> None:
    blobs = random_blob_masks(6, 45, 38, seed=6)
    for rle, mask in zip(masks.mask_to_rle_pytorch(blobs), blobs.numpy()):
        coco = masks.coco_encode_rle(rle)
        assert coco == reference.coco_encode_rle(rle)
        # pycocotools' own encoding of the mask is the same compressed string.
        expected = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert coco["counts"] == expected["counts"].decode("utf-8")
        assert coco["size"] == [45, 38]
        np.testing.assert_array_equal(mask_utils.decode(coco).astype(bool), mask)
        assert mask_utils.area(coco) == masks.area_from_rle(rle)


@pytest.mark.parametrize("mode", ["holes", "islands"])
@pytest.mark.parametrize("area", [0, 5, 40, 400, 10_000])
def test_remove_small_regions_matches_reference(mode: str, area: int) -> None:
    blobs = random_blob_masks(10, 60, 50, seed=7).numpy()
    changed_any = False
    for mask in blobs:
        ours, ours_changed = masks.remove_small_regions(mask, area, mode)
        theirs, theirs_changed = reference.remove_small_regions(mask, area, mode)
        assert ours_changed == theirs_changed
        np.testing.assert_array_equal(ours, theirs)
        changed_any |= ours_changed
    assert changed_any == (area > 0)


def test_remove_small_regions_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="holes"):
        masks.remove_small_regions(np.zeros((4, 4), dtype=bool), 3, "blobs")


def test_box_nms_matches_reference_batched_nms() -> None:
    from torchvision.ops.boxes import batched_nms

    generator = torch.Generator().manual_seed(8)
    for count in (0, 50, 1500):  # batched_nms changes algorithm above 1000 boxes
        corners = torch.randint(0, 300, (count, 2), generator=generator)
        boxes = torch.cat([corners, corners + torch.randint(1, 80, (count, 2), generator=generator)], dim=1)
        scores = torch.randint(0, 5, (count,), generator=generator).float()  # many ties
        expected = batched_nms(boxes.float(), scores, torch.zeros(count), iou_threshold=0.5)
        torch.testing.assert_close(masks.box_nms(boxes, scores, 0.5), expected)
