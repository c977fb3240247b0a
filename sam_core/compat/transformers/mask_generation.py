"""transformers' ``pipeline("mask-generation")`` on sam_core: its parameters, defaults and output, for every
model family sam_core loads.

The pipeline's semantics are transformers', not Meta's generator's (docs/compat-transformers.md): the mask
candidates of all crops go through one NMS keyed on their predicted IoU, with no per-crop NMS; the stability
filter keeps scores strictly above its threshold. The work is sam_core's: masks are scored and boxed from
their low-res logits (``sam_core.pipelines.upscaled_masks``) and upscaled only for the masks NMS keeps."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sam_core.compat.transformers.images import SamImageProcessor, image_processor_for, load_image
from sam_core.compat.transformers.modeling import SamModel, TransformersScores
from sam_core.fast_paths import fast_paths_enabled
from sam_core.interface import PreparedImage, PromptableSegmenter, Prompts
from sam_core.io.checkpoints import load_sam
from sam_core.layers.mask_stability import count_true
from sam_core.pipelines.masks import (
    batched_mask_to_box,
    box_nms,
    clean_low_res_logits,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle_pytorch,
    uncrop_boxes_xyxy,
    uncrop_masks,
)
from sam_core.pipelines.upscaled_masks import UpscaledThresholds

TASK = "mask-generation"
DEFAULTS: dict[str, Any] = {
    "points_per_batch": 64, "points_per_crop": 32, "crops_n_layers": 0, "crop_overlap_ratio": 512 / 1500,
    "crop_n_points_downscale_factor": 1, "pred_iou_thresh": 0.88, "stability_score_thresh": 0.95,
    "stability_score_offset": 1, "mask_threshold": 0.0, "crops_nms_thresh": 0.7, "output_rle_mask": False,
    "output_bboxes_mask": False, "max_hole_area": None, "max_sprinkle_area": None, "timeout": None,
}
"""transformers' parameters of the mask-generation pipeline, with its defaults."""
# Accepted for transformers' signature; they change nothing here.
_IGNORED = {"num_workers", "batch_size"}
# Prompts decoded together: few enough for the decoder's activations to stay in cache.
_DECODER_BATCH = 4
# Masks whose cells the thresholds cross more than this are scored from torch's upscaled logits instead.
_MAX_CROSSED_FRACTION = 0.3
# Upper bound on the float32 logits upscaled at once.
_UPSCALE_CHUNK_BYTES = 1 << 27


@dataclass
class _Candidates:
    """Masks of one crop that passed the filters: low-res logits (N, rows, cols) (the rows and columns that
    upscaling reads), predicted IoU (N,), boxes (N, 4) XYXY in image pixels."""

    low_res: torch.Tensor
    scores: torch.Tensor
    boxes: torch.Tensor
    crop_box: list[int]
    input_size: tuple[int, int]


def pipeline(task: str = TASK, model: Any = None, device: str | int | torch.device | None = None,
             image_processor: SamImageProcessor | None = None, dtype: torch.dtype | None = None,
             torch_dtype: torch.dtype | None = None, **defaults: Any) -> MaskGenerationPipeline:
    """transformers' ``pipeline(task="mask-generation", model=...)``, on sam_core.

    Args:
        task (str): "mask-generation" (the only task).
        model: Anything ``sam_core.load_sam`` reads (a hub id such as "facebook/sam-vit-base", a
            ``save_pretrained`` folder, which is read and never downloaded, a Meta checkpoint, a registry name),
            a :class:`SamModel`, or a sam_core model; any family.
        device: Where the model runs ("cpu", "cuda", a CUDA index; default CPU).
        image_processor: The image processor; default: transformers' for the model's family (SAM's, SAM 2's),
            the model's own preprocessing for families transformers does not have.
        dtype, torch_dtype: The model's dtype (default: the checkpoint's).
        **defaults: Defaults for the call's parameters (``points_per_batch``...).

    Returns:
        (MaskGenerationPipeline): Call it on images.

    Raises:
        ValueError: If the task is another, no model is given, or a parameter is unknown.
        sam_core.errors.CheckpointError: If the weights cannot be found or read.
    """
    if task != TASK:
        raise ValueError(f"sam_core.compat.transformers.pipeline supports task={TASK!r} only, got {task!r}")
    if model is None:
        raise ValueError("give model= (a hub id, a save_pretrained folder, a checkpoint file or a registry name)")
    if isinstance(device, int):
        device = "cpu" if device < 0 else f"cuda:{device}"
    if isinstance(model, SamModel):
        model = model.model
    if not isinstance(model, PromptableSegmenter):
        if not isinstance(model, (str, os.PathLike)):
            raise ValueError(f"model must be a checkpoint source, a SamModel or a sam_core model, got "
                             f"{type(model).__name__}")
        model = load_sam(model, device=device, dtype=dtype or torch_dtype)
    elif device is not None or dtype is not None or torch_dtype is not None:
        model = model.to(device=device, dtype=dtype or torch_dtype)
    return MaskGenerationPipeline(model, image_processor or image_processor_for(model), **defaults)


