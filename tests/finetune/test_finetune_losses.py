"""SAM's training loss against closed-form values on hand-made logits."""

from __future__ import annotations

import math

import pytest
import torch

from sam_core.finetune.losses import dice_loss, focal_loss, mask_iou, sam_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_focal_loss_matches_its_formula_pixel_by_pixel() -> None:
    # One 1x3 image: a foreground pixel at logit 2, a background pixel at logit 0, and a padding pixel.
    logits = torch.tensor([[[2.0, 0.0, 5.0]]])
    targets = torch.tensor([[[True, False, True]]])
    valid = torch.tensor([[True, True, False]])
    p = sigmoid(2.0)
    foreground = 0.25 * (1 - p) ** 2 * -math.log(p)
    background = 0.75 * 0.5**2 * math.log(2)
    assert focal_loss(logits, targets, valid).item() == pytest.approx((foreground + background) / 2, rel=1e-6)


def test_dice_loss_of_an_undecided_prediction() -> None:
    # p = 0.5 everywhere on 4 valid pixels, one of them foreground: 1 - (2 * 0.5 + 1) / (4 * 0.5 + 1 + 1).
    logits = torch.zeros((1, 2, 3))
    targets = torch.zeros((1, 2, 3), dtype=torch.bool)
    targets[0, 0, 0] = True
    valid = torch.tensor([[True, True, False], [True, True, False]])
    assert dice_loss(logits, targets, valid).item() == pytest.approx(1 - 2 / 4, rel=1e-6)


def test_mask_iou_ignores_padding_and_scores_two_empty_masks_as_one() -> None:
    logits = torch.tensor([[[1.0, 1.0, -1.0, 1.0]], [[-1.0, -1.0, -1.0, -1.0]]])
    targets = torch.tensor([[[True, False, True, True]], [[False, False, False, True]]])
    valid = torch.tensor([[True, True, True, False]])
    # First: predicted {0, 1}, target {0, 2} (pixel 3 is padding) -> 1 / 3. Second: both empty on the valid pixels.
    assert mask_iou(logits, targets, valid).tolist() == pytest.approx([1 / 3, 1.0])


def test_sam_loss_counts_the_best_output_and_regresses_every_iou() -> None:
    # Output 0 is exact (logits +-20), output 1 the inverse; the IoU head says 0.5 and 0.25.
    target = torch.tensor([[True, False], [False, False]])
    exact = torch.where(target, 20.0, -20.0)
    logits = torch.stack([exact, -exact])[None]  # (1, 2, 2, 2)
    iou_predictions = torch.tensor([[0.5, 0.25]])
    valid = torch.ones((2, 2), dtype=torch.bool)
    terms = sam_loss(logits, iou_predictions, target[None], valid)
    best = 20 * focal_loss(exact, target, valid) + dice_loss(exact, target, valid)
    assert terms.mask.item() == pytest.approx(best.item(), rel=1e-6)
    # True IoUs: 1 for the exact output, 0 for its inverse.
    assert terms.iou.item() == pytest.approx(((0.5 - 1) ** 2 + 0.25**2) / 2, rel=1e-6)
    assert terms.total.item() == pytest.approx(terms.mask.item() + terms.iou.item(), rel=1e-6)
    # Near-exact logits: the focal term is ~0 and the dice term is ~0 (only the smoothing remains).
    assert best.item() < 1e-6


def test_sam_loss_gradient_reaches_only_the_best_output() -> None:
    target = torch.zeros((1, 4, 4), dtype=torch.bool)
    target[0, :2] = True
    logits = torch.stack([torch.where(target[0], 3.0, -3.0), torch.zeros(4, 4)])[None].requires_grad_(True)
    iou_predictions = torch.tensor([[1.0, 0.0]], requires_grad=True)
    terms = sam_loss(logits, iou_predictions, target, torch.ones((4, 4), dtype=torch.bool))
    terms.mask.backward()
    assert logits.grad[0, 0].abs().sum() > 0
    assert logits.grad[0, 1].abs().sum() == 0
