"""ResizeLongestSide against segment_anything's, and the image conversions of to_rgb_uint8."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from segment_anything.utils.transforms import ResizeLongestSide as ReferenceResize

from sam_core import ResizeLongestSide
from sam_core.transforms import to_rgb_uint8

# Landscape, portrait, square, smaller than the target (enlarged) and much larger (shrunk).
SHAPES = [(300, 500), (500, 300), (256, 256), (120, 90), (1030, 1500), (1, 7)]


def random_image(height: int, width: int, channels: int | None = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels is None else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("target", [256, 1024])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_apply_image_is_pixel_identical_to_reference(shape, target):
    image = random_image(*shape)
    ours, theirs = ResizeLongestSide(target).apply_image(image), ReferenceResize(target).apply_image(image)
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, theirs)


def test_apply_image_gray_matches_reference():
    image = random_image(300, 500, channels=None)
    np.testing.assert_array_equal(ResizeLongestSide(256).apply_image(image), ReferenceResize(256).apply_image(image))


def test_preprocess_shape_matches_reference():
    """The reference's sizes, except that a side it rounds to 0 pixels (and then fails on) gets one."""
    for height in range(1, 2100, 37):
        for width in range(1, 2100, 53):
            for target in (256, 1024):
                expected = ReferenceResize.get_preprocess_shape(height, width, target)
                assert ResizeLongestSide.get_preprocess_shape(height, width, target) == tuple(max(1, side)
                                                                                             for side in expected)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_coords_and_boxes_match_reference_numpy_and_torch(shape):
    rng = np.random.default_rng(1)
    coords = rng.uniform(0, max(shape), (3, 5, 2))
    boxes = np.sort(rng.uniform(0, max(shape), (4, 2, 2)), axis=1).reshape(4, 4)
    ours, theirs = ResizeLongestSide(1024), ReferenceResize(1024)

    np.testing.assert_allclose(ours.apply_coords(coords, shape), theirs.apply_coords(coords, shape), rtol=1e-12)
    np.testing.assert_allclose(ours.apply_boxes(boxes, shape), theirs.apply_boxes(boxes, shape), rtol=1e-12)
    # Integer input must not be truncated back to integers.
    np.testing.assert_allclose(ours.apply_coords(coords.astype(int), shape),
                               theirs.apply_coords(coords.astype(int), shape), rtol=1e-12)

    torch_coords, torch_boxes = torch.as_tensor(coords), torch.as_tensor(boxes)
    for got, want in ((ours.apply_coords_torch(torch_coords, shape), theirs.apply_coords_torch(torch_coords, shape)),
                      (ours.apply_boxes_torch(torch_boxes, shape), theirs.apply_boxes_torch(torch_boxes, shape))):
        assert got.dtype == want.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_apply_coords_leaves_its_input_untouched():
    coords = np.array([[10.0, 20.0]])
    tensor = torch.tensor([[10.0, 20.0]])
    ResizeLongestSide(1024).apply_coords(coords, (100, 200))
    ResizeLongestSide(1024).apply_coords(tensor, (100, 200))
    assert coords.tolist() == [[10.0, 20.0]] and tensor.tolist() == [[10.0, 20.0]]


