"""What the training-data readers return: images with their object masks, loaded lazily, and the skips.

Every reader checks its whole input when it is called (image sizes from the file headers, each mask's
size and area) and keeps only what the checks pass, plus a record of everything left out and why; the
pixels themselves are read again only when ``load_image`` / ``load_objects`` are called, so a data set
of any size can be listed without holding it in memory. The loaders are picklable (module-level functions
bound with ``functools.partial``), so ``AnnotatedImage`` lists can be handed to DataLoader workers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

DEFAULT_MIN_AREA = 100
DEFAULT_MAX_FRACTION = 0.9


@dataclass(frozen=True)
class AnnotatedObject:
    """One object of an image.

    Args:
        mask: (H, W) bool, the size of the image.
        point: a prompt that came with the data, (x, y) in image pixels, if any.
        box: a box prompt that came with the data, (x0, y0, x1, y1) in image pixels, if any.
    """

    mask: np.ndarray
    point: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class AnnotatedImage:
    """An image and its objects, read from disk (or from the source records) only when asked for.

    Args:
        key: unique and stable name of the image in its data set (file stem, COCO id, record index).
        image_loader: returns the (H, W, 3) uint8 RGB image.
        objects_loader: returns the image's objects that passed the reader's checks, in the source's order.
        size: (H, W) of the image, as the reader found it.
        num_objects: how many objects ``load_objects`` returns.
        source: where the image comes from (a path, or a record index), for messages.
    """

    key: str
    image_loader: Callable[[], np.ndarray] = field(repr=False, compare=False)
    objects_loader: Callable[[], list[AnnotatedObject]] = field(repr=False, compare=False)
    size: tuple[int, int] = (0, 0)
    num_objects: int = 0
    source: str = ""

    def load_image(self) -> np.ndarray:
        """The (H, W, 3) uint8 RGB image."""
        return self.image_loader()

    def load_objects(self) -> list[AnnotatedObject]:
        """The image's objects, each mask (H, W) bool."""
        return self.objects_loader()

    @classmethod
    def from_arrays(cls, key: str, image: np.ndarray, objects: list[AnnotatedObject]) -> AnnotatedImage:
        """An image held in memory, with its objects as given (no checks, no filtering)."""
        return cls(key, partial(_returns, image), partial(_returns, list(objects)),
                   (int(image.shape[0]), int(image.shape[1])), len(objects), key)


def _returns(value):
    return value


@dataclass(frozen=True)
class Skipped:
    """A file, image or region that a reader left out.

    Args:
        source: what was left out (a path, ``"<file> annotation 12"``, ``"record 3 mask 1"``, ...).
        reason: why, in words.
    """

    source: str
    reason: str


@dataclass
class TrainingData:
    """What ``read_training_data`` returns.

    Args:
        images: the usable images, each with at least one object.
        skipped: everything not used, and why.
    """

    images: list[AnnotatedImage]
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def num_objects(self) -> int:
        return sum(image.num_objects for image in self.images)

    def describe(self) -> str:
        """One line: images, objects, and the skips counted by reason (reasons cut at their first colon)."""
        text = f"{len(self.images)} images, {self.num_objects} objects"
        if not self.skipped:
            return text + ", nothing skipped"
        reasons = Counter(skip.reason.split(":")[0] for skip in self.skipped)
        counted = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
        return f"{text}; {len(self.skipped)} skipped ({counted})"


@dataclass(frozen=True)
class MaskRules:
    """Which masks are kept for training and evaluation.

    Args:
        min_area: masks with fewer pixels are dropped (too small to learn from or to click on).
        max_fraction: masks covering more than this fraction of the image are dropped (background, or a
            label that covers everything).
    """

    min_area: int = DEFAULT_MIN_AREA
    max_fraction: float = DEFAULT_MAX_FRACTION

    def __post_init__(self) -> None:
        if self.min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {self.min_area}")
        if not 0.0 < self.max_fraction <= 1.0:
            raise ValueError(f"max_fraction must be in (0, 1], got {self.max_fraction}")

    def rejection(self, area: int, image_size: tuple[int, int]) -> str | None:
        """Why a mask of ``area`` pixels on an image of ``image_size`` (H, W) is dropped, or None to keep it."""
        if area == 0:
            return "empty mask"
        if area < self.min_area:
            return f"too small: {area} px, under min_area {self.min_area}"
        fraction = area / (image_size[0] * image_size[1])
        if fraction > self.max_fraction:
            return f"too large: covers {fraction:.1%} of the image, over max_fraction {self.max_fraction:g}"
        return None

    def check(self, mask: np.ndarray, image_size: tuple[int, int]) -> str | None:
        """``rejection`` for a bool mask, after checking that its size is the image's."""
        if mask.shape != tuple(image_size):
            return (f"size mismatch: mask is {mask.shape[1]}x{mask.shape[0]}, image is "
                    f"{image_size[1]}x{image_size[0]} (width x height)")
        return self.rejection(int(np.count_nonzero(mask)), image_size)
