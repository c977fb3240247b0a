"""sssegmentation's SAM helpers under its names: ``ResizeLongestSide`` with its method names, and the
matplotlib drawing functions of its tutorials (``showmask``, ``showpoints``, ``showbox``, ``showanns``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sam_core import transforms

MASK_COLOR = (30 / 255, 144 / 255, 255 / 255, 0.6)  # the tutorials' blue, 60% opaque
MASK_ALPHA = 0.6
ANNOTATION_ALPHA = 0.35


class ResizeLongestSide(transforms.ResizeLongestSide):
    """sam_core's :class:`~sam_core.transforms.ResizeLongestSide` with sssegmentation's method names: the
    same resized images (Pillow's bilinear filter) and coordinates (float64 numpy, float32 torch)."""

    def applyimage(self, image: np.ndarray) -> np.ndarray:
        return self.apply_image(image)

    def applycoords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        return self.apply_coords(coords, original_size)

    def applyboxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        return self.apply_boxes(boxes, original_size)

    def applyimagetorch(self, image: Any) -> Any:
        return self.apply_image_torch(image)

    def applycoordstorch(self, coords: Any, original_size: tuple[int, int]) -> Any:
        return self.apply_coords(coords, original_size)

    def applyboxestorch(self, boxes: Any, original_size: tuple[int, int]) -> Any:
        return self.apply_boxes(boxes, original_size)

    @staticmethod
    def getpreprocessshape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        return transforms.ResizeLongestSide.get_preprocess_shape(oldh, oldw, long_side_length)


def showmask(mask: np.ndarray, ax: Any, random_color: bool = False) -> None:
    """Draw one (..., H, W) mask on a matplotlib axis, in the tutorials' blue or a random colour."""
    color = np.append(np.random.random(3), MASK_ALPHA) if random_color else np.array(MASK_COLOR)
    height, width = mask.shape[-2:]
    ax.imshow(mask.reshape(height, width, 1) * color.reshape(1, 1, -1))


def showpoints(coords: np.ndarray, labels: np.ndarray, ax: Any, marker_size: int = 375) -> None:
    """Draw clicks as stars: foreground (label 1) green, background (label 0) red."""
    for label, color in ((1, "green"), (0, "red")):
        chosen = coords[labels == label]
        ax.scatter(chosen[:, 0], chosen[:, 1], color=color, marker="*", s=marker_size, edgecolor="white",
                   linewidth=1.25)


def showbox(box: np.ndarray, ax: Any) -> None:
    """Draw an XYXY box as a green outline."""
    # Imported here: matplotlib is only needed to draw, not to segment.
    import matplotlib.pyplot as plt

    x0, y0 = box[0], box[1]
    ax.add_patch(plt.Rectangle((x0, y0), box[2] - x0, box[3] - y0, edgecolor="green", facecolor=(0, 0, 0, 0), lw=2))


def showanns(anns: list[dict[str, Any]]) -> None:
    """Draw a generator's binary-mask records on the current matplotlib axis, largest first, each in a random
    colour."""
    if not anns:
        return
    # Imported here: matplotlib is only needed to draw, not to segment.
    import matplotlib.pyplot as plt

    ordered = sorted(anns, key=lambda ann: ann["area"], reverse=True)
    ax = plt.gca()
    ax.set_autoscale_on(False)
    height, width = ordered[0]["segmentation"].shape[:2]
    overlay = np.ones((height, width, 4))
    overlay[:, :, 3] = 0
    for ann in ordered:
        overlay[ann["segmentation"]] = np.append(np.random.random(3), ANNOTATION_ALPHA)
    ax.imshow(overlay)
