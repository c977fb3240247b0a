"""SAM's training loss (the SAM paper, section 3 and appendix): focal and dice loss on the mask logits in a
20:1 ratio, only the best of the output masks counting, and the IoU head regressed (mean squared error) onto
the true IoU of each output mask.

Everything is computed on the low-res logits against ground truth brought into their frame
(``ImageTransform.masks_to_low_res``); pixels of the padding are left out of every sum and mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0
IOU_WEIGHT = 1.0
FOCAL_ALPHA = 0.25  # the focal loss's usual class balance and focusing exponent (RetinaNet's)
FOCAL_GAMMA = 2.0
DICE_SMOOTHING = 1.0


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, alpha: float = FOCAL_ALPHA,
               gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Sigmoid focal loss averaged over the valid pixels: (..., H, W) logits and targets -> (...).

    Per pixel: -alpha_t * (1 - p_t) ** gamma * log(p_t), with p_t the predicted probability of the true class
    and alpha_t = alpha for foreground, 1 - alpha for background.
    """
    targets = targets.to(logits.dtype)
    probabilities = logits.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_true = probabilities * targets + (1 - probabilities) * (1 - targets)
    alpha_true = alpha * targets + (1 - alpha) * (1 - targets)
    per_pixel = alpha_true * (1 - p_true) ** gamma * cross_entropy
    weights = valid.to(logits.dtype)
    return (per_pixel * weights).sum(dim=(-2, -1)) / weights.sum().clamp(min=1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
              smoothing: float = DICE_SMOOTHING) -> torch.Tensor:
    """1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s) over the valid pixels, p = sigmoid(logits): (...)."""
    weights = valid.to(logits.dtype)
    probabilities = logits.sigmoid() * weights
    targets = targets.to(logits.dtype) * weights
    overlap = (probabilities * targets).sum(dim=(-2, -1))
    total = probabilities.sum(dim=(-2, -1)) + targets.sum(dim=(-2, -1))
    return 1 - (2 * overlap + smoothing) / (total + smoothing)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """IoU of the masks ``logits > threshold`` with the targets over the valid pixels (1 when both are empty)."""
    predicted = (logits > threshold) & valid
    targets = targets & valid
    intersection = (predicted & targets).sum(dim=(-2, -1))
    union = (predicted | targets).sum(dim=(-2, -1))
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union, dtype=torch.float32))


@dataclass
class LossTerms:
    """The loss of a batch of prompts and its two parts (scalars)."""

    total: torch.Tensor
    mask: torch.Tensor  # focal_weight * focal + dice_weight * dice of the best output, mean over prompts
    iou: torch.Tensor  # mean squared error of the IoU predictions, mean over prompts and outputs


def sam_loss(logits: torch.Tensor, iou_predictions: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
             focal_weight: float = FOCAL_WEIGHT, dice_weight: float = DICE_WEIGHT,
             iou_weight: float = IOU_WEIGHT) -> LossTerms:
    """SAM's loss for B prompts with M output masks each.

    Args:
        logits: (B, M, S, S) low-res mask logits.
        iou_predictions: (B, M) the IoU head's outputs.
        targets: (B, S, S) bool ground truth in the logits' frame.
        valid: (S, S) bool, the pixels that show the image.
        focal_weight, dice_weight: weights of the two mask losses (SAM: 20 and 1).
        iou_weight: weight of the IoU head's loss (SAM: 1).
    """
    targets = targets[:, None].expand_as(logits)
    per_output = focal_weight * focal_loss(logits, targets, valid) + dice_weight * dice_loss(logits, targets, valid)
    mask = per_output.min(dim=1).values.mean()
    true_iou = mask_iou(logits.detach(), targets, valid)
    iou = F.mse_loss(iou_predictions, true_iou.to(iou_predictions.dtype))
    return LossTerms(mask + iou_weight * iou, mask, iou)
