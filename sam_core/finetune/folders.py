"""Training data as a folder of images with a folder of binary masks or of label maps.

    data/images/a.jpg  data/masks/a.png                      one object
    data/images/b.jpg  data/masks/b_1.png, b_2.png, ...      several objects (ordered by the number)
    data/images/c.jpg  data/labels/c.png                     a label map: one id per object, 0 background

Masks pair with images by file stem: a mask whose stem is an image's stem belongs to that image, otherwise
``<stem>_<number>`` belongs to the image ``<stem>`` (so ``a_1.png`` goes to an image named ``a_1`` if there
is one). Label maps may be 8-bit, 16-bit or palette PNGs (or any single-channel integer image); every
nonzero id is one object. Any image suffix that ``sam-amg`` reads is accepted for masks and label maps.

Nothing raises on a bad file: unreadable images, masks or label maps, masks or label maps whose size differs
from their image's, masks without an image, images without masks, images sharing a stem, and masks that
``MaskRules`` drops are each reported as a skip.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
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
        masks = [path for _, path in sorted(owned.get(stem, []))]
        if not masks:
            skipped.append(Skipped(str(image_path), "no masks"))
            continue
        size, reason = _checked_size(image_path)
        if reason is not None:
            skipped.append(Skipped(f"{image_path} and its {len(masks)} masks", reason))
            continue
        kept = []
        for mask_path in masks:
            reason = mask_file_rejection(mask_path, size, rules)
            if reason is None:
                kept.append(mask_path)
            else:
                skipped.append(Skipped(str(mask_path), reason))
        if kept:
            result.append(AnnotatedImage(stem, partial(read_rgb, image_path), partial(load_mask_files, tuple(kept)),
                                         size, len(kept), str(image_path)))
        else:
            skipped.append(Skipped(str(image_path), "no usable masks"))
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
        size, reason = _checked_size(image_path)
        if reason is not None:
            skipped.append(Skipped(f"{image_path} and {label_path}", reason))
            continue
        try:
            label_map = read_label_map(label_path)
        except UnreadableFile as error:
            skipped.append(Skipped(str(label_path), f"unreadable label map: {error}"))
            continue
        if label_map.shape != size:
            skipped.append(Skipped(str(label_path), f"size mismatch: label map is {label_map.shape[1]}x"
                                                    f"{label_map.shape[0]}, image is {size[1]}x{size[0]}"))
            continue
        ids, areas = np.unique(label_map, return_counts=True)
        kept = []
        for label_id, area in zip(ids.tolist(), areas.tolist()):
            if label_id == 0:
                continue
            reason = rules.rejection(area, size)
            if reason is None:
                kept.append(label_id)
            else:
                skipped.append(Skipped(f"{label_path} id {label_id}", reason))
        if kept:
            result.append(AnnotatedImage(stem, partial(read_rgb, image_path),
                                         partial(_load_label_objects, label_path, tuple(kept)), size, len(kept),
                                         str(image_path)))
        else:
            skipped.append(Skipped(str(image_path), "no usable objects in the label map"))
    return TrainingData(result, skipped)


def _checked_size(image_path: Path) -> tuple[tuple[int, int], str | None]:
    try:
        return image_size(image_path), None
    except UnreadableFile as error:
        return (0, 0), f"unreadable image: {error}"


def mask_file_rejection(path: Path, size: tuple[int, int], rules: MaskRules) -> str | None:
    """Why the mask file at ``path`` is not used for an image of ``size`` (H, W), or None."""
    try:
        mask = read_mask(path)
    except UnreadableFile as error:
        return f"unreadable mask: {error}"
    return rules.check(mask, size)


def load_mask_files(paths: tuple[Path, ...],
                    points: tuple[tuple[float, float] | None, ...] | None = None) -> list[AnnotatedObject]:
    """Mask files (and optional point prompts, one per mask) -> objects."""
    points = points or (None,) * len(paths)
    return [AnnotatedObject(read_mask(path), point) for path, point in zip(paths, points)]


def _load_label_objects(path: Path, ids: tuple[int, ...]) -> list[AnnotatedObject]:
    label_map = read_label_map(path)
    return [AnnotatedObject(label_map == label_id) for label_id in ids]
