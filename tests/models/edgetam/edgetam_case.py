"""The model shapes, photo prompts, clip and video prompts the EdgeTAM parity tests share (conftest runs Meta's
reference once on them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from sam_core.models.edgetam import EDGETAM_CONFIGS

# 128 x 128 pixels: an 8 x 8 memory grid, 2 x 2 windows under each of the 4 x 4 window latents.
CONFIG = dataclasses.replace(EDGETAM_CONFIGS["edgetam_test"], image_size=128)
NUM_FRAMES, HEIGHT, WIDTH = 12, 96, 128
STEPS = [dict(frame=0, object=1, box=[8, 18, 42, 52]),
         dict(frame=0, object=1, points=[[25, 35]], labels=[1], clear=False),
         dict(propagate=None),
         dict(frame=7, object=1, points=[[60, 40]], labels=[0], clear=False),
         dict(propagate=8)]


def draw_clip(folder: Path) -> Path:
    """A rectangle moving right and an ellipse moving down over smooth noise, as <index>.jpg frames."""
    rng = np.random.default_rng(0)
    background = rng.integers(60, 120, size=(HEIGHT // 8, WIDTH // 8, 3)).astype(np.uint8)
    background = np.asarray(Image.fromarray(background).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR))
    ys, xs = np.mgrid[:HEIGHT, :WIDTH]
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(NUM_FRAMES):
        frame = background.copy()
        x0 = 10 + 5 * t
        frame[20:50, x0:x0 + 30] = (220, 40, 40)
        inside = ((xs - 90) / 18.0) ** 2 + ((ys - (30 + 4 * t)) / 12.0) ** 2 <= 1
        frame[inside] = (40, 200, 60)
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)
    return folder


# Image prompts (pixels of the 180 x 240 photo): a click, clicks with a box (one mask: the dynamic choice), a box.
PROMPTS = [dict(points=[[60.0, 50.0]], labels=[1], multimask=True),
           dict(points=[[60.0, 50.0], [150.0, 100.0]], labels=[1, 0], box=[20.0, 30.0, 200.0, 150.0],
                multimask=False),
           dict(box=[100.0, 20.0, 230.0, 170.0], multimask=True)]
