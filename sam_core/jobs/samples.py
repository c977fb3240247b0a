"""Sample inputs that the project makes itself, so that ``sam-amg`` has something to segment on a fresh clone:
shapes scenes with their ground-truth masks and, with ``photos=True``, scikit-image's sample photos. Files are
written only where missing; an existing file with other bytes is an error unless ``overwrite=True``.

Design notes: docs/samples.md."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sam_core.finetune.annotations import AnnotatedImage, AnnotatedObject

# AutomaticMaskGenerator options for the shapes model on these scenes (the README's first command). The
# model is small and trained briefly, so its predicted IoUs and stability scores sit below what Meta's
# defaults (0.88, 0.95) expect of ViT-H; the thresholds are lowered only as far as the scenes need.
# Cleaning regions under 100 px removes the specks that the 64x64 low-res masks leave around a shape;
# without it they stretch a mask's box so that box NMS keeps two masks of one shape.
SHAPES_MODEL_AMG_OPTIONS = {"pred_iou_thresh": 0.7, "stability_score_thresh": 0.9, "min_mask_region_area": 100}

# (name, height, width, shapes, seed): square, 4:3 landscape, 3:4 portrait and 16:9, at sizes where the
# tiny model's 64x64 masks are still sharp enough for an IoU of 0.8.
_SCENES = (
    ("square", 256, 256, 4, 0),
    ("landscape", 240, 320, 5, 1),
    ("portrait", 400, 300, 4, 2),
    ("wide", 360, 640, 5, 3),
)
# What makes a drawn scene legible (see _is_legible); thresholds in pixels of the image or 0-255 colour units.
_MIN_AREA_FRACTION = 0.03
_MIN_SOLIDITY = 0.9
_MIN_CONTRAST = 60
_MAX_DRAWS = 10_000

# skimage.data function name -> file name. JPEG, as photos usually come.
_PHOTOS = (("astronaut", "astronaut.jpg"), ("chelsea", "chelsea.jpg"), ("coffee", "coffee.jpg"))
_JPEG_QUALITY = 95


@dataclass(frozen=True)
class Scene:
    """A rendered shapes scene.

    Args:
        name: file stem, e.g. ``"shapes_square"``.
        image: (H, W, 3) uint8 RGB image.
        masks: one (H, W) bool mask per visible shape, in drawing order (what a perfect segmenter returns).
    """

    name: str
    image: np.ndarray
    masks: list[np.ndarray]


def draw_shapes_image(rng: np.random.Generator, height: int, width: int,
                      n_shapes: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """An RGB uint8 image of flat-coloured rectangles and ellipses over noise, and each shape's visible mask
    (later shapes occlude earlier ones; fully hidden shapes are dropped).

    The shapes model was trained on these images: a change here changes what ``tests/make_shapes_model.py``
    trains on, so keep the draws from ``rng`` (their order and ranges) as they are.

    Args:
        rng: the random generator to draw from (advanced by the call).
        height: image height in pixels.
        width: image width in pixels.
        n_shapes: shapes to draw; half-sizes are drawn between 1/12 and 1/3 of the short side.

    Returns:
        The image and the list of visible shapes' (height, width) bool masks.
    """
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=2.0)
    owner = np.full((height, width), -1, dtype=np.int32)
    short = min(height, width)
    for index in range(n_shapes):
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        canvas = np.zeros((height, width), dtype=np.uint8)
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        half_w, half_h = (int(v) for v in rng.integers(short // 12, short // 3, size=2))
        if rng.random() < 0.5:
            cv2.rectangle(canvas, (center[0] - half_w, center[1] - half_h), (center[0] + half_w, center[1] + half_h),
                          255, thickness=-1)
        else:
            angle = float(rng.uniform(0, 180))
            cv2.ellipse(canvas, center, (half_w, half_h), angle, 0, 360, 255, thickness=-1)
        inside = canvas > 0
        image[inside] = color
        owner[inside] = index
    masks = [owner == index for index in range(n_shapes) if (owner == index).any()]
    return image, masks


def _is_legible(image: np.ndarray, masks: list[np.ndarray], n_shapes: int) -> bool:
    """Whether every drawn shape is plainly visible: not hidden, one piece, mostly unoccluded (visible area
    >= 90 % of its convex hull), not tiny, and its colour far from the background's and from that of every
    shape it touches. These are properties of the picture alone (no model is consulted); random draws
    often break them, e.g. a shape left as a thin crescent by another, or one grey on grey noise."""
    if len(masks) != n_shapes:
        return False
    height, width = masks[0].shape
    background = ~np.any(masks, axis=0)
    colours = [image[mask][0].astype(int) for mask in masks]  # flat colour: any pixel will do
    background_colour = image[background].mean(axis=0)
    ring_kernel = np.ones((5, 5), np.uint8)
    for index, mask in enumerate(masks):
        as_uint8 = mask.astype(np.uint8)
        if mask.sum() < _MIN_AREA_FRACTION * height * width:
            return False
        if cv2.connectedComponents(as_uint8)[0] != 2:  # background label + exactly one piece
            return False
        contours, _ = cv2.findContours(as_uint8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if mask.sum() < _MIN_SOLIDITY * cv2.contourArea(cv2.convexHull(np.concatenate(contours))):
            return False
        if np.abs(colours[index] - background_colour).max() < _MIN_CONTRAST:
            return False
        ring = cv2.dilate(as_uint8, ring_kernel).astype(bool) & ~mask
        for other, other_mask in enumerate(masks):
            touching = other != index and (ring & other_mask).any()
            if touching and np.abs(colours[index] - colours[other]).max() < _MIN_CONTRAST:
                return False
    return True


def _legible_scene(name: str, height: int, width: int, n_shapes: int, seed: int) -> Scene:
    """The first legible draw from ``default_rng(seed)``: deterministic, and chosen by the picture alone."""
    rng = np.random.default_rng(seed)
    for _ in range(_MAX_DRAWS):
        image, masks = draw_shapes_image(rng, height, width, n_shapes)
        if _is_legible(image, masks, n_shapes):
            return Scene(name, image, masks)
    raise RuntimeError(f"no legible {height}x{width} scene with {n_shapes} shapes in {_MAX_DRAWS} draws")


def shapes_scenes() -> list[Scene]:
    """The sample shapes scenes, the same on every machine and every call (about 1 s to draw).

    Four scenes (256x256 with 4 shapes, 240x320 with 5, 400x300 with 4, 360x640 with 5), named
    ``shapes_square``, ``shapes_landscape``, ``shapes_portrait`` and ``shapes_wide``.
    """
    return [_legible_scene(f"shapes_{name}", height, width, n_shapes, seed)
            for name, height, width, n_shapes, seed in _SCENES]


def shapes_training_images(count: int, seed: int, sizes: Sequence[tuple[int, int]] = ((192, 256), (256, 192),
                                                                                     (160, 256)),
                           convention: Callable[[np.ndarray], np.ndarray] | None = None,
                           min_area: int = 100) -> list[AnnotatedImage]:
    """Annotated shapes scenes to fine-tune or evaluate on (``sam_core.finetune``), drawn on the fly.

    Image i is ``sizes[i % len(sizes)]`` (H, W) with 2 to 4 shapes (``draw_shapes_image``), keyed
    ``shapes_<seed>_<i>``. Each visible shape of at least ``min_area`` pixels is an object, its mask passed
    through ``convention`` (e.g. a dilation: an annotation style the shapes model was not trained on).

    Args:
        count: number of images.
        seed: seed of the drawing; different seeds give disjoint-looking scenes.
        sizes: image sizes to cycle through.
        convention: maps a shape's exact (H, W) bool mask to its annotated mask (None: the exact mask).
        min_area: smallest shape kept, in pixels.
    """

    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        height, width = sizes[index % len(sizes)]
        image, masks = draw_shapes_image(rng, height, width, int(rng.integers(2, 5)))
        objects = [AnnotatedObject(mask if convention is None else convention(mask))
                   for mask in masks if mask.sum() >= min_area]
        images.append(AnnotatedImage.from_arrays(f"shapes_{seed}_{index}", image, objects))
    return images


class MissingPhotosDependency(ImportError):
    """scikit-image, which holds the sample photos, is not installed."""


def _photo_loaders() -> list[tuple[str, Callable[[], np.ndarray]]]:
    """(file name, loader) for each photo; raises MissingPhotosDependency without scikit-image."""
    try:
        # Imported here: the examples extra: only --photos needs it.
        from skimage import data
    except ImportError as error:
        raise MissingPhotosDependency(
            "the sample photos come from scikit-image, which is not installed: run pip install -e '.[examples]' "
            "in the repository (or pip install scikit-image)") from error
    return [(file_name, getattr(data, function)) for function, file_name in _PHOTOS]


def _encode(path: Path, rgb: np.ndarray) -> bytes:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if path.suffix == ".jpg" else []
    ok, encoded = cv2.imencode(path.suffix, bgr, params)
    if not ok:
        raise OSError(f"cannot encode {path.name}")
    return encoded.tobytes()


def write_samples(folder: str | Path, photos: bool = False, overwrite: bool = False) -> list[Path]:
    """Write the sample images into ``folder`` (created if needed).

    Writes ``shapes_*.png`` (the scenes of ``shapes_scenes()``; PNG, so pixels match the ground-truth
    masks exactly) and, with ``photos=True``, ``astronaut.jpg``, ``chelsea.jpg`` and ``coffee.jpg`` from
    scikit-image. Nothing else is written there, so the folder can be passed to ``sam-amg --input`` as is.

    Args:
        folder: where to write.
        photos: also write scikit-image's photos (checked before anything is written).
        overwrite: replace existing files whose content differs. Without it such a file raises
            FileExistsError (again before anything is written); files that already hold the same bytes
            are left untouched either way.

    Returns:
        The paths of all sample files in ``folder``, scenes first, whether written now or already there.
    """
    folder = Path(folder)
    images = [(folder / f"{scene.name}.png", scene.image) for scene in shapes_scenes()]
    if photos:
        images += [(folder / file_name, load()) for file_name, load in _photo_loaders()]
    encoded = [(path, _encode(path, image)) for path, image in images]
    if not overwrite:
        clashes = [path for path, data in encoded if path.exists() and path.read_bytes() != data]
        if clashes:
            raise FileExistsError(f"{', '.join(str(path) for path in clashes)} exist(s) with other content; "
                                  "not replaced (use overwrite=True / --overwrite)")
    folder.mkdir(parents=True, exist_ok=True)
    for path, data in encoded:
        if not (path.exists() and path.read_bytes() == data):
            path.write_bytes(data)
    return [path for path, _ in encoded]
