"""COCO instance annotations (``instances_*.json``) as training data: polygon, uncompressed or compressed RLE
segmentations; images found by their ``id`` and ``file_name`` under the images folder. An annotation whose
``image_id`` is not among the images raises ``ValueError``; everything else is a reported skip.

Details: docs/finetune.md."""

from __future__ import annotations

import json
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

from pycocotools import mask as mask_utils

from sam_core.finetune.annotations import AnnotatedImage, AnnotatedObject, MaskRules, Skipped, TrainingData
from sam_core.finetune.image_files import UnreadableFile, image_size, read_rgb

_MAX_IDS_LISTED = 10


def read_coco(annotation_file: Path, images_folder: Path, rules: MaskRules) -> TrainingData:
    """Images with their objects from a COCO instance JSON; image files under ``images_folder``."""
    try:
        content = json.loads(annotation_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {annotation_file} as JSON: {error}") from error
    if not isinstance(content, dict) or not {"images", "annotations"} <= content.keys():
        raise ValueError(f"{annotation_file} is not a COCO instance file: expected a JSON object with 'images' and "
                         "'annotations' lists (a sam-amg JSON is read by passing its output folder instead)")
    entries = _images_by_id(content["images"], annotation_file)
    by_image: dict[Any, list[tuple[int, dict]]] = defaultdict(list)
    for position, annotation in enumerate(content["annotations"]):
        by_image[annotation.get("image_id")].append((position, annotation))
    unknown = [image_id for image_id in by_image if image_id not in entries]
    if unknown:
        listed = ", ".join(repr(image_id) for image_id in unknown[:_MAX_IDS_LISTED])
        more = f" and {len(unknown) - _MAX_IDS_LISTED} more" if len(unknown) > _MAX_IDS_LISTED else ""
        raise ValueError(f"{annotation_file}: {sum(len(by_image[i]) for i in unknown)} annotations refer to "
                         f"image ids that are not in 'images': {listed}{more}")
    images, skipped = [], []
    for image_id, entry in entries.items():
        image, skips = _read_image(annotation_file.name, image_id, entry, by_image.get(image_id, []),
                                   images_folder, rules)
        skipped += skips
        if image is not None:
            images.append(image)
    return TrainingData(images, skipped)


def _images_by_id(entries: list[dict], annotation_file: Path) -> dict[Any, dict]:
    by_id: dict[Any, dict] = {}
    for entry in entries:
        if not {"id", "file_name", "height", "width"} <= entry.keys():
            raise ValueError(f"{annotation_file}: image entry {entry!r} lacks id, file_name, height or width")
        if entry["id"] in by_id:
            raise ValueError(f"{annotation_file}: image id {entry['id']!r} appears twice in 'images'")
        by_id[entry["id"]] = entry
    return by_id


def _read_image(file_label: str, image_id: Any, entry: dict, annotations: list[tuple[int, dict]],
                images_folder: Path, rules: MaskRules) -> tuple[AnnotatedImage | None, list[Skipped]]:
    path = images_folder / entry["file_name"]
    height, width = int(entry["height"]), int(entry["width"])
    whole_image = f"{path} (COCO image {image_id!r}, {len(annotations)} annotations)"
    if not annotations:
        return None, [Skipped(whole_image, "no annotations")]
    if not path.is_file():
        return None, [Skipped(whole_image, "image file not found")]
    try:
        actual = image_size(path)
    except UnreadableFile as error:
        return None, [Skipped(whole_image, f"unreadable image: {error}")]
    if actual != (height, width):
        return None, [Skipped(whole_image, f"size mismatch: the file is {actual[1]}x{actual[0]}, the JSON says "
                                           f"{width}x{height} (width x height)")]
    rles, skipped = [], []
    for position, annotation in annotations:
        source = f"{file_label} annotation {annotation.get('id', f'#{position}')!r} (image {image_id!r})"
        if annotation.get("iscrowd", 0):
            skipped.append(Skipped(source, "crowd region (iscrowd=1)"))
            continue
        try:
            rle = segmentation_to_rle(annotation.get("segmentation"), height, width)
        except ValueError as error:
            skipped.append(Skipped(source, f"bad segmentation: {error}"))
            continue
        reason = rules.rejection(rle_area(rle), (height, width))
        if reason is not None:
            skipped.append(Skipped(source, reason))
            continue
        rles.append(rle)
    if not rles:
        return None, skipped + [Skipped(whole_image, "no usable objects")]
    image = AnnotatedImage(str(image_id), partial(read_rgb, path), partial(decode_rles, tuple(rles)), (height, width),
                           len(rles), str(path))
    return image, skipped


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict:
    """A COCO segmentation (polygons, or RLE with list or string counts) -> compressed RLE over the whole
    (height, width) image; ValueError if it is malformed or of another size."""
    if isinstance(segmentation, list):
        polygons = [polygon for polygon in segmentation
                    if isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0]
        if not polygons or len(polygons) != len(segmentation):
            raise ValueError("polygons must be lists of at least 3 x, y pairs")
        try:
            return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        except (TypeError, ValueError) as error:
            raise ValueError(f"polygon not readable: {error}") from error
    if not isinstance(segmentation, dict) or not {"size", "counts"} <= segmentation.keys():
        raise ValueError("expected polygons or an RLE dict with 'size' and 'counts'")
    size = [int(v) for v in segmentation["size"]]
    if size != [height, width]:
        raise ValueError(f"RLE size is {size[1]}x{size[0]}, the image is {width}x{height} (width x height)")
    counts = segmentation["counts"]
    if isinstance(counts, list):
        if sum(counts) != height * width:
            raise ValueError(f"uncompressed RLE counts sum to {sum(counts)}, not {height * width} pixels")
        return mask_utils.frPyObjects({"size": size, "counts": counts}, height, width)
    if isinstance(counts, (str, bytes)):
        return {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    raise ValueError(f"RLE counts must be a list or a string, got {type(counts).__name__}")


def rle_area(rle: dict) -> int:
    """Pixels in a compressed RLE, counted without decoding it."""
    return int(mask_utils.area(rle))


def decode_rles(rles: tuple[dict, ...], points: tuple[tuple[float, float] | None, ...] | None = None
                ) -> list[AnnotatedObject]:
    """Compressed RLEs (and optional point prompts, one per mask) -> objects with (H, W) bool masks."""
    points = points or (None,) * len(rles)
    return [AnnotatedObject(mask_utils.decode(rle).astype(bool), point) for rle, point in zip(rles, points)]
