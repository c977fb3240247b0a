"""Prompts and ground truth of the training recipe land where they should, on non-square images, in the
frames of both families' transforms (SAM: resize the long side and pad; SAM 2: stretch to the square)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam_core.finetune.config import FinetuneConfig
from sam_core.finetune.prompt_sampler import mask_box, sample_correction_points, sample_first_prompts
from sam_core.finetune.recipe import MASK_ONLY, pass_schedule
from sam_core.transforms import ResizeLongestSide, StretchToSquare

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRANSFORMS = {"resize_longest_side": ResizeLongestSide(256), "stretch_to_square": StretchToSquare(256)}


def to_original(coords: np.ndarray, transform, original_size: tuple[int, int]) -> np.ndarray:
    """Inverse of the transform's coordinate map (both are per-axis scalings)."""
    unit = transform.apply_coords(np.array([[1.0, 1.0]]), original_size)[0]
    return coords / unit


def ring_masks(height: int, width: int) -> list[np.ndarray]:
    """Three non-convex objects (a ring, an L, a thin bar) in a non-square image."""
    ys, xs = np.mgrid[:height, :width]
    radius = np.hypot(ys - height * 0.3, xs - width * 0.3)
    ring = (radius > 15) & (radius < 25)
    ell = ((xs > width * 0.6) & (xs < width * 0.65) & (ys > 10)) | ((ys > height * 0.8) & (xs > width * 0.6))
    bar = (ys > height * 0.5) & (ys < height * 0.5 + 3) & (xs > 5) & (xs < width * 0.4)
    return [ring, ell, bar]


@pytest.mark.parametrize("size", [(120, 200), (200, 90)])
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_first_points_lie_in_their_masks(name: str, size: tuple[int, int]) -> None:
    transform = TRANSFORMS[name]
    masks = ring_masks(*size)
    rng = np.random.default_rng(0)
    for _ in range(50):
        first = sample_first_prompts(masks, rng, transform, box_probability=0.0)
        assert first.point_objects.tolist() == [0, 1, 2] and len(first.box_objects) == 0
        x, y = np.round(to_original(first.points.astype(np.float64), transform, size)).astype(int).T
        assert all(mask[row, col] for mask, row, col in zip(masks, y, x))


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_boxes_are_the_tight_box_plus_capped_noise(name: str) -> None:
    transform = TRANSFORMS[name]
    size = (120, 200)
    masks = ring_masks(*size)
    exact = sample_first_prompts(masks, np.random.default_rng(0), transform, box_probability=1.0, box_noise=0.0)
    assert exact.box_objects.tolist() == [0, 1, 2]
    expected = np.stack([transform.apply_boxes(mask_box(mask), size)[0] for mask in masks])
    np.testing.assert_allclose(exact.boxes, expected, atol=1e-4)
    # The ring's tight box, by hand: rows and columns where its annulus reaches.
    ring_rows = np.flatnonzero(masks[0].any(axis=1))
    ring_cols = np.flatnonzero(masks[0].any(axis=0))
    assert mask_box(masks[0]).tolist() == [ring_cols[0], ring_rows[0], ring_cols[-1], ring_rows[-1]]

    width, height = (256, 256) if name == "stretch_to_square" else (256, round(120 * 256 / 200))
    rng = np.random.default_rng(1)
    offsets = []
    for _ in range(200):
        noisy = sample_first_prompts(masks, rng, transform, box_probability=1.0, box_noise=0.1, box_noise_cap=3.0)
        assert (noisy.boxes[:, 0] <= noisy.boxes[:, 2]).all() and (noisy.boxes[:, 1] <= noisy.boxes[:, 3]).all()
        assert (noisy.boxes >= 0).all() and (noisy.boxes[:, [0, 2]] <= width - 1).all()
        assert (noisy.boxes[:, [1, 3]] <= height - 1).all()
        offsets.append(noisy.boxes - expected)
    offsets = np.abs(np.concatenate(offsets))
    assert offsets.max() <= 3.0 + 1e-4  # the cap
    assert offsets.mean() > 0.5  # and there is noise


