"""SAM's interactive training recipe on one image: the loss of up to ``objects_per_image`` objects that share the
image's embedding, each through ``FinetuneConfig.decoder_passes`` decoder passes.

Design notes: docs/finetune.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sam_core.finetune.config import FinetuneConfig
from sam_core.finetune.losses import sam_loss
from sam_core.finetune.prompt_sampler import sample_correction_points, sample_first_prompts
from sam_core.interface import ImageFeatures, PromptableSegmenter, Prompts

CORRECTION = "point"
MASK_ONLY = "mask"


@dataclass
class ImageLoss:
    """Loss of one image's objects: ``total`` carries the gradient; ``mask`` and ``iou`` are its two parts."""

    total: torch.Tensor
    mask: float
    iou: float
    objects: int


def pass_schedule(config: FinetuneConfig, rng: np.random.Generator) -> list[str]:
    """The kinds of the passes after the first: the correction passes in order, a mask-only pass last, and any
    further mask-only passes at random places among the corrections."""
    passes = [CORRECTION] * config.correction_points
    for _ in range(config.mask_only_iterations - 1):
        passes.insert(int(rng.integers(len(passes) + 1)), MASK_ONLY)
    return passes + [MASK_ONLY] * min(config.mask_only_iterations, 1)


def image_loss(model: PromptableSegmenter, features: ImageFeatures, masks: Sequence[np.ndarray],
               config: FinetuneConfig, rng: np.random.Generator) -> ImageLoss:
    """The recipe's loss for the (H, W) bool ``masks`` of one image whose ``features`` (batch of one) the
    model's encoder computed. Draws every random choice from ``rng``."""
    transform = model.transform
    device = model.device
    prepared = model.prepare_image(features)
    targets, valid = transform.masks_to_low_res(torch.as_tensor(np.stack(masks), device=device),
                                                model.mask_input_size)
    first = sample_first_prompts(masks, rng, transform, config.box_probability, config.box_noise,
                                 config.box_noise_cap * transform.target_length)
    schedule = pass_schedule(config, rng)
    groups = []
    if len(first.point_objects):
        points = torch.as_tensor(first.points, device=device)[:, None]
        groups.append((first.point_objects, Prompts(points, torch.ones(points.shape[:2], dtype=torch.long,
                                                                           device=device))))
    if len(first.box_objects):
        groups.append((first.box_objects, Prompts(boxes=torch.as_tensor(first.boxes, device=device))))
    total = mask_sum = iou_sum = 0.0
    for objects, prompts in groups:
        group_targets = targets[torch.as_tensor(objects, device=device)]
        prediction = model.decode(prepared, prompts, multimask_output=True)
        for next_pass in [*schedule, None]:
            logits, iou_predictions = prediction.low_res_logits, prediction.iou_predictions
            terms = sam_loss(logits, iou_predictions, group_targets, valid)
            total = total + terms.total * len(objects)
            mask_sum += terms.mask.item() * len(objects)
            iou_sum += terms.iou.item() * len(objects)
            if next_pass is None:
                break
            best = iou_predictions.argmax(dim=1)
            previous = logits[torch.arange(len(objects), device=device), best].detach()
            if next_pass == CORRECTION:
                coords, labels = sample_correction_points(previous, group_targets, valid, rng,
                                                          transform.target_length)
                prompts = _with_point(prompts, coords, labels)
            prompts = Prompts(prompts.point_coords, prompts.point_labels, prompts.boxes, previous[:, None])
            prediction = model.decode(prepared, prompts, multimask_output=False)
    count = len(masks) * config.decoder_passes
    return ImageLoss(total / count, mask_sum / count, iou_sum / count, len(masks))


def _with_point(prompts: Prompts, coords: torch.Tensor, labels: torch.Tensor) -> Prompts:
    """``prompts`` with one more point per prompt set."""
    coords, labels = coords[:, None], labels[:, None]
    if prompts.point_coords is not None:
        coords = torch.cat([prompts.point_coords, coords.to(prompts.point_coords.dtype)], dim=1)
        labels = torch.cat([prompts.point_labels, labels.to(prompts.point_labels.dtype)], dim=1)
    return Prompts(coords, labels, prompts.boxes, prompts.mask_input)
