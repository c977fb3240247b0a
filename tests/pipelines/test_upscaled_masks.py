"""Pixel counts and boxes of thresholded upscaled logits from low-res cell bounds (sam_core.pipelines.upscaled_masks)
against thresholding torch's upscaled logits, and the upscaling matrices against ``upscale_logits``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sam_core.layers.mask_stability import count_true
from sam_core.pipelines import upscaled_masks
from sam_core.pipelines.masks import batched_mask_to_box
from sam_core.pipelines.upscaled_masks import UpscaledThresholds
from sam_core.transforms import ImageTransform, ResizeLongestSide, StretchToSquare

# (transform, low-res side, input size, original size)
GEOMETRIES = [
    pytest.param(ResizeLongestSide(1024), 256, (683, 1024), (1200, 1800), id="photo"),
    pytest.param(ResizeLongestSide(1024), 256, (1024, 768), (400, 300), id="downscaled"),
    pytest.param(ResizeLongestSide(1000), 256, (750, 1000), (300, 400), id="side-not-dividing"),
    pytest.param(ResizeLongestSide(256), 64, (171, 256), (180, 270), id="vit_tiny"),
    pytest.param(ResizeLongestSide(256), 64, (3, 256), (7, 640), id="thin"),
    pytest.param(StretchToSquare(1024), 256, (1200, 1800), (1200, 1800), id="sam2"),
    pytest.param(StretchToSquare(256), 64, (50, 90), (50, 90), id="sam2-small"),
]
THRESHOLDS = [1.0, 0.0, -1.0, 0.25]


def smooth_logits(count: int, side: int, scale: float, seed: int) -> torch.Tensor:
    """Blurred noise with standard deviation ``scale``: blobs with gentle slopes, about half above 0."""
    fields = torch.randn(count, 1, side, side, generator=torch.Generator().manual_seed(seed))
    blur = side // 8 | 1
    for _ in range(2):
        fields = F.avg_pool2d(F.pad(fields, [blur // 2] * 4, mode="reflect"), blur, 1)
    return (fields / fields.std() * scale)[:, 0]


def trained_like_logits(count: int, side: int, seed: int) -> torch.Tensor:
    """Logits shaped like a trained model's (the shapes model's, measured): saturating at about +-15, crossing
    0 with a slope of about 3 per low-res pixel."""
    return 15 * torch.tanh(smooth_logits(count, side, side / 64, seed))


def test_field_kinds() -> None:
    """The synthetic fields are what they claim: trained-like ones steep, the others gentle or noisy."""
    for fields, slope in ((trained_like_logits(4, 64, 0), (2, 5)), (trained_like_logits(4, 256, 0), (2, 5)),
                          (smooth_logits(4, 256, 4.0, 0), (0, 0.5))):
        steps = (fields[:, 1:] - fields[:, :-1]).abs()[(fields[:, 1:] > 0) != (fields[:, :-1] > 0)]
        assert slope[0] < steps.median() < slope[1]
    noisy = torch.randn(4, 64, 64) > 0
    assert (noisy[:, 1:] != noisy[:, :-1]).float().mean() > 0.4


TRAINED = slice(0, 8)  # the rows of ``fields`` that resemble a trained model's logits


def fields(side: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    steps = torch.zeros(4, side, side)
    steps[0, side // 3:], steps[1, :, side // 2:], steps[2] = 1.0, -1.0, 0.25  # exactly at thresholds
    steps[3, : side // 2, : side // 3] = 5.0
    return torch.cat([
        trained_like_logits(8, side, 0),
        smooth_logits(4, side, 4.0, 2),  # gentle slopes: many pixels near the thresholds
        0.1 * torch.randn(4, side, side, generator=generator),  # random weights give noise like this
        steps,
        torch.full((1, side, side), -30.0),  # empty mask
    ])


@pytest.mark.parametrize(("transform", "side", "input_size", "original_size"), GEOMETRIES)
def test_upscale_matrices_are_the_upscaling(transform: ImageTransform, side: int, input_size: tuple[int, int],
                                            original_size: tuple[int, int]) -> None:
    low_res = smooth_logits(3, side, 4.0, 5)
    rows, cols = transform.upscale_matrices(side, input_size, original_size)
    exact = torch.from_numpy(rows) @ low_res.double() @ torch.from_numpy(cols).T
    torch_logits = transform.upscale_logits(low_res[:, None], input_size, original_size)[:, 0]
    assert exact.shape == torch_logits.shape
    error = (exact - torch_logits.double()).abs().max().item()
    assert error <= upscaled_masks.RELATIVE_ERROR * low_res.abs().max().item()


@pytest.mark.parametrize(("transform", "side", "input_size", "original_size"), GEOMETRIES)
def test_counts_and_boxes_equal_thresholded_upscaled_logits(transform: ImageTransform, side: int,
                                                            input_size: tuple[int, int],
                                                            original_size: tuple[int, int]) -> None:
    low_res = fields(side)
    geometry = UpscaledThresholds(*transform.upscale_matrices(side, input_size, original_size))
    logits = transform.upscale_logits(low_res[:, None], input_size, original_size)[:, 0]
    bounds = geometry.bounds(low_res)
    counts, counted = geometry.count_above(bounds, THRESHOLDS)
    expected_counts = torch.stack([count_true(logits > tau) for tau in THRESHOLDS], dim=1)
    assert torch.equal(counts[counted], expected_counts[counted].long())
    for tau in THRESHOLDS:
        boxes, boxed = geometry.box_above(bounds, tau)
        assert torch.equal(boxes[boxed], batched_mask_to_box(logits > tau)[boxed])
        assert boxed[TRAINED].float().mean() >= 0.75
    # The bounds decide nearly everything: unresolved masks are the exception, not the rule.
    assert counted[TRAINED].float().mean() >= 0.75


def test_non_finite_logits_give_unresolved_counts_and_torch_boxes() -> None:
    transform = ResizeLongestSide(256)
    geometry = UpscaledThresholds(*transform.upscale_matrices(64, (171, 256), (180, 270)))
    low_res = trained_like_logits(3, 64, 3)
    low_res[0, 10, 10], low_res[1, 30, 40], low_res[2, 0, 0] = torch.nan, torch.inf, -torch.inf
    bounds = geometry.bounds(low_res)
    _, counted = geometry.count_above(bounds, [1.0, -1.0])
    assert not counted.any()
    boxes, boxed = geometry.box_above(bounds, 0.0)
    logits = transform.upscale_logits(low_res[:, None], (171, 256), (180, 270))[:, 0]
    assert torch.equal(boxes[boxed], batched_mask_to_box(logits > 0.0)[boxed])


def test_a_larger_error_bound_leaves_masks_unresolved_not_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    transform = ResizeLongestSide(256)
    geometry = UpscaledThresholds(*transform.upscale_matrices(64, (171, 256), (180, 270)))
    low_res = fields(64)
    logits = transform.upscale_logits(low_res[:, None], (171, 256), (180, 270))[:, 0]
    monkeypatch.setattr(upscaled_masks, "RELATIVE_ERROR", 0.05)
    bounds = geometry.bounds(low_res)
    counts, counted = geometry.count_above(bounds, [0.0])
    boxes, boxed = geometry.box_above(bounds, 0.0)
    assert not counted.all() and not boxed.all()
    assert torch.equal(counts[counted, 0], count_true(logits > 0.0)[counted].long())
    assert torch.equal(boxes[boxed], batched_mask_to_box(logits > 0.0)[boxed])
