"""Mask utilities for automatic mask generation: point grids, crops, scores, boxes, RLE, NMS, region cleanup, each
computing what its counterpart in Meta's ``segment_anything.utils.amg`` computes, faster. RLEs are pycocotools':
``{"size": [H, W], "counts": [...]}``, runs over the column-major mask starting with a (possibly empty) run of 0s.

Design notes: docs/pipelines.md."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product
from typing import Any, TypeVar

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import batched_nms

Rle = dict[str, Any]
Coords = TypeVar("Coords", np.ndarray, torch.Tensor)


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) x,y points at the centres of an n x n grid of cells over [0, 1]^2, row by row."""
    half_cell = 1 / (2 * n_per_side)
    centres = np.linspace(half_cell, 1 - half_cell, n_per_side)
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer; layer i has ``n_per_side / scale_per_layer**i`` points a side."""
    return [build_point_grid(int(n_per_side / scale_per_layer**layer)) for layer in range(n_layers + 1)]


def generate_crop_boxes(im_size: tuple[int, int], n_layers: int,
                        overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """XYXY crop boxes and their layer index: the whole image, then 2^i x 2^i overlapping crops per layer i."""
    im_h, im_w = im_size
    boxes, layers = [[0, 0, im_w, im_h]], [0]
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * min(im_h, im_w) * (2 / per_side))
        # Crops of equal length whose union, with ``overlap`` shared between neighbours, covers the side.
        crop_w = math.ceil((overlap * (per_side - 1) + im_w) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + im_h) / per_side)
        starts_x = [int((crop_w - overlap) * i) for i in range(per_side)]
        starts_y = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(starts_x, starts_y):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(layer)
    return boxes, layers


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Inclusive XYXY boxes (int64) around boolean masks of shape (..., H, W); [0, 0, 0, 0] for empty masks."""
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, dtype=torch.int64, device=masks.device)
    height, width = masks.shape[-2:]
    # A max over uint8 is much faster than ``any`` over bool on CPU; same result.
    as_bytes = masks.view(torch.uint8)
    rows = as_bytes.amax(dim=-1)
    cols = as_bytes.amax(dim=-2)
    # argmax returns the first maximal index: the first occupied row/column from either end.
    top = rows.argmax(dim=-1)
    bottom = height - 1 - rows.flip(-1).argmax(dim=-1)
    left = cols.argmax(dim=-1)
    right = width - 1 - cols.flip(-1).argmax(dim=-1)
    boxes = torch.stack([left, top, right, bottom], dim=-1)
    return boxes * (rows.amax(dim=-1, keepdim=True) > 0)


def box_xyxy_to_xywh(box_xyxy: Coords) -> Coords:
    """One XYXY box (or the last axis of many) to XYWH, as a new array."""
    box_xywh = box_xyxy.clone() if isinstance(box_xyxy, torch.Tensor) else np.array(box_xyxy, copy=True)
    box_xywh[..., 2:] = box_xyxy[..., 2:] - box_xyxy[..., :2]
    return box_xywh


def _offset_like(values: Coords, offset: Sequence[int]) -> Coords:
    if isinstance(values, torch.Tensor):
        return values + torch.tensor(offset, device=values.device)
    return values + np.asarray(offset)


def uncrop_boxes_xyxy(boxes: Coords, crop_box: Sequence[int]) -> Coords:
    """Boxes (..., 4) from crop coordinates to image coordinates."""
    x0, y0 = crop_box[:2]
    return _offset_like(boxes, [x0, y0, x0, y0])


def uncrop_points(points: Coords, crop_box: Sequence[int]) -> Coords:
    """Points (..., 2) from crop coordinates to image coordinates."""
    return _offset_like(points, list(crop_box[:2]))