class MaskGenerationPipeline:
    """Masks for everything in an image: transformers' ``MaskGenerationPipeline`` on a sam_core model.

    Args:
        model (PromptableSegmenter): Any family's model.
        image_processor (SamImageProcessor): How images become encoder inputs.
        **defaults: Defaults for the call's parameters.
    """

    def __init__(self, model: PromptableSegmenter, image_processor: SamImageProcessor, **defaults: Any) -> None:
        self.model = model
        self.image_processor = image_processor
        self.defaults = self._parameters(defaults)
        self.task = TASK
        self._geometries: dict[tuple, UpscaledThresholds] = {}

    @staticmethod
    def _parameters(given: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(DEFAULTS) - _IGNORED)
        if unknown:
            raise ValueError(f"unknown mask-generation parameter(s) {', '.join(unknown)}; known: {sorted(DEFAULTS)}")
        return {name: value for name, value in given.items() if name in DEFAULTS}

    def __call__(self, image: Any, **parameters: Any) -> dict[str, Any] | list[dict[str, Any]]:
        """Generate masks.

        Args:
            image: A PIL image, a path or URL string, a numpy array (HxW, HxWx3 or HxWx4) or a tensor, or a
                list of them.
            points_per_batch (int or None): Points decoded per chunk (64; None: all); results do not depend on it.
            points_per_crop (int): Points along each side of a crop's grid (32).
            crops_n_layers (int): Crop layers beyond the whole image; layer i has (2**i)**2 crops (0).
            crop_overlap_ratio (float): Overlap of neighbouring crops at the first layer, as a fraction of the
                image's short side (512 / 1500).
            crop_n_points_downscale_factor (int): Layer i has ``points_per_crop / factor**i`` points a side (1).
            pred_iou_thresh (float): Keep masks whose predicted IoU is > this (0.88; 0: off).
            stability_score_thresh (float): Keep masks whose stability score is > this (0.95; 0: off).
            stability_score_offset (float): Offset of the stability score's two thresholds (1).
            mask_threshold (float): Logit above which a pixel is in a mask (0).
            crops_nms_thresh (float): Box IoU above which NMS drops the lower-scored mask (0.7).
            output_rle_mask (bool): Also return ``rle_mask`` (False).
            output_bboxes_mask (bool): Also return ``bounding_boxes`` (False).
            max_hole_area, max_sprinkle_area (float or None): Fill holes / remove specks of at most this many
                low-res pixels before upscaling, as SAM 2's predictor does (None: off).
            timeout (float or None): Seconds to wait for an image URL.

        Returns:
            (dict or list of dict): Per image: ``masks`` (list of (H, W) bool tensors, best score first),
                ``scores`` ((N,) float32 tensor), and ``rle_mask`` (list of ``{"size": [H, W], "counts": [...]}``)
                and ``bounding_boxes`` ((N, 4) int64 XYXY tensor) when asked for.

        Raises:
            ValueError: If an image cannot be read, or a parameter is unknown or out of range.
        """
        options = {**DEFAULTS, **self.defaults, **self._parameters(parameters)}
        if isinstance(image, (list, tuple)):
            return [self._generate(item, options) for item in image]
        return self._generate(image, options)

    @torch.inference_mode()
    def _generate(self, image: Any, options: dict[str, Any]) -> dict[str, Any]:
        grids = _check_options(options)
        array = load_image(image, options["timeout"])
        image_size = array.shape[:2]
        crop_boxes, layers = generate_crop_boxes(image_size, options["crops_n_layers"], options["crop_overlap_ratio"])
        candidates = [self._process_crop(array, box, grids[layer], options) for box, layer in zip(crop_boxes, layers)
                      if box[2] > box[0] and box[3] > box[1]]
        candidates = [part for part in candidates if len(part.scores)]
        if not candidates:
            masks, scores, boxes = [], torch.zeros(0), torch.zeros((0, 4), dtype=torch.int64)
        else:
            scores = torch.cat([part.scores for part in candidates])
            boxes = torch.cat([part.boxes for part in candidates])
            keep = box_nms(boxes, scores.float(), options["crops_nms_thresh"])
            masks = self._draw(candidates, keep, image_size, options["mask_threshold"])
            scores, boxes = scores[keep], boxes[keep]
        output: dict[str, Any] = {"masks": masks, "scores": scores}
        if options["output_rle_mask"]:
            output["rle_mask"] = mask_to_rle_pytorch(torch.stack(masks)) if masks else []
        if options["output_bboxes_mask"]:
            output["bounding_boxes"] = boxes
        return output

    def _process_crop(self, image: np.ndarray, crop_box: list[int], grid: torch.Tensor,
                      options: dict[str, Any]) -> _Candidates:
        model = self.model
        x0, y0, x1, y1 = crop_box
        crop_size = (y1 - y0, x1 - x0)
        pixels = self.image_processor.pixel_values(np.ascontiguousarray(image[y0:y1, x0:x1]))
        prepared = model.prepare_image(model.encode(pixels.to(model.device, model.dtype)))
        # In float32, as transformers computes the grid's points in the crop and in the model's frame.
        points = grid * torch.tensor(crop_size[::-1])
        coords = self.image_processor.scale_coordinates(points, crop_size).to(model.device)
        input_size = tuple(model.transform.input_size(crop_size))
        cleans = bool(options["max_hole_area"]) or bool(options["max_sprinkle_area"])
        # The cell bounds model float32 rounding: other dtypes are upscaled with torch, as transformers does.
        exact_cells = fast_paths_enabled() and model.dtype == torch.float32 and not cleans
        geometry = self._geometry(input_size, crop_size) if exact_cells else None
        extent = None if geometry is None else geometry.low_res_extent
        low_res, scores = self._decode(prepared, coords, options["pred_iou_thresh"], extent)
        if cleans:
            low_res = clean_low_res_logits(low_res, options["mask_threshold"], options["max_hole_area"] or 0.0,
                                           options["max_sprinkle_area"] or 0.0)
        keep, boxes = self._filter(low_res, geometry, input_size, crop_size, options)
        boxes = boxes[keep]
        near_edge = is_box_near_crop_edge(boxes, crop_box, [0, 0, image.shape[1], image.shape[0]])
        keep = keep.nonzero().squeeze(1)[~near_edge]
        return _Candidates(low_res[keep.to(low_res.device)].cpu(), scores[keep.to(scores.device)].cpu(),
                           uncrop_boxes_xyxy(boxes[~near_edge], crop_box), crop_box, input_size)

    def _decode(self, prepared: PreparedImage, coords: torch.Tensor, pred_iou_thresh: float,
                extent: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits and predicted IoU of every mask output (point-major, as transformers flattens
        them) whose IoU passes ``pred_iou_thresh``; masks are drawn only for those."""
        model = self.model
        options = model.generator_defaults.decode_options
        low_res, scores = [], []
        for start in range(0, len(coords), _DECODER_BATCH):
            part = coords[start:start + _DECODER_BATCH, None, :]
            labels = torch.ones(part.shape[:2], dtype=torch.int64, device=part.device)
            scored = TransformersScores.score(model, prepared, Prompts(point_coords=part, point_labels=labels), True,
                                              **options)
            iou = scored.iou_predictions
            keep = iou > pred_iou_thresh if pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
            rows = keep.any(dim=1).nonzero().squeeze(1)
            if not len(rows):
                continue
            drawn = scored.take(rows).draw(extent)
            low_res.append(drawn[keep[rows]])
            scores.append(iou[rows][keep[rows]])
        if not low_res:
            side = model.mask_input_size
            empty = torch.zeros((0, side, side), device=model.device, dtype=model.dtype)
            return empty, empty.new_zeros(0)
        return torch.cat(low_res), torch.cat(scores)

    def _filter(self, low_res: torch.Tensor, geometry: UpscaledThresholds | None, input_size: tuple[int, int],
                crop_size: tuple[int, int], options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Which masks pass the stability filter (strictly above its threshold, as transformers), and the boxes
        (N, 4) of all masks in crop pixels (valid where kept), as transformers computes them from the masks
        upscaled to the crop."""
        count = len(low_res)
        threshold, offset = float(options["mask_threshold"]), float(options["stability_score_offset"])
        stability_thresh = float(options["stability_score_thresh"])
        levels = [threshold + offset, threshold - offset] if stability_thresh > 0 else []
        stability = torch.zeros(count)
        boxes = torch.zeros((count, 4), dtype=torch.int64)
        plain = torch.ones(count, dtype=torch.bool)
        if geometry is not None and count:
            bounds = geometry.bounds(low_res)
            plain = geometry.crossed_fraction(bounds, [*levels, threshold]) > _MAX_CROSSED_FRACTION
            if levels:
                by_cells = (~plain).nonzero().squeeze(1)
                counts, resolved = geometry.count_above(bounds.take(by_cells), levels)
                stability[by_cells] = counts[:, 0].int() / counts[:, 1].int()
                plain[by_cells[~resolved]] = True
        if plain.any():
            plain_stability, plain_boxes = self._upscaled_scores(low_res[plain.to(low_res.device)], input_size,
                                                                 crop_size, threshold, offset)
            stability[plain], boxes[plain] = plain_stability, plain_boxes
        keep = stability > stability_thresh if stability_thresh > 0 else torch.ones(count, dtype=torch.bool)
        if geometry is not None and count:
            by_cells = (keep & ~plain).nonzero().squeeze(1)
            cell_boxes, resolved = geometry.box_above(bounds.take(by_cells), threshold)
            unresolved = by_cells[~resolved]
            if len(unresolved):
                cell_boxes[~resolved] = self._upscaled_scores(low_res[unresolved.to(low_res.device)], input_size,
                                                              crop_size, threshold, offset)[1]
            boxes[by_cells] = cell_boxes
        return keep, boxes

    def _upscaled_scores(self, low_res: torch.Tensor, input_size: tuple[int, int], crop_size: tuple[int, int],
                         threshold: float, offset: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Stability scores and boxes from torch's upscaled logits, in chunks of bounded memory."""
        chunk = max(1, _UPSCALE_CHUNK_BYTES // (4 * crop_size[0] * crop_size[1]))
        stability, boxes = [], []
        for start in range(0, len(low_res), chunk):
            logits = self._upscaled(low_res[start:start + chunk], input_size, crop_size)
            stability.append(count_true(logits > threshold + offset) / count_true(logits > threshold - offset))
            boxes.append(batched_mask_to_box(logits > threshold))
        return torch.cat(stability).cpu(), torch.cat(boxes).cpu()

    def _upscaled(self, low_res: torch.Tensor, input_size: tuple[int, int], crop_size: tuple[int, int]) -> torch.Tensor:
        """Crop-sized logits (N, H, W) of low-res logits (N, S, S) or of their leading rows and columns."""
        side = self.model.mask_input_size
        if low_res.shape[1:] != (side, side):
            # The rows and columns past those held are never read: upscaling multiplies them by zero.
            low_res = torch.nn.functional.pad(low_res, (0, side - low_res.shape[2], 0, side - low_res.shape[1]))
        return self.model.postprocess_masks(low_res[:, None].to(self.model.device), input_size, crop_size)[:, 0]

    def _geometry(self, input_size: tuple[int, int], crop_size: tuple[int, int]) -> UpscaledThresholds:
        """The cells of the upscaling to a crop of this size (kept: crops of a layer share their size)."""
        geometry = self._geometries.get((input_size, crop_size))
        if geometry is None:
            matrices = self.model.upscale_matrices(self.model.mask_input_size, input_size, crop_size)
            geometry = self._geometries[(input_size, crop_size)] = UpscaledThresholds(*matrices)
        return geometry

    def _draw(self, candidates: list[_Candidates], keep: torch.Tensor, image_size: tuple[int, int],
              mask_threshold: float) -> list[torch.Tensor]:
        """(H, W) bool masks of the kept candidates, in ``keep``'s order."""
        owner = torch.cat([torch.full((len(part.scores),), i) for i, part in enumerate(candidates)])
        offsets = np.cumsum([0] + [len(part.scores) for part in candidates])
        masks: list[torch.Tensor | None] = [None] * len(keep)
        for index, part in enumerate(candidates):
            positions = (owner[keep] == index).nonzero().squeeze(1)
            if not len(positions):
                continue
            rows = keep[positions] - int(offsets[index])
            x0, y0, x1, y1 = part.crop_box
            chunk = max(1, _UPSCALE_CHUNK_BYTES // (4 * (y1 - y0) * (x1 - x0)))
            for start in range(0, len(rows), chunk):
                logits = self._upscaled(part.low_res[rows[start:start + chunk]], part.input_size, (y1 - y0, x1 - x0))
                drawn = uncrop_masks(logits > mask_threshold, part.crop_box, *image_size).cpu()
                for position, mask in zip(positions[start:start + chunk].tolist(), drawn):
                    masks[position] = mask
        return masks  # type: ignore[return-value]


def _point_grid(per_side: int) -> torch.Tensor:
    """(n*n, 2) x, y centres of an n x n grid over [0, 1]^2, row by row, as transformers builds it in float32."""
    half_cell = 1 / (2 * per_side)
    centres = torch.linspace(half_cell, 1 - half_cell, per_side)
    return torch.stack(torch.meshgrid(centres, centres, indexing="xy"), dim=-1).reshape(-1, 2)


def _check_options(options: dict[str, Any]) -> list[torch.Tensor]:
    """Check the parameters; return the point grid of each crop layer."""
    layers, factor, per_side = options["crops_n_layers"], options["crop_n_points_downscale_factor"], \
        options["points_per_crop"]
    if options["points_per_batch"] is not None and options["points_per_batch"] < 1:
        raise ValueError(f"points_per_batch must be >= 1 (or None: all points at once), got "
                         f"{options['points_per_batch']}")
    if layers < 0:
        raise ValueError(f"crops_n_layers must be >= 0, got {layers}")
    if factor < 1:
        raise ValueError(f"crop_n_points_downscale_factor must be >= 1, got {factor}")
    if int(per_side / factor**layers) < 1:
        raise ValueError(f"points_per_crop={per_side} leaves no points in crop layer {layers} with "
                         f"crop_n_points_downscale_factor={factor}")
    if not 0 <= options["crop_overlap_ratio"] < 1:
        raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {options['crop_overlap_ratio']}")
    for name in ("pred_iou_thresh", "stability_score_thresh", "mask_threshold", "crops_nms_thresh",
                 "stability_score_offset"):
        if not math.isfinite(float(options[name])):
            raise ValueError(f"{name} must be a finite number, got {options[name]}")
    return [_point_grid(int(per_side / factor**layer)) for layer in range(layers + 1)]
