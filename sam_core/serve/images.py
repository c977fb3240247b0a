"""Images that reach the web app: checked before they are decoded, and a folder served by name only."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "TIFF"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class ImageRejected(ValueError):
    """An image the app will not open; the message says why, for the page to show."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageLimits:
    """What an opened image may be.

    Args:
        max_bytes: largest file, uploaded or read from the folder.
        max_pixels: largest width * height, checked from the header before any pixel is decoded.
    """

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000


def inspect_image(data: bytes, name: str, limits: ImageLimits) -> tuple[int, int]:
    """Check file bytes without decoding a pixel: size, format and pixel count from the header, then the
    file's structure (Pillow's ``verify``). Cheap, so that a bad file is refused before it waits for the
    encoder.

    Returns:
        (width, height) as the header states them (before any EXIF rotation).

    Raises:
        ImageRejected: naming the file and the reason.
    """
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"{name}: file of {len(data)} bytes is over the limit of {limits.max_bytes} bytes", 413)
    if not data:
        raise ImageRejected(f"{name}: the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as header:
            if header.format not in IMAGE_FORMATS:
                raise ImageRejected(f"{name}: {header.format} images are not accepted; "
                                    f"expected one of {sorted(IMAGE_FORMATS)}")
            width, height = header.size
            if width * height > limits.max_pixels:
                raise ImageRejected(f"{name}: {width}x{height} pixels is over the limit of "
                                    f"{limits.max_pixels} pixels", 413)
            header.verify()
            return width, height
    except ImageRejected:
        raise
    except _UNREADABLE as error:
        raise ImageRejected(f"{name}: not a readable image ({error})") from None


def decode_image(data: bytes, name: str, limits: ImageLimits) -> np.ndarray:
    """Validated file bytes -> (H, W, 3) uint8 RGB, upright as its EXIF orientation says.

    ``inspect_image`` runs first (header and structure, no pixels); only then is the file decoded.
    Raises ``ImageRejected`` naming the file and the reason.
    """
    inspect_image(data, name, limits)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = ImageOps.exif_transpose(image)
            return np.array(image.convert("RGB"))
    except _UNREADABLE as error:
        raise ImageRejected(f"{name}: not a readable image ({error})") from None


class ImageFolder:
    """The image files directly inside one folder, opened by their listed name only, so no request can name a
    path outside it (``..``, absolute paths, links that lead out).

    Args:
        root: the folder.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ValueError(f"--images {root}: not a folder")

    def names(self) -> list[str]:
        return sorted(path.name for path in self.root.iterdir()
                      if path.suffix.lower() in IMAGE_SUFFIXES and self._inside(path) and path.is_file())

    def read(self, name: str, limits: ImageLimits) -> bytes:
        if name not in self.names():
            raise ImageRejected(f"{name!r} is not an image of the served folder", 404)
        path = self.root / name
        if path.stat().st_size > limits.max_bytes:
            raise ImageRejected(f"{name}: file of {path.stat().st_size} bytes is over the limit of "
                                f"{limits.max_bytes} bytes", 413)
        return path.read_bytes()

    def _inside(self, path: Path) -> bool:
        return path.resolve().parent == self.root
