"""Draw masks, point prompts and boxes onto RGB images with OpenCV, and save them as PNG (no display)."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sam_core.transforms import to_rgb_uint8

Color = tuple[int, int, int]

POSITIVE_COLOR: Color = (0, 200, 0)
NEGATIVE_COLOR: Color = (220, 0, 0)
BOX_COLOR: Color = (0, 255, 0)


def random_colors(count: int, seed: int | None = 0) -> np.ndarray:
    """``count`` distinct-looking saturated RGB colours (count x 3 uint8); the same for the same seed."""
    if count == 0:  # OpenCV rejects an empty image
        return np.zeros((0, 3), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    # Random hues at full saturation and high value stay visible on most photos, unlike uniform RGB.
    hsv = np.stack([rng.integers(0, 180, count), np.full(count, 255), rng.integers(200, 256, count)], axis=1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]


def draw_masks(image: np.ndarray, masks: Any, colors: Color | np.ndarray | None = None, alpha: float = 0.5,
               outline: bool = True, seed: int | None = 0) -> np.ndarray:
    """Blend masks onto a copy of ``image`` (RGB uint8; gray/RGBA/float are converted).

    ``masks``: one HxW mask, an NxHxW stack, or a sequence of masks or of mask-generator records (dicts
    with a binary ``"segmentation"`` array). ``colors``: one RGB tuple for all masks, N RGB rows, or None
    for random colours from ``seed``. ``alpha`` is the mask opacity; ``outline`` draws each mask's border.
    """
    canvas = to_rgb_uint8(image).copy()
    stack = _mask_stack(masks, canvas.shape[:2])
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    palette = _palette(colors, len(stack), seed)
    for mask, color in zip(stack, palette):
        region = canvas[mask].astype(np.float32)
        canvas[mask] = np.round(region * (1.0 - alpha) + color.astype(np.float32) * alpha).astype(np.uint8)
        if outline:
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(canvas, contours, -1, tuple(int(c) for c in color), 1)
    return canvas


def draw_points(image: np.ndarray, coords: np.ndarray, labels: np.ndarray | None = None,
                size: int | None = None) -> np.ndarray:
    """Draw point prompts on a copy of ``image``: label 1 as green stars, label 0 as red crosses.

    ``coords`` is Nx2 (x, y) in pixels; ``labels`` defaults to all positive; ``size`` to 3 % of the
    longer image side.
    """
    canvas = to_rgb_uint8(image).copy()
    points = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    point_labels = np.ones(len(points), dtype=int) if labels is None else np.asarray(labels).reshape(-1)
    if len(point_labels) != len(points):
        raise ValueError(f"{len(points)} points but {len(point_labels)} labels")
    marker_size = size or max(8, round(0.03 * max(canvas.shape[:2])))
    thickness = max(1, marker_size // 6)
    for (x, y), label in zip(points, point_labels):
        center = (int(round(x)), int(round(y)))
        marker, color = (cv2.MARKER_STAR, POSITIVE_COLOR) if label == 1 else (cv2.MARKER_TILTED_CROSS, NEGATIVE_COLOR)
        # A white halo under the marker keeps it readable on any background.
        cv2.drawMarker(canvas, center, (255, 255, 255), marker, marker_size, thickness + 2, cv2.LINE_AA)
        cv2.drawMarker(canvas, center, color, marker, marker_size, thickness, cv2.LINE_AA)
    return canvas


def draw_boxes(image: np.ndarray, boxes: np.ndarray, color: Color = BOX_COLOR,
               thickness: int | None = None) -> np.ndarray:
    """Draw XYXY boxes (4 numbers or Nx4) on a copy of ``image``."""
    canvas = to_rgb_uint8(image).copy()
    corners = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    line = thickness or max(1, round(0.004 * max(canvas.shape[:2])))
    for x0, y0, x1, y1 in np.round(corners).astype(int):
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), color, line)
    return canvas


def overlay(image: np.ndarray, masks: Any = None, point_coords: np.ndarray | None = None,
            point_labels: np.ndarray | None = None, boxes: np.ndarray | None = None, **mask_options: Any) -> np.ndarray:
    """Masks, then boxes, then points (so prompts stay on top) on a copy of ``image``."""
    canvas = to_rgb_uint8(image)
    if masks is not None:
        canvas = draw_masks(canvas, masks, **mask_options)
    if boxes is not None:
        canvas = draw_boxes(canvas, boxes)
    if point_coords is not None:
        canvas = draw_points(canvas, point_coords, point_labels)
    return canvas


def save_png(path: str | PathLike, image: np.ndarray) -> Path:
    """Write an RGB (or gray) uint8 image as PNG; returns the path."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise ValueError(f"save_png writes PNG files; give a path ending in .png, got {target}")
    rgb = to_rgb_uint8(image)
    if not cv2.imwrite(str(target), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {target} (does the folder exist and is it writable?)")
    return target


def _mask_stack(masks: Any, image_size: tuple[int, int]) -> np.ndarray:
    """Bring the accepted mask inputs to an NxHxW bool array matching the image size."""
    if isinstance(masks, np.ndarray):
        stack = masks[None] if masks.ndim == 2 else masks
    elif isinstance(masks, Sequence):
        items = [m["segmentation"] if isinstance(m, dict) else m for m in masks]
        stack = np.stack([np.asarray(m) for m in items]) if items else np.zeros((0, *image_size), dtype=bool)
    else:
        raise ValueError(f"masks must be an array or a sequence of masks/records, got {type(masks).__name__}")
    if stack.ndim != 3 or tuple(stack.shape[1:]) != tuple(image_size):
        raise ValueError(f"masks of shape {stack.shape} do not match the image size {tuple(image_size)}")
    return stack.astype(bool, copy=False)


def _palette(colors: Color | np.ndarray | None, count: int, seed: int | None) -> np.ndarray:
    if colors is None:
        return random_colors(count, seed)
    palette = np.asarray(colors, dtype=np.int64)
    if palette.shape == (3,):
        palette = np.repeat(palette[None], count, axis=0)
    if palette.shape != (count, 3) or palette.min() < 0 or palette.max() > 255:
        raise ValueError(f"colors must be one RGB triple or {count} RGB rows in 0..255, got shape {palette.shape}")
    return palette.astype(np.uint8)
