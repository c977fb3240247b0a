"""The images of a job: an image, a folder, or a list of paths read with Ray's readers (a .txt file, one path a
line, or a column of a .csv or .parquet file, local or at any URI those readers take)."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from sam_core.io.files import IMAGE_SUFFIXES, list_images
from sam_core.jobs.amg import LIST_SUFFIXES


def list_image_sources(ray: ModuleType, source: str, column: str) -> list[str]:
    """Image paths or URIs, in the input's order; local paths made absolute (relative ones are taken from the
    current directory), since Ray's workers do not share the driver's. ``ValueError`` for a bad input."""
    suffix = Path(source).suffix.lower()
    if "://" not in source:
        path = Path(source)
        if not path.exists():
            raise ValueError(f"--input {source} does not exist")
        if path.is_dir() or suffix not in LIST_SUFFIXES:
            images = [str(image.resolve()) for image in list_images(path)]
            if not images:
                raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {source}")
            return images
    if suffix == ".txt":
        entries = [row["text"] for row in ray.data.read_text(source).take_all()]
    elif suffix in (".csv", ".parquet"):
        dataset = ray.data.read_csv(source) if suffix == ".csv" else ray.data.read_parquet(source)
        names = dataset.schema().names
        if column not in names:
            raise ValueError(f"--input {source} has no column {column!r} (its columns: {', '.join(names)}); "
                             "name the column of image paths with --input-column")
        entries = [row[column] for row in dataset.select_columns([column]).take_all()]
    else:
        raise ValueError(f"--input {source}: a URI must name a list of images (.txt, .csv or .parquet)")
    images = [_absolute(str(entry).strip()) for entry in entries if entry is not None and str(entry).strip()]
    if not images:
        raise ValueError(f"--input {source} lists no image paths")
    return images


def _absolute(entry: str) -> str:
    return entry if "://" in entry else os.path.abspath(entry)
