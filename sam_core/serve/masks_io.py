"""Masks between the server and the page: row-major run lengths on the wire, PNG and COCO RLE downloads."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from pycocotools import mask as coco_mask

from sam_core.io.files import png_bytes
from sam_core.pipelines.masks import box_xyxy_to_xywh


def mask_to_runs(mask: np.ndarray) -> list[int]:
    """(H, W) bool -> run lengths over the row-major pixels, starting with a (possibly empty) run of zeros.
    A few numbers per mask row instead of a pixel each: small to send and quick to paint in the page."""
    flat = np.ascontiguousarray(mask, dtype=bool).ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(edges)
    if flat.size and flat[0]:
        runs = np.concatenate([[0], runs])
    return runs.tolist()


def runs_to_mask(runs: Sequence[int], height: int, width: int) -> np.ndarray:
    """The inverse of ``mask_to_runs``; raises ``ValueError`` if the runs do not cover exactly H x W pixels."""
    counts = np.asarray(runs, dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() != height * width:
        raise ValueError(f"mask runs must be non-negative counts adding up to {height}x{width} pixels")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(height, width)


def masks_png(masks: Sequence[np.ndarray]) -> bytes:
    """One mask: black and white (0/255). Several: a label image, pixel value i + 1 where mask i lies (later
    masks on top), 8-bit up to 255 masks, 16-bit beyond."""
    if len(masks) == 1:
        image = masks[0].astype(np.uint8) * 255
    else:
        image = np.zeros(masks[0].shape, np.uint8 if len(masks) < 256 else np.uint16)
        for index, mask in enumerate(masks):
            image[mask] = index + 1
    return png_bytes(image)


def masks_coco_json(masks: Sequence[np.ndarray], scores: Sequence[float]) -> bytes:
    """A list of records as ``sam-amg --output-format coco`` writes them: segmentation (COCO RLE), area,
    bbox (XYWH) and predicted_iou."""
    records = []
    for mask, score in zip(masks, scores):
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        rows, cols = np.nonzero(mask)
        box = [0, 0, 0, 0] if rows.size == 0 else [int(cols.min()), int(rows.min()), int(cols.max()),
                                                   int(rows.max())]
        records.append({"segmentation": rle, "area": int(mask.sum()), "bbox": box_xyxy_to_xywh(np.array(box)).tolist(),
                        "predicted_iou": float(score)})
    return json.dumps(records).encode()
