"""Prompts of SAM's interactive training recipe (the SAM paper's appendix): a first point or jittered box per
object, then correction points drawn from the error region; all randomness comes from the numpy generator passed in.

Design notes: docs/finetune.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sam_core.transforms import ImageTransform

PADDING_LABEL = -1  # a correction point where there is no error left: ignored by the prompt encoder


@dataclass
class FirstPrompts:
    """First prompts of N objects in the model's input frame: each object has a point or a box.

    Args:
        point_objects: indexes of the objects prompted with a point.
        points: (len(point_objects), 2) x, y.
        box_objects: indexes of the objects prompted with a box.
        boxes: (len(box_objects), 4) x0, y0, x1, y1.
    """

    point_objects: np.ndarray
    points: np.ndarray
    box_objects: np.ndarray
    boxes: np.ndarray


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight XYXY box of a non-empty mask: min and max column, min and max row (inclusive)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def sample_first_prompts(masks: Sequence[np.ndarray], rng: np.random.Generator, transform: ImageTransform,
                         box_probability: float = 0.5, box_noise: float = 0.1,
                         box_noise_cap: float = 20.0) -> FirstPrompts:
    """A point or a jittered box for each (H, W) bool mask of one image.

    Args:
        masks: the objects' non-empty masks, at the original image size.
        rng: the source of all random draws.
        transform: the model's transform; prompts come back in its input frame.
        box_probability: chance that an object gets a box rather than a point.
        box_noise: standard deviation of each box coordinate's noise, as a fraction of the box side (width for
            x, height for y) in the input frame.
        box_noise_cap: largest offset of a box coordinate, in pixels of the input frame.
    """
    original_size = (int(masks[0].shape[0]), int(masks[0].shape[1]))
    # Where the image lies in the input frame (SAM: the resized image; SAM 2: the whole square).
    width, height = transform.apply_coords(np.array([original_size[1], original_size[0]], dtype=np.float64),
                                           original_size)
    use_box = rng.random(len(masks)) < box_probability
    points, boxes = [], []
    for mask, boxed in zip(masks, use_box):
        if boxed:
            box = transform.apply_boxes(mask_box(mask), original_size)[0]
            sides = np.array([box[2] - box[0], box[3] - box[1]] * 2)
            offsets = np.clip(rng.normal(0.0, 1.0, 4) * box_noise * sides, -box_noise_cap, box_noise_cap)
            x0, y0, x1, y1 = np.clip(box + offsets, 0, [width - 1, height - 1, width - 1, height - 1])
            boxes.append([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)])
        else:
            ys, xs = np.nonzero(mask)
            pick = int(rng.integers(len(xs)))
            points.append(transform.apply_coords(np.array([xs[pick], ys[pick]], dtype=np.float64), original_size))
    return FirstPrompts(np.flatnonzero(~use_box), np.array(points, dtype=np.float32).reshape(-1, 2),
                        np.flatnonzero(use_box), np.array(boxes, dtype=np.float32).reshape(-1, 4))


def sample_correction_points(low_res_logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                             rng: np.random.Generator, input_side: int,
                             threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One point per object from the error region of its prediction.

    Args:
        low_res_logits: (N, S, S) the previous prediction's logits.
        targets: (N, S, S) bool ground truth in the same frame.
        valid: (S, S) bool, the pixels that show the image (no points on padding).
        rng: the source of the random draws (one uniform number per object).
        input_side: side of the square model input, the frame of the returned coordinates.
        threshold: logit above which a pixel is predicted in the mask.

    Returns:
        coords (N, 2) x, y in the input frame, at the centre of the chosen low-res pixel, and labels (N,):
        1 on a false negative, 0 on a false positive, -1 (padding point at 0, 0) where there is no error.
    """
    count, side = low_res_logits.shape[0], low_res_logits.shape[-1]
    predicted = low_res_logits > threshold
    false_negative = (targets & ~predicted & valid).flatten(1)  # (N, S*S)
    error = false_negative | (predicted & ~targets & valid).flatten(1)
    errors = error.sum(dim=1)
    uniforms = torch.as_tensor(rng.random(count), device=error.device)
    chosen = torch.minimum((uniforms * errors).long(), (errors - 1).clamp(min=0))  # rank among the errors
    index = (error.cumsum(dim=1) <= chosen[:, None]).sum(dim=1).clamp(max=side * side - 1)
    scale = input_side / side
    coords = torch.stack([index % side, index // side], dim=1).to(torch.float32)
    coords = (coords + 0.5) * scale - 0.5  # centre of the low-res pixel's block of input pixels
    labels = false_negative.gather(1, index[:, None])[:, 0].long()
    has_error = errors > 0
    coords = torch.where(has_error[:, None], coords, torch.zeros_like(coords))
    labels = torch.where(has_error, labels, torch.full_like(labels, PADDING_LABEL))
    return coords, labels