def test_box_probability_splits_the_objects() -> None:
    masks = ring_masks(120, 200) * 100
    first = sample_first_prompts(masks, np.random.default_rng(2), TRANSFORMS["resize_longest_side"])
    assert sorted(first.point_objects.tolist() + first.box_objects.tolist()) == list(range(300))
    assert 120 < len(first.box_objects) < 180


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_correction_points_come_from_the_error_region_with_its_label(name: str) -> None:
    transform = TRANSFORMS[name]
    size = (120, 200)  # non-square: SAM's frame has padding below the image
    side = 64
    target = np.zeros(size, dtype=bool)
    target[20:80, 30:120] = True
    predicted = np.zeros(size, dtype=bool)
    predicted[20:80, 60:170] = True  # misses columns 30-59 (false negative), spills over 120-169 (false positive)
    targets, valid = transform.masks_to_low_res(torch.as_tensor(np.stack([target, target])), side)
    low_res_predicted, _ = transform.masks_to_low_res(torch.as_tensor(predicted)[None], side)
    logits = torch.where(low_res_predicted, 5.0, -5.0).expand(2, -1, -1).clone()
    logits[1] = torch.where(targets[1], 5.0, -5.0)  # the second prediction is exact: no error left
    false_negative = targets[0] & ~low_res_predicted[0] & valid
    false_positive = low_res_predicted[0] & ~targets[0] & valid
    rng = np.random.default_rng(3)
    labels_seen = []
    for _ in range(200):
        coords, labels = sample_correction_points(logits, targets, valid, rng, transform.target_length)
        col, row = ((coords[0] + 0.5) / (transform.target_length / side)).floor().long().tolist()
        label = int(labels[0])
        assert (false_negative if label == 1 else false_positive)[row, col], (label, row, col)
        assert labels[1] == -1 and coords[1].tolist() == [0.0, 0.0]
        labels_seen.append(label)
    # Uniform over the error region: each kind in proportion to its area.
    share = false_negative.sum().item() / (false_negative.sum() + false_positive.sum()).item()
    assert np.mean(labels_seen) == pytest.approx(share, abs=0.1)


def test_correction_points_never_fall_on_padding() -> None:
    transform = TRANSFORMS["resize_longest_side"]
    target = np.ones((60, 200), dtype=bool)  # the whole image; the padding below is "background"
    targets, valid = transform.masks_to_low_res(torch.as_tensor(target)[None], 64)
    logits = torch.full((1, 64, 64), 5.0)  # predicts the padding too: only the image counts as error-free
    coords, labels = sample_correction_points(logits, targets, valid, np.random.default_rng(0), 256)
    assert labels.tolist() == [-1]


def test_ground_truth_is_resized_and_padded_like_the_image() -> None:
    # A 128x64 image: SAM scales it by 2 to 256x128 and pads the right half; at 64x64 low-res, the left half
    # of the image (columns 0-31) covers low-res columns 0-15, and columns 32-63 are padding.
    mask = np.zeros((128, 64), dtype=bool)
    mask[:, :32] = True
    targets, valid = TRANSFORMS["resize_longest_side"].masks_to_low_res(torch.as_tensor(mask)[None], 64)
    expected = torch.zeros((64, 64), dtype=torch.bool)
    expected[:, :16] = True
    assert torch.equal(targets[0], expected)
    assert torch.equal(valid, torch.arange(64).expand(64, -1) < 32)
    # SAM 2 stretches the same image to the square: the left half of the image is the left half of the frame.
    targets, valid = TRANSFORMS["stretch_to_square"].masks_to_low_res(torch.as_tensor(mask)[None], 64)
    expected[:, 16:32] = True
    assert torch.equal(targets[0], expected) and bool(valid.all())


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_ground_truth_follows_the_image_through_the_model_input(name: str) -> None:
    """A mask drawn into an image as white pixels and pushed through the family's image path (transform,
    then the padding or stretch of its preprocessing) agrees with masks_to_low_res."""
    transform = TRANSFORMS[name]
    mask = np.zeros((150, 230), dtype=bool)
    mask[30:110, 40:200] = True
    mask[60:90, 80:120] = False
    image = np.repeat(mask[:, :, None].astype(np.uint8) * 255, 3, axis=2)
    resized = torch.as_tensor(transform.apply_image(image)).permute(2, 0, 1)[None].float() / 255
    if name == "stretch_to_square":
        square = transform.resize_torch(resized)
    else:
        square = torch.nn.functional.pad(resized, (0, 256 - resized.shape[-1], 0, 256 - resized.shape[-2]))
    from_image = torch.nn.functional.adaptive_avg_pool2d(square[:, :1], 64)[0, 0] >= 0.5
    targets, _ = transform.masks_to_low_res(torch.as_tensor(mask)[None], 64)
    assert (targets[0] != from_image).float().mean() < 0.01


def test_pass_schedule_ends_with_a_mask_only_pass() -> None:
    config = FinetuneConfig(correction_points=8, mask_only_iterations=2)
    rng = np.random.default_rng(0)
    schedules = [pass_schedule(config, rng) for _ in range(50)]
    assert all(len(s) == 10 and s.count(MASK_ONLY) == 2 and s[-1] == MASK_ONLY for s in schedules)
    assert len({tuple(s) for s in schedules}) > 3  # the other mask-only pass moves around
    assert pass_schedule(FinetuneConfig(correction_points=2, mask_only_iterations=0), rng) == ["point", "point"]
