"""Reading images, binary masks and label maps from files (and from in-memory PIL images or arrays).

Pillow reads them all: it gives an image's size from its header without decoding the pixels (what the
readers' checks need), reads 16-bit PNGs as 16-bit, and palette PNGs as their indices (label maps).
EXIF orientation is applied to every file, as OpenCV's ``imread`` (and so ``sam-amg``) does, so masks
line up with the image a viewer shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from sam_core.io.files import list_images
from sam_core.transforms import to_rgb_uint8

_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}  # rotations by 90 degrees: width and height swap
# Modes whose arrays are gray / RGB / RGBA / 16-bit gray, which to_rgb_uint8 converts as documented.
_ARRAY_IMAGE_MODES = {"L", "RGB", "RGBA", "I;16"}
_INTEGER_MODES = {"I", "I;16", "I;16B", "I;16L"}


class UnreadableFile(ValueError):
    """A file that cannot be read as an image, mask or label map."""


def list_image_files(folder: Path) -> list[Path]:
    """Image files (by suffix) directly in ``folder``, sorted by name, hidden files left out: the files that
    ``sam-amg`` reads from a folder."""
    return list_images(folder)


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file as it will be loaded (EXIF orientation applied), from its header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS:
                width, height = height, width
    except (OSError, ValueError, SyntaxError) as error:  # Pillow raises SyntaxError on some corrupt headers
        raise UnreadableFile(f"cannot read {path} as an image: {error}") from error
    return height, width


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            oriented = ImageOps.exif_transpose(image)
            oriented.load()
            return oriented
    except (OSError, ValueError, SyntaxError) as error:
        raise UnreadableFile(f"cannot read {path} as an image: {error}") from error


def read_rgb(source: Path | Image.Image | np.ndarray) -> np.ndarray:
    """An image file, PIL image or array -> (H, W, 3) uint8 RGB (``to_rgb_uint8``'s conversions)."""
    image = _open(source) if isinstance(source, Path) else source
    if isinstance(image, Image.Image):
        if image.mode in _ARRAY_IMAGE_MODES:
            image = np.asarray(image)
        elif image.mode in _INTEGER_MODES:
            image = np.asarray(image).clip(0, 65535).astype(np.uint16)
        else:  # palette, bilevel, CMYK, LA, ...
            image = np.asarray(image.convert("RGB"))
    return to_rgb_uint8(np.asarray(image))


def read_mask(source: Path | Image.Image | np.ndarray) -> np.ndarray:
    """A binary mask -> (H, W) bool: nonzero pixels (float masks: above 0.5; colour masks: any colour
    channel nonzero, alpha ignored)."""
    mask = np.asarray(_open(source) if isinstance(source, Path) else source)
    if mask.ndim == 3 and mask.shape[2] in (3, 4):
        mask = mask[:, :, :3].any(axis=2)
    elif mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise UnreadableFile(f"a mask must be HxW (or HxWx1/3/4), got shape {mask.shape}")
    if np.issubdtype(mask.dtype, np.floating):
        return mask > 0.5
    return mask != 0


def read_label_map(path: Path) -> np.ndarray:
    """A label map file -> (H, W) integer ids (8-bit, 16-bit or palette indices; 0 is background)."""
    labels = np.asarray(_open(path))
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise UnreadableFile(f"{path} is not a single-channel integer label map (shape {labels.shape}, "
                             f"dtype {labels.dtype}); save one id per pixel as an 8- or 16-bit PNG")
    return labels