def uncrop_masks(masks: torch.Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """Masks (..., h, w) of a crop placed, zero-padded, into the (orig_h, orig_w) image."""
    x0, y0, x1, y1 = crop_box
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    return torch.nn.functional.pad(masks, (x0, orig_w - x1, y0, orig_h - y1), value=0)


def is_box_near_crop_edge(boxes: torch.Tensor, crop_box: Sequence[int], orig_box: Sequence[int],
                          atol: float = 20.0) -> torch.Tensor:
    """True for boxes (in crop coordinates) within ``atol`` of a crop edge that is not an image edge:
    such masks are probably cut off by the crop."""
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    image = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    boxes = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop_edge = (boxes - crop).abs() <= atol
    near_image_edge = (boxes - image).abs() <= atol
    return (near_crop_edge & ~near_image_edge).any(dim=1)


def mask_to_rle_pytorch(masks: torch.Tensor, crop_box: Sequence[int] | None = None,
                        image_size: tuple[int, int] | None = None) -> list[Rle]:
    """Uncompressed RLEs of boolean masks (N, h, w), all masks at once.

    With ``crop_box`` and ``image_size`` (H, W), the masks are a crop's and the RLEs describe them placed
    into the full, otherwise empty image, without materialising the padded masks.
    """
    count, crop_h, crop_w = masks.shape
    x0, y0 = (0, 0) if crop_box is None else crop_box[:2]
    image_h, image_w = masks.shape[1:] if image_size is None else image_size
    total = image_h * image_w
    if count == 0:
        return []
    # Each mask's crop columns one after another (column-major, as COCO counts), with one background pixel
    # above and below each column, so that a run never continues from one column into the next of the crop
    # (the image's rows outside the crop lie between them). A run starts wherever a pixel differs from the
    # one before it; those edges come out in order. OpenCV transposes uint8 images several times faster
    # than torch or numpy copy a transposed view, and writes into the padded buffer in place.
    columns = np.zeros((crop_w, crop_h + 2), dtype=np.uint8)
    flat = columns.reshape(-1)
    rles = []
    for mask in masks.cpu().numpy().view(np.uint8):
        cv2.transpose(mask, dst=columns[:, 1:-1])
        column, padded_row = np.divmod(np.flatnonzero(flat[1:] != flat[:-1]) + 1, crop_h + 2)
        # Flat column-major index, in the full image, of the first pixel of each new run.
        starts = (column + x0) * image_h + (padded_row - 1 + y0)
        # Where the crop spans the full image height, the end of one column and the start of the next are
        # the same flat position: the two edges cancel out. An edge at ``total`` is the end of the image.
        twin = starts[1:] == starts[:-1]
        keep = starts != total
        keep[1:] &= ~twin
        keep[:-1] &= ~twin
        rles.append({"size": [image_h, image_w], "counts": np.diff(starts[keep], prepend=0, append=total).tolist()})
    return rles


def rle_to_mask(rle: Rle) -> np.ndarray:
    """Boolean (H, W) mask of an uncompressed RLE."""
    height, width = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2 == 1  # runs alternate 0, 1, 0, ...
    column_major = np.repeat(values, counts)
    return np.ascontiguousarray(column_major.reshape(width, height).T)


def area_from_rle(rle: Rle) -> int:
    """Number of foreground pixels: the sum of the runs of 1s."""
    return int(sum(rle["counts"][1::2]))


def coco_encode_rle(uncompressed_rle: Rle) -> Rle:
    """Compressed COCO RLE (pycocotools), with ``counts`` as a str so it serialises to JSON."""
    height, width = uncompressed_rle["size"]
    rle = mask_utils.frPyObjects(uncompressed_rle, height, width)
    rle["counts"] = rle["counts"].decode("utf-8")
    return rle


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or drop islands (``mode="islands"``) smaller than ``area_thresh``.

    Components are 8-connected (OpenCV). When every island is small, the largest one is kept. Returns the
    new mask and whether anything changed.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    fill_holes = mode == "holes"
    # Holes are the components of the background; label 0 is then the mask itself.
    regions = (mask != fill_holes).astype(np.uint8)
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(regions, connectivity=8)
    region_areas = stats[1:, cv2.CC_STAT_AREA]
    is_small = region_areas < area_thresh
    if not is_small.any():
        return mask, False
    keep = np.empty(n_labels, dtype=bool)
    if fill_holes:
        keep[0], keep[1:] = True, is_small
    else:
        keep[0], keep[1:] = False, ~is_small
        if not keep.any():
            keep[int(np.argmax(region_areas)) + 1] = True
    return keep[labels], True


def box_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept by NMS, best first.

    Goes through ``batched_nms`` with a single category, as the reference does, so that ties and the order
    of the result are resolved exactly as there (it switches algorithm with the number of boxes).
    """
    categories = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
    return batched_nms(boxes.float(), scores, categories, iou_threshold=iou_threshold)


# Logit given to a filled hole / a removed sprinkle, relative to the mask threshold (SAM 2's values).
HOLE_FILL_OFFSET = 10.0


def clean_low_res_logits(logits: torch.Tensor, mask_threshold: float, max_hole_area: float = 0.0,
                         max_sprinkle_area: float = 0.0) -> torch.Tensor:
    """Fill small holes and remove small sprinkles in mask logits (..., H, W), as SAM 2's predictor does to
    its low-res logits before upscaling them (Meta does it only with its CUDA extension, and skips it
    elsewhere; this runs everywhere, on the CPU with OpenCV).

    A hole is an 8-connected component of background pixels (logit <= ``mask_threshold``) of at most
    ``max_hole_area`` pixels; its logits become ``mask_threshold + 10``. A sprinkle is an 8-connected
    component of foreground pixels (logit > ``mask_threshold``) of at most ``max_sprinkle_area`` pixels; its
    logits become ``mask_threshold - 10``. Both are found on the input logits. Returns float32 logits on the
    input's device (the input itself when there is nothing to do).
    """
    if max_hole_area <= 0 and max_sprinkle_area <= 0:
        return logits
    source = logits.detach().float().cpu().numpy().reshape(-1, *logits.shape[-2:])
    out = source.copy()
    for mask, target in zip(source, out):
        foreground = mask > mask_threshold
        for area_limit, region, value in ((max_hole_area, ~foreground, mask_threshold + HOLE_FILL_OFFSET),
                                          (max_sprinkle_area, foreground, mask_threshold - HOLE_FILL_OFFSET)):
            if area_limit > 0:
                target[small_components(region, area_limit)] = value
    return torch.from_numpy(out.reshape(logits.shape)).to(logits.device)


def small_components(region: np.ndarray, max_area: float) -> np.ndarray:
    """The pixels of a boolean (H, W) region that lie in its 8-connected components of at most ``max_area``
    pixels."""
    if not region.any():
        return np.zeros_like(region)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(region.view(np.uint8), connectivity=8)
    small = stats[:, cv2.CC_STAT_AREA] <= max_area
    small[0] = False  # label 0: the pixels outside ``region``
    return small[labels]


def fill_small_holes(logits: torch.Tensor, max_area: float, fill_value: float = 0.1) -> torch.Tensor:
    """Mask logits (..., H, W) whose background components (logit <= 0, 8-connected) of at most ``max_area``
    pixels are set to ``fill_value``: SAM 2's video post-processing (``fill_holes_in_mask_scores``), which
    Meta runs only with its CUDA extension and which runs here everywhere, on the CPU with OpenCV."""
    source = logits.detach().float().cpu().numpy().reshape(-1, *logits.shape[-2:])
    holes = np.stack([small_components(mask <= 0, max_area) for mask in source]).reshape(logits.shape)
    if not holes.any():
        return logits
    return torch.where(torch.from_numpy(holes).to(logits.device), torch.tensor(fill_value, dtype=logits.dtype,
                                                                                  device=logits.device), logits)
