"""sam_core.viz: overlays land where the masks, points and boxes are, and PNGs read back in RGB."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sam_core import viz


@pytest.fixture()
def image() -> np.ndarray:
    y, x = np.mgrid[0:90, 0:120]
    return np.stack([x * 2, y * 2, np.full_like(x, 40)], axis=-1).astype(np.uint8)


@pytest.fixture()
def masks() -> np.ndarray:
    stack = np.zeros((2, 90, 120), dtype=bool)
    stack[0, 10:40, 10:50] = True
    stack[1, 50:80, 60:110] = True
    return stack


def test_fixed_colour_mask_blend_and_untouched_background(image, masks):
    red = (255, 0, 0)
    original = image.copy()
    drawn = viz.draw_masks(image, masks[0], colors=red, alpha=1.0, outline=False)
    assert (drawn[masks[0]] == red).all()
    np.testing.assert_array_equal(drawn[~masks[0]], image[~masks[0]])

    half = viz.draw_masks(image, masks[0], colors=red, alpha=0.5, outline=False)
    expected = (image[masks[0]].astype(np.float32) + np.array(red)) / 2
    assert np.abs(half[masks[0]] - expected).max() <= 0.5
    np.testing.assert_array_equal(image, original)  # drawing works on a copy


def test_random_colours_are_seeded_and_one_per_mask(image, masks):
    colours = viz.random_colors(2, seed=3)
    assert colours.shape == (2, 3) and colours.dtype == np.uint8
    np.testing.assert_array_equal(colours, viz.random_colors(2, seed=3))
    assert not np.array_equal(colours, viz.random_colors(2, seed=4))
    drawn = viz.draw_masks(image, masks, alpha=1.0, outline=False, seed=3)
    for mask, colour in zip(masks, colours):
        assert (drawn[mask] == colour).all()


def test_mask_generator_records_are_accepted(image, masks):
    records = [{"segmentation": mask, "area": int(mask.sum())} for mask in masks]
    np.testing.assert_array_equal(viz.draw_masks(image, records, seed=1), viz.draw_masks(image, masks, seed=1))


def test_outline_follows_the_mask_border(image, masks):
    green = (0, 255, 0)
    drawn = viz.draw_masks(image, masks[0], colors=green, alpha=0.0, outline=True)
    assert (drawn[10, 10:50] == green).all() and (drawn[39, 10:50] == green).all()
    np.testing.assert_array_equal(drawn[20:30, 20:40], image[20:30, 20:40])  # alpha 0: inside unchanged


def test_points_are_green_for_positive_and_red_for_negative(image):
    drawn = viz.draw_points(image, np.array([[30, 20], [90, 70]]), np.array([1, 0]), size=15)
    np.testing.assert_array_equal(drawn[20, 30], viz.POSITIVE_COLOR)
    np.testing.assert_array_equal(drawn[70, 90], viz.NEGATIVE_COLOR)
    np.testing.assert_array_equal(drawn[45, 60], image[45, 60])
    with pytest.raises(ValueError, match="2 points but 1 labels"):
        viz.draw_points(image, np.array([[30, 20], [90, 70]]), np.array([1]))


def test_boxes_draw_their_edges_only(image):
    drawn = viz.draw_boxes(image, np.array([[10, 20, 100, 80]]), color=(0, 0, 255), thickness=1)
    assert (drawn[20, 10:101] == (0, 0, 255)).all() and (drawn[20:81, 100] == (0, 0, 255)).all()
    np.testing.assert_array_equal(drawn[30:70, 20:90], image[30:70, 20:90])


def test_save_png_round_trips_in_rgb_with_coloured_mask_pixels(image, masks, tmp_path):
    overlay = viz.overlay(image, masks, point_coords=np.array([[5, 5]]), point_labels=np.array([1]),
                          boxes=np.array([60, 50, 110, 80]), colors=(0, 0, 255), alpha=1.0, outline=False)
    path = viz.save_png(tmp_path / "overlay.png", overlay)
    read_back = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert read_back.shape == image.shape
    np.testing.assert_array_equal(read_back, overlay)
    inside = masks[0].copy()
    inside[:15, :15] = False  # the point marker sits on top of the mask there
    assert (read_back[inside] == (0, 0, 255)).all()


@pytest.mark.parametrize("bad_masks, message", [
    (np.zeros((90, 100), bool), "do not match"),
    (np.zeros((1, 1, 90, 120), bool), "do not match"),
    ("mask", "do not match"),
    (12, "array or a sequence"),
])
def test_bad_masks_raise_value_error(image, bad_masks, message):
    with pytest.raises(ValueError, match=message):
        viz.draw_masks(image, bad_masks)


def test_bad_colours_alpha_and_paths_raise(image, masks, tmp_path):
    with pytest.raises(ValueError, match="colors"):
        viz.draw_masks(image, masks, colors=[(1, 2, 3)] * 3)
    with pytest.raises(ValueError, match="alpha"):
        viz.draw_masks(image, masks, alpha=1.5)
    with pytest.raises(ValueError, match=".png"):
        viz.save_png(tmp_path / "overlay.jpg", image)
    with pytest.raises(OSError, match="could not write"):
        viz.save_png(tmp_path / "missing_folder" / "overlay.png", image)


def test_drawing_no_masks_returns_the_image_unchanged():
    image = np.full((20, 30, 3), 77, dtype=np.uint8)
    assert viz.random_colors(0).shape == (0, 3)
    assert np.array_equal(viz.draw_masks(image, []), image)
