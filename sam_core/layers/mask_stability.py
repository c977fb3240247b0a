"""Stability score of mask logits: how little a mask changes when its threshold moves (SAM's generator, EdgeSAM's
stability scoring)."""

from __future__ import annotations

import torch


def count_true(masks: torch.Tensor) -> torch.Tensor:
    """Number of True pixels of each boolean mask (..., H, W), as int32.

    Sums bytes in blocks of 255 with a uint8 accumulator (no overflow), then adds the block sums: several
    times faster on CPU than a direct int32 sum over a boolean tensor.
    """
    flat = masks.reshape(-1, masks.shape[-2] * masks.shape[-1]).view(torch.uint8)
    block = 255
    whole = flat.shape[1] // block * block
    blocks = flat[:, :whole].view(flat.shape[0], -1, block).sum(-1, dtype=torch.uint8)
    counts = blocks.sum(-1, dtype=torch.int32) + flat[:, whole:].sum(-1, dtype=torch.int32)
    return counts.reshape(masks.shape[:-2])


def calculate_stability_score(masks: torch.Tensor, mask_threshold: float,
                              threshold_offset: float) -> torch.Tensor:
    """IoU of the masks binarised at ``threshold +- offset``; the stricter mask lies inside the looser one,
    so the IoU is a ratio of pixel counts. Counts are int32 and divided as the reference does."""
    strict = count_true(masks > mask_threshold + threshold_offset)
    loose = count_true(masks > mask_threshold - threshold_offset)
    return strict / loose
