"""Training and evaluation data: ``read_training_data`` reads COCO instances (a ``.json``), a folder with ``masks/``
or ``labels/``, a folder that ``sam-amg`` wrote, or a list of records / a ``datasets`` split, into a
``TrainingData``; ``split_by_image`` splits it reproducibly.

The layouts: docs/finetune.md."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_core.finetune.amg_output import is_amg_output, read_amg_output
from sam_core.finetune.annotations import (
    DEFAULT_MAX_FRACTION,
    DEFAULT_MIN_AREA,
    AnnotatedImage,
    AnnotatedObject,
    MaskRules,
    Skipped,
    TrainingData,
)
from sam_core.finetune.coco import read_coco
from sam_core.finetune.folders import read_mask_folders
from sam_core.finetune.records import read_records

__all__ = ["AnnotatedImage", "AnnotatedObject", "MaskRules", "Skipped", "TrainingData", "read_training_data",
           "split_by_image"]


def read_training_data(data: str | Path | Sequence[Any], images: str | Path | None = None, *,
                       min_area: int = DEFAULT_MIN_AREA, max_fraction: float = DEFAULT_MAX_FRACTION) -> TrainingData:
    """Read images and object masks from any supported layout (see docs/finetune.md).

    Args:
        data: a COCO instance JSON file; a folder with ``images/`` and ``masks/`` (``a.png`` or ``a_1.png``,
            ``a_2.png``, ... per image ``a.jpg``) or ``labels/`` (one label map per image, 0 background);
            a ``sam-amg`` output folder; or a sequence of ``{image, mask | masks, prompt?}`` records.
        images: the image folder: required for COCO and for ``sam-amg`` output (which does not copy its
            input images), optional for a masks/labels folder (default ``data/images``).
        min_area: masks with fewer pixels are skipped.
        max_fraction: masks covering more than this fraction of their image are skipped.

    Raises:
        ValueError: for input that cannot be read as a whole (an unknown layout, a JSON that is not COCO,
            COCO annotations whose image ids are not among its images, a missing image folder). Problems
            confined to a file or an object are reported in ``TrainingData.skipped`` instead.
    """
    rules = MaskRules(min_area, max_fraction)
    images_folder = None if images is None else Path(images)
    if images_folder is not None and not images_folder.is_dir():
        raise ValueError(f"images={images} is not a folder")
    if isinstance(data, (str, Path)):
        path = Path(data)
        if path.is_file():
            if images_folder is None:
                raise ValueError(f"{path} is read as COCO annotations, whose image files are elsewhere: pass "
                                 "images=<folder holding the file_name of each image>")
            return read_coco(path, images_folder, rules)
        if not path.is_dir():
            raise ValueError(f"{path} does not exist")
        if (path / "masks").is_dir() or (path / "labels").is_dir():
            return read_mask_folders(path, images_folder, rules)
        if is_amg_output(path):
            return read_amg_output(path, images_folder, rules)
        raise ValueError(f"{path} is not a known data layout: expected images/ with masks/ or labels/, or the "
                         "output of sam-amg (folders with metadata.csv, or .json files)")
    if isinstance(data, Mapping):
        raise ValueError(f"expected a sequence of records, got a mapping with keys {sorted(map(str, data))[:5]} "
                         "(for a datasets.DatasetDict, pass one split, e.g. data['train'])")
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise ValueError(f"cannot read training data from a {type(data).__name__}: expected a path or a sequence "
                         "of records")
    return read_records(data, rules)


def split_by_image(images: list[AnnotatedImage], val_fraction: float,
                   seed: int) -> tuple[list[AnnotatedImage], list[AnnotatedImage]]:
    """Split images (never objects of one image) into training and validation lists.

    The split depends on the set of keys and the seed only, not on the order of ``images``: keys are sorted,
    then permuted by ``numpy.random.default_rng(seed)``, and the first ``round(val_fraction * n)`` go to
    validation (at least one, and at least one left for training, when ``0 < val_fraction`` and n >= 2).
    Both lists keep the order of ``images``.

    Args:
        images: the images to split; keys must be unique.
        val_fraction: share of images for validation, in [0, 1).
        seed: seed of the permutation.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keys = [image.key for image in images]
    repeated = sorted(key for key, times in Counter(keys).items() if times > 1)
    if repeated:
        raise ValueError(f"image keys must be unique; repeated: {repeated[:10]}")
    count = len(images)
    val_count = round(val_fraction * count)
    if val_fraction > 0 and count >= 2:
        val_count = min(max(val_count, 1), count - 1)
    ordered = sorted(keys)
    val_keys = {ordered[i] for i in np.random.default_rng(seed).permutation(count)[:val_count]}
    train = [image for image in images if image.key not in val_keys]
    val = [image for image in images if image.key in val_keys]
    return train, val
