"""Training data as a folder of images with a folder of binary masks or of label maps: ``images/a.jpg`` with
``masks/a.png`` (one object), ``masks/a_1.png``, ``a_2.png``, ... (several) or ``labels/a.png`` (one id per
object, 0 background). Bad files are reported as skips, never raised.

Pairing rules: docs/finetune.md."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from sam_core.finetune.annotations import AnnotatedImage, AnnotatedObject, MaskRules, Skipped, TrainingData
from sam_core.finetune.image_files import (
    UnreadableFile,
    image_size,
    list_image_files,
    read_label_map,
    read_mask,
    read_rgb,
)

_NUMBERED_STEM = re.compile(r"(.+)_(\d+)")
Point = tuple[float, float]
FoundObjects = tuple[Callable[[], list[AnnotatedObject]] | None, int, list[Skipped]]
"""What checking an image's annotations gives: a loader of the objects kept, their number, the skips."""


def read_mask_folders(root: Path, images_folder: Path | None, rules: MaskRules) -> TrainingData:
    """Images from ``images_folder`` (default ``root/images``) with ``root/masks`` or ``root/labels``."""
    images_folder = root / "images" if images_folder is None else images_folder
    masks_folder, labels_folder = root / "masks", root / "labels"
    if masks_folder.is_dir() and labels_folder.is_dir():
        raise ValueError(f"{root} has both masks/ and labels/; keep one of them")
    if not images_folder.is_dir():
        raise ValueError(f"no images folder {images_folder} (pass images= for another place)")
    images, skipped = _unique_stems(list_image_files(images_folder))
    if masks_folder.is_dir():
        result = _read_with_masks(images, list_image_files(masks_folder), rules)
    else:
        result = _read_with_labels(images, list_image_files(labels_folder), rules)
    result.skipped[:0] = skipped
    return result


def _unique_stems(paths: list[Path]) -> tuple[dict[str, Path], list[Skipped]]:
    counts = Counter(path.stem for path in paths)
    unique = {path.stem: path for path in paths if counts[path.stem] == 1}
    skipped = [Skipped(str(path), f"ambiguous: another file has the stem {path.stem!r}")
               for path in paths if counts[path.stem] > 1]
    return unique, skipped


def _read_with_masks(images: dict[str, Path], mask_files: list[Path], rules: MaskRules) -> TrainingData:
    owned: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    skipped = []
    for path in mask_files:
        numbered = _NUMBERED_STEM.fullmatch(path.stem)
        if path.stem in images:
            owned[path.stem].append((0, path))
        elif numbered and numbered[1] in images:
            owned[numbered[1]].append((int(numbered[2]), path))
        else:
            skipped.append(Skipped(str(path), "no image with this stem (or stem_<number>) in the images folder"))
    result = []
    for stem, image_path in images.items():
        masks = tuple(path for _, path in sorted(owned.get(stem, [])))
        if not masks:
            skipped.append(Skipped(str(image_path), "no masks"))
            continue
        image, skips = read_image_entry(stem, image_path, f"its {len(masks)} masks",
                                        partial(check_mask_files, masks, None, rules))
        skipped += skips
        result += [image] if image is not None else []
    return TrainingData(result, skipped)


def _read_with_labels(images: dict[str, Path], label_files: list[Path], rules: MaskRules) -> TrainingData:
    labels, skipped = _unique_stems(label_files)
    skipped += [Skipped(str(path), "no image with this stem in the images folder")
                for stem, path in labels.items() if stem not in images]
    result = []
    for stem, image_path in images.items():
        label_path = labels.get(stem)
        if label_path is None:
            skipped.append(Skipped(str(image_path), "no label map"))
            continue
        image, skips = read_image_entry(stem, image_path, str(label_path),
                                        partial(_check_label_map, label_path, rules))
        skipped += skips
        result += [image] if image is not None else []
    return TrainingData(result, skipped)


def read_image_entry(key: str, image_path: Path, annotations: str,
                     find_objects: Callable[[tuple[int, int]], FoundObjects]) -> tuple[AnnotatedImage | None,
                                                                                      list[Skipped]]:
    """An image file with its objects, or None and why not.

    Args:
        key: the image's key.
        image_path: the image file, whose size is read from its header.
        annotations: what holds its objects, for the message if the image is unreadable.
        find_objects: (H, W) -> (objects loader, number of objects, skips): checks the annotations.
    """
    try:
        size = image_size(image_path)
    except UnreadableFile as error:
        return None, [Skipped(f"{image_path} and {annotations}", f"unreadable image: {error}")]
    loader, count, skipped = find_objects(size)
    if not count:
        return None, skipped + [Skipped(str(image_path), "no usable objects")]
    return AnnotatedImage(key, partial(read_rgb, image_path), loader, size, count, str(image_path)), skipped


def check_mask_files(paths: tuple[Path, ...], points: tuple[Point | None, ...] | None, rules: MaskRules,
                     size: tuple[int, int]) -> FoundObjects:
    """The mask files (with their point prompts, if any) that pass the checks for an image of ``size``."""
    points = points or (None,) * len(paths)
    kept, kept_points, skipped = [], [], []
    for path, point in zip(paths, points):
        try:
            reason = rules.check(read_mask(path), size)
        except UnreadableFile as error:
            reason = f"unreadable mask: {error}"
        if reason is None:
            kept.append(path)
            kept_points.append(point)
        else:
            skipped.append(Skipped(str(path), reason))
    return partial(load_mask_files, tuple(kept), tuple(kept_points)), len(kept), skipped


def _check_label_map(path: Path, rules: MaskRules, size: tuple[int, int]) -> FoundObjects:
    try:
        label_map = read_label_map(path)
    except UnreadableFile as error:
        return None, 0, [Skipped(str(path), f"unreadable label map: {error}")]
    if label_map.shape != size:
        return None, 0, [Skipped(str(path), f"size mismatch: label map is {label_map.shape[1]}x{label_map.shape[0]}, "
                                            f"image is {size[1]}x{size[0]} (width x height)")]
    ids, areas = np.unique(label_map, return_counts=True)
    kept, skipped = [], []
    for label_id, area in zip(ids.tolist(), areas.tolist()):
        if label_id == 0:
            continue
        reason = rules.rejection(area, size)
        if reason is None:
            kept.append(label_id)
        else:
            skipped.append(Skipped(f"{path} id {label_id}", reason))
    return partial(_load_label_objects, path, tuple(kept)), len(kept), skipped


def load_mask_files(paths: tuple[Path, ...], points: tuple[Point | None, ...]) -> list[AnnotatedObject]:
    """Mask files and their point prompts (or None) -> objects."""
    return [AnnotatedObject(read_mask(path), point) for path, point in zip(paths, points)]


def _load_label_objects(path: Path, ids: tuple[int, ...]) -> list[AnnotatedObject]:
    label_map = read_label_map(path)
    return [AnnotatedObject(label_map == label_id) for label_id in ids]