@pytest.mark.parametrize("shape", [(300, 500), (500, 300), (120, 90)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_apply_image_torch_agrees_with_reference_numpy_path(shape):
    # The reference's own apply_image_torch sizes its output from the batch and channel dimensions (a bug),
    # so the comparison is with the reference's numpy path, which the model was trained with.
    image = cv2.GaussianBlur(random_image(*shape), (0, 0), 3)
    expected = ReferenceResize(256).apply_image(image).astype(np.float32)
    batch = torch.as_tensor(image).permute(2, 0, 1)[None].float()
    resized = ResizeLongestSide(256).apply_image_torch(batch)[0].permute(1, 2, 0).numpy()
    assert resized.shape == expected.shape
    # Both are antialiased bilinear filters; they differ only by Pillow's rounding to uint8.
    assert np.abs(resized - expected).max() <= 1.0


# ---------------------------------------------------------------- to_rgb_uint8


def test_rgb_uint8_passes_through_without_copy():
    image = random_image(5, 6)
    assert np.shares_memory(to_rgb_uint8(image), image)


def test_gray_rgba_bgr_match_opencv_conversions():
    rgb = random_image(20, 30)
    gray = rgb[:, :, 0]
    rgba = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(to_rgb_uint8(gray), cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB))
    np.testing.assert_array_equal(to_rgb_uint8(gray[:, :, None]), cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB))
    np.testing.assert_array_equal(to_rgb_uint8(rgba), rgb)
    np.testing.assert_array_equal(to_rgb_uint8(bgr, "BGR"), rgb)
    np.testing.assert_array_equal(to_rgb_uint8(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA), "BGR"), rgb)


def test_uint16_and_float_are_scaled_to_uint8():
    rgb = random_image(20, 30)
    np.testing.assert_array_equal(to_rgb_uint8(rgb.astype(np.uint16) * 257), rgb)
    np.testing.assert_array_equal(to_rgb_uint8(rgb.astype(np.float64) / 255.0), rgb)
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[[0.0, 0.5, 1.0]]], np.float32)), [[[0, 128, 255]]])


@pytest.mark.parametrize("image, image_format, message", [
    (np.zeros((0, 4, 3), np.uint8), "RGB", "empty"),
    (np.zeros((4,), np.uint8), "RGB", r"shape \(4,\)"),
    (np.zeros((2, 4, 4, 3), np.uint8), "RGB", r"shape \(2, 4, 4, 3\)"),
    (np.zeros((4, 4, 5), np.uint8), "RGB", r"shape \(4, 4, 5\)"),
    (np.zeros((4, 4, 3), np.int64), "RGB", "int64"),
    (np.zeros((4, 4, 3), bool), "RGB", "bool"),
    (np.full((4, 4, 3), 255.0), "RGB", r"\[0, 1\]"),
    (np.full((4, 4, 3), -0.5), "RGB", r"\[0, 1\]"),
    (np.full((4, 4, 3), np.nan, np.float32), "RGB", "finite"),
    (np.zeros((4, 4, 3), np.uint8), "HSV", "image_format"),
    ([[1, 2, 3]], "RGB", "numpy"),
], ids=["empty", "rank1", "rank4", "five_channels", "int64", "bool", "float_0_255", "float_negative", "nan",
        "format", "list"])
def test_ambiguous_images_raise_value_error(image, image_format, message):
    with pytest.raises(ValueError, match=message):
        to_rgb_uint8(image, image_format)


@pytest.mark.parametrize("original_size", [(300, 450), (450, 300), (90, 120), (256, 256)])
def test_opencv_logit_upscaling_matches_the_reference_postprocessing(tiny_reference, original_size):
    """upscale_mask_logits (OpenCV) against the reference Sam's postprocess_masks, on smooth logits."""
    from sam_core.transforms import upscale_mask_logits

    image_size = tiny_reference.image_encoder.img_size
    side = image_size // 4
    input_size = ResizeLongestSide.get_preprocess_shape(*original_size, image_size)
    generator = torch.Generator().manual_seed(0)
    coarse = torch.randn((2, 3, 8, 8), generator=generator) * 8  # logits of a few units, like real masks
    low_res = torch.nn.functional.interpolate(coarse, (side, side), mode="bicubic", align_corners=False)
    expected = tiny_reference.postprocess_masks(low_res, input_size, original_size).numpy()
    actual = upscale_mask_logits(low_res, image_size, input_size, original_size)
    assert actual.shape == expected.shape and actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, atol=1e-4 * np.abs(expected).max(), rtol=0)
    assert ((actual > 0) == (expected > 0)).mean() >= 0.99999
