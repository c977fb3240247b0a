"""File helpers every writer shares: atomic writes, PNG encoding, and the image files of a folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".jp2", ".pbm", ".pgm", ".png", ".pnm", ".ppm", ".ras", ".sr",
                            ".tif", ".tiff", ".webp"})
"""Suffixes of the image files read from a folder: those OpenCV decodes."""


def list_images(source: Path) -> list[Path]:
    """``[source]`` for a file; for a folder, its image files (by suffix, not recursive, hidden files left out),
    sorted by name."""
    if source.is_file():
        return [source]
    return sorted(path for path in source.iterdir()
                  if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES)


def temporary_file_beside(path: Path, suffix: str = ".tmp") -> Path:
    """A new empty hidden file ``.<name>.<random><suffix>`` in ``path``'s folder, where a rename onto ``path`` is
    atomic."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    return Path(name)


def write_atomically(path: Path, write: Callable[[Path], object], suffix: str = ".tmp") -> None:
    """``write(temporary path)`` for a hidden temporary file beside ``path`` (``.<name>.<random><suffix>``), then
    rename it into place: readers see the old file or the whole new one, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_file_beside(path, suffix)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # a no-op once renamed into place


def write_bytes_atomically(path: Path, data: bytes, suffix: str = ".tmp") -> None:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomically`)."""
    write_atomically(path, lambda temporary: temporary.write_bytes(data), suffix)


def png_bytes(image: np.ndarray, compression: int | None = None) -> bytes:
    """PNG file bytes of an image as OpenCV takes it: (H, W) gray or (H, W, 3) BGR, uint8 (or uint16); a bool
    mask is written 0/255.

    Args:
        image: the pixels.
        compression: zlib level 0-9 (OpenCV's default, 1, when None).
    Returns:
        The encoded file. ``OSError`` when OpenCV cannot encode it.
    """
    params = [] if compression is None else [cv2.IMWRITE_PNG_COMPRESSION, compression]
    pixels = image.astype(np.uint8) * 255 if image.dtype == bool else image
    ok, encoded = cv2.imencode(".png", pixels, params)
    if not ok:
        raise OSError("PNG encoding failed")
    return encoded.tobytes()
