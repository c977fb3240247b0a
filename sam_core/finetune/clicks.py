"""Simulated clicks: where a user would click on an object, and where next to correct a prediction.

The first click goes to the object's centre, the pixel farthest from its boundary (the SAM paper's and RITM's
choice: a point well inside the object, not one on a thin part). Each correction goes to the centre of the
largest error region (by pixel count, 8-connected): positive where the prediction misses the object (false
negative), negative where it spills over (false positive). The image border counts as boundary, so a region
cut by the border gets its click inside, not on the edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Click:
    """A simulated click, in image pixels.

    Args:
        x: column of the clicked pixel.
        y: row of the clicked pixel.
        positive: True for a foreground click (label 1), False for a background click (label 0).
    """

    x: int
    y: int
    positive: bool

    @property
    def label(self) -> int:
        return int(self.positive)


def centre_point(region: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel of a non-empty bool ``region`` farthest (Euclidean) from any pixel outside it or
    beyond the image border; ties go to the first such pixel in row-major order."""
    if not region.any():
        raise ValueError("centre_point needs a non-empty region")
    padded = np.pad(region.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)


def next_click(target: np.ndarray, prediction: np.ndarray) -> Click | None:
    """The correcting click for ``prediction`` of the bool mask ``target``, or None if they are equal.

    The largest 8-connected region of false negatives or false positives is chosen (false negatives win a
    tie), and the click goes to its centre.
    """
    best: tuple[int, np.ndarray, bool] | None = None
    for error, positive in ((target & ~prediction, True), (prediction & ~target, False)):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(error.astype(np.uint8), connectivity=8)
        if count < 2:
            continue
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        area = int(stats[largest, cv2.CC_STAT_AREA])
        if best is None or area > best[0]:
            best = (area, labels == largest, positive)
    if best is None:
        return None
    x, y = centre_point(best[1])
    return Click(x, y, best[2])
