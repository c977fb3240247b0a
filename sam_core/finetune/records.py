"""Training data as a sequence of records (a list of dicts, or a Hugging Face ``datasets`` split): ``image`` (array,
PIL image or path), ``mask`` / ``label`` or ``masks`` (arrays, PIL images or paths; nonzero = object), and
optionally ``prompt`` (``bbox`` / ``box`` and/or ``point`` / ``points``, a dict or its JSON string).

The record format in detail: docs/finetune.md."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam_core.finetune.annotations import AnnotatedImage, AnnotatedObject, MaskRules, Skipped, TrainingData
from sam_core.finetune.image_files import UnreadableFile, image_size, read_mask, read_rgb

Prompt = tuple[tuple[float, float] | None, tuple[float, float, float, float] | None]


def read_records(records: Sequence[Any], rules: MaskRules) -> TrainingData:
    """Images with their objects from a sequence of ``{image, mask or masks, prompt?}`` records."""
    images, skipped = [], []
    for index in range(len(records)):
        image, skips = _read_record(records, index, rules)
        skipped += skips
        if image is not None:
            images.append(image)
    return TrainingData(images, skipped)


def _read_record(records: Sequence[Any], index: int,
                 rules: MaskRules) -> tuple[AnnotatedImage | None, list[Skipped]]:
    source = f"record {index}"
    record = records[index]
    if not isinstance(record, Mapping):
        return None, [Skipped(source, f"not a mapping but a {type(record).__name__}")]
    try:
        size = _image_size(record.get("image"))
        masks = _masks_of(record)
        prompts = _prompts_of(record.get("prompt"), len(masks))
    except (UnreadableFile, ValueError, TypeError) as error:
        return None, [Skipped(source, str(error))]
    kept, skipped = [], []
    for position, (mask, prompt) in enumerate(zip(masks, prompts)):
        object_source = f"{source} mask {position}"
        if isinstance(prompt, str):
            skipped.append(Skipped(object_source, f"bad prompt: {prompt}"))
            continue
        try:
            reason = rules.check(read_mask(_as_source(mask)), size)
        except (UnreadableFile, ValueError, TypeError) as error:
            reason = f"unreadable mask: {error}"
        if reason is None:
            kept.append((position, prompt))
        else:
            skipped.append(Skipped(object_source, reason))
    if not kept:
        return None, skipped + [Skipped(source, "no usable objects")]
    image = AnnotatedImage(str(index), partial(_load_image, records, index),
                           partial(_load_objects, records, index, tuple(kept)), size, len(kept), source)
    return image, skipped


def _as_source(value: Any) -> Any:
    """Paths as ``Path`` (what the file readers take), arrays and PIL images as they are."""
    if isinstance(value, (str, Path)):
        return Path(value)
    if isinstance(value, (np.ndarray, Image.Image)):
        return value
    return np.asarray(value)


def _image_size(image: Any) -> tuple[int, int]:
    if image is None:
        raise ValueError("no 'image'")
    image = _as_source(image)
    if isinstance(image, Path):
        return image_size(image)
    if isinstance(image, Image.Image):
        return image.height, image.width
    read_rgb(image)  # raises ValueError now, not in the middle of training, if the array is no image
    return int(image.shape[0]), int(image.shape[1])


def _masks_of(record: Mapping) -> list[Any]:
    if "masks" in record:
        masks = record["masks"]
        if isinstance(masks, np.ndarray) and masks.ndim == 3:
            return list(masks)
        if isinstance(masks, (list, tuple)):
            return list(masks)
        raise ValueError(f"'masks' must be a list or an (N, H, W) array, got {type(masks).__name__}")
    for key in ("mask", "label"):
        if record.get(key) is not None:
            return [record[key]]
    raise ValueError("no 'mask', 'label' or 'masks'")


def _prompts_of(prompt: Any, count: int) -> list[Prompt | str]:
    """One (point, box) per mask, or an error message (a str) for an object whose prompt is malformed."""
    if prompt is None:
        return [(None, None)] * count
    if isinstance(prompt, (list, tuple)):
        if len(prompt) != count:
            raise ValueError(f"'prompt' is a list of {len(prompt)} for {count} masks")
        return [_parse_prompt(item) for item in prompt]
    if count != 1:
        raise ValueError(f"one 'prompt' for {count} masks: give a list with one prompt per mask")
    return [_parse_prompt(prompt)]


def _parse_prompt(prompt: Any) -> Prompt | str:
    if prompt is None:
        return None, None
    if isinstance(prompt, str):
        try:
            prompt = json.loads(prompt)
        except json.JSONDecodeError as error:
            return f"not JSON: {error}"
    if not isinstance(prompt, Mapping):
        return f"expected a dict with 'point' and/or 'bbox', got {type(prompt).__name__}"
    point_value = prompt.get("point", prompt.get("points"))
    box_value = prompt.get("bbox", prompt.get("box"))
    point = box = None
    if point_value is not None:
        values = _numbers(point_value)
        if values is None or len(values) != 2:
            return f"point must be x, y (or [[x, y]]), got {point_value!r}"
        point = (values[0], values[1])
    if box_value is not None:
        values = _numbers(box_value)
        if values is None or len(values) != 4 or values[2] < values[0] or values[3] < values[1]:
            return f"bbox must be x0, y0, x1, y1 with x1 >= x0 and y1 >= y0, got {box_value!r}"
        box = (values[0], values[1], values[2], values[3])
    return point, box


def _numbers(value: Any) -> list[float] | None:
    """Finite numbers from a flat or singly nested list, else None."""
    try:
        values = [float(v) for v in np.asarray(value, dtype=float).reshape(-1)]
    except (TypeError, ValueError):
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _load_image(records: Sequence[Any], index: int) -> np.ndarray:
    return read_rgb(_as_source(records[index]["image"]))


def _load_objects(records: Sequence[Any], index: int, kept: tuple[tuple[int, Prompt], ...]) -> list[AnnotatedObject]:
    masks = _masks_of(records[index])
    return [AnnotatedObject(read_mask(_as_source(masks[position])), point, box) for position, (point, box) in kept]
