"""AutomaticMaskGenerator: "segment everything" by prompting a model with a grid of points. It returns the records
of Meta's ``SamAutomaticMaskGenerator``, with the work reordered so that most of what the reference computes and
throws away is never computed.

Design notes (each step of the reordering): docs/pipelines.md."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_area

from sam_core.fast_paths import fast_paths_enabled
from sam_core.interface import PreparedImage, PromptableSegmenter, Prompts
from sam_core.io.checkpoints import load_sam
from sam_core.layers.mask_stability import calculate_stability_score
from sam_core.pipelines.masks import (
    Rle,
    area_from_rle,
    batched_mask_to_box,
    box_nms,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    clean_low_res_logits,
    coco_encode_rle,
    generate_crop_boxes,
    is_box_near_crop_edge,
    mask_to_rle_pytorch,
    remove_small_regions,
    rle_to_mask,
    uncrop_boxes_xyxy,
    uncrop_points,
)
from sam_core.pipelines.upscaled_masks import UpscaledThresholds
from sam_core.transforms import to_rgb_uint8

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
# Prompts decoded together: small enough for the decoder's activations to stay in cache.
_DECODER_BATCH = 4
# Upper bound on the float32 logits upsampled at once (the crop-sized masks of one chunk).
_UPSCALE_CHUNK_BYTES = 1 << 27
# Upper bound on the cells (see sam_core.pipelines.upscaled_masks) of the masks whose thresholds are counted at once.
_CELLS_PER_CHUNK = 1 << 22
# Masks whose cells the thresholds cross more than this (summed over the mask threshold and the two stability
# levels) are upscaled with torch instead: evaluating that many cells pixel by pixel costs more. Smooth masks
# cross a few percent of their cells, along their boundary; noise-like logits cross nearly all of them.
_MAX_CROSSED_FRACTION = 0.3


@dataclass
class _Proposals:
    """Candidate masks and what is known about them, one row per mask."""

    rles: list[Rle] = field(default_factory=list)
    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 4), dtype=torch.int64))  # XYXY
    iou_preds: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    points: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 2), dtype=torch.float64))
    stability_scores: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    crop_boxes: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 4), dtype=torch.int64))  # XYXY
    # Instead of ``rles``, until the masks are drawn: the low-res logits the masks are upscaled from,
    # (N, rows, cols) with the rows and columns that upscaling reads (all of one crop).
    low_res: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    def take(self, index: torch.Tensor) -> _Proposals:
        """Rows at ``index`` (int indices, in that order)."""
        return _Proposals(
            rles=[self.rles[i] for i in index.tolist()] if self.low_res is None else [],
            boxes=self.boxes[index], iou_preds=self.iou_preds[index],
            points=self.points[index], stability_scores=self.stability_scores[index],
            crop_boxes=self.crop_boxes[index], low_res=None if self.low_res is None else self.low_res[index],
        )

    @staticmethod
    def concat(parts: list[_Proposals]) -> _Proposals:
        # An empty part (a batch whose prompts were all filtered out) joins either kind.
        parts = [part for part in parts if len(part)]
        if not parts:
            return _Proposals()
        drawn = [part.low_res is None for part in parts]
        if any(drawn) and not all(drawn):
            raise ValueError("cannot join proposals with drawn masks and proposals without")
        return _Proposals(
            rles=[rle for part in parts for rle in part.rles],
            boxes=torch.cat([part.boxes for part in parts]),
            iou_preds=torch.cat([part.iou_preds for part in parts]),
            points=torch.cat([part.points for part in parts]),
            stability_scores=torch.cat([part.stability_scores for part in parts]),
            crop_boxes=torch.cat([part.crop_boxes for part in parts]),
            low_res=None if all(drawn) else torch.cat([part.low_res for part in parts]),
        )


class AutomaticMaskGenerator:
    """Masks for everything in an image: a grid of point prompts, then quality filters and NMS.

    Works with every model family through the model interface. Options, names and defaults are those of the
    reference's ``SamAutomaticMaskGenerator``; the quality filters left at ``None`` take the model family's
    defaults (``model.generator_defaults``: for SAM, the reference's, tuned for ViT-H). SAM 2's reference
    generator is ``SAM2AutomaticMaskGenerator``; with a SAM 2 model this one returns its records, with its
    defaults (pred_iou_thresh 0.8, stability_score_thresh 0.95, box_nms_thresh 0.7).

    Args:
        model (PromptableSegmenter): Any model family's model, e.g. from ``sam_core.load_sam``.
        points_per_side (int or None): Points along each side of the grid, so ``points_per_side**2`` prompts
            on the image (default 32). None when ``point_grids`` is given; exactly one of the two is.
        points_per_batch (int): Prompts decoded together (default 64); more is faster and uses more memory.
        pred_iou_thresh (float or None): Keep masks whose predicted IoU is above this. None: the family's
            default (SAM: 0.88, SAM 2: 0.8). 0 turns the filter off.
        stability_score_thresh (float or None): Keep masks whose stability score, the IoU between the mask
            binarised at ``mask_threshold + offset`` and at ``mask_threshold - offset``, is at least this.
            None: the family's default (0.95). 0 turns the filter off.
        stability_score_offset (float or None): The ``offset`` of the stability score, finite and >= 0. None:
            the family's default (1.0).
        box_nms_thresh (float or None): Box IoU above which duplicate masks are suppressed, within a crop.
            None: the family's default (0.7).
        crop_n_layers (int): If > 0, run again on crops of the image; layer i has ``(2**i)**2`` crops
            (default 0: the whole image only).
        crop_nms_thresh (float): Box IoU above which duplicates between crops are suppressed (default 0.7).
        crop_overlap_ratio (float): Overlap of neighbouring crops, in [0, 1), as a fraction of the image's
            short side at the first crop layer, scaled down at later layers (default 512 / 1500).
        crop_n_points_downscale_factor (int): Crop layer i uses ``points_per_side / factor**i`` points a side
            (default 1).
        point_grids (list of np.ndarray or None): Explicit point grids instead of ``points_per_side``: one
            non-empty Nx2 array of (x, y) in [0, 1] x [0, 1] per crop layer (at least ``crop_n_layers + 1``).
        min_mask_region_area (int): If > 0, clean small regions, as the family's reference generator does
            (``model.generator_defaults.small_region_cleanup``). SAM: fill holes and remove islands smaller
            than this (in pixels) in the final masks, then suppress duplicates again. SAM 2:
            fill holes and remove sprinkles of at most this many pixels in the low-res logits before they are
            upscaled (Meta's generator asks its predictor for that, which does it with its CUDA extension
            only; here it runs everywhere). Default 0: off.
        output_mode (str): The form of each record's ``segmentation``: ``"binary_mask"`` (default; HxW bool
            arrays), ``"uncompressed_rle"`` or ``"coco_rle"`` (pycocotools' compressed RLE,
            JSON-serialisable).
        multimask_output (bool): Each point gives the decoder's three candidate masks (True, the default, the
            reference's behaviour) or its single-mask output (for SAM 2, the best multimask output where the
            single one is unstable).
        mask_threshold (float or None): Logit above which a pixel is in a mask; the stability score is measured
            around it (SAM2AutomaticMaskGenerator's option). None: the model's, 0.0.
        use_m2m (bool): Refine every mask once (SAM2AutomaticMaskGenerator's option): its point is decoded
            again with the mask's low-res logits as mask input, asking for one mask; the refined masks and
            their predicted IoU replace the first ones before the filters. Default False.

    Raises:
        ValueError: If both or neither of ``points_per_side`` and ``point_grids`` are given, a grid is not a
            non-empty Nx2 array or there are fewer grids than crop layers, a count is out of range (negative
            ``crop_n_layers`` or ``min_mask_region_area``, ``points_per_batch`` < 1, a downscale factor < 1
            or one that leaves no points), ``output_mode`` is unknown, a threshold is NaN,
            ``stability_score_offset`` is negative or infinite, or ``crop_overlap_ratio`` is outside [0, 1).
    """

    def __init__(
        self,
        model: PromptableSegmenter,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float | None = None,
        stability_score_thresh: float | None = None,
        stability_score_offset: float | None = None,
        box_nms_thresh: float | None = None,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        multimask_output: bool = True,
        mask_threshold: float | None = None,
        use_m2m: bool = False,
    ) -> None:
        """See the class docstring for the arguments."""
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        if crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be >= 0, got {crop_n_layers}")
        if points_per_side is not None:
            if crop_n_points_downscale_factor < 1:
                raise ValueError(f"crop_n_points_downscale_factor must be >= 1, got {crop_n_points_downscale_factor}")
            smallest = int(points_per_side / crop_n_points_downscale_factor**crop_n_layers)
            if smallest < 1:
                raise ValueError(f"points_per_side={points_per_side} leaves no points in crop layer {crop_n_layers} "
                                 f"with crop_n_points_downscale_factor={crop_n_points_downscale_factor}")
            point_grids = build_all_layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
        else:
            point_grids = [np.asarray(grid, dtype=np.float64) for grid in point_grids]
            if len(point_grids) < crop_n_layers + 1:
                raise ValueError(f"point_grids has {len(point_grids)} grids; crop_n_layers={crop_n_layers} needs "
                                 f"{crop_n_layers + 1} (one per layer, the whole image being layer 0)")
            for grid in point_grids:
                if grid.ndim != 2 or grid.shape[1] != 2 or len(grid) == 0:
                    raise ValueError(f"each point grid must be a non-empty (N, 2) array, got shape {grid.shape}")
        if points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {points_per_batch}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        if min_mask_region_area < 0:
            raise ValueError(f"min_mask_region_area must be >= 0, got {min_mask_region_area}")
        thresholds = {"pred_iou_thresh": pred_iou_thresh, "stability_score_thresh": stability_score_thresh,
                      "box_nms_thresh": box_nms_thresh, "crop_nms_thresh": crop_nms_thresh,
                      "mask_threshold": mask_threshold}
        if not_numbers := [name for name, value in thresholds.items() if value is not None and math.isnan(value)]:
            raise ValueError(f"{', '.join(not_numbers)} must be numbers, got NaN")  # NaN would drop every mask
        if stability_score_offset is not None and not 0 <= stability_score_offset < math.inf:
            raise ValueError(f"stability_score_offset must be finite and >= 0, got {stability_score_offset}")
        if not 0 <= crop_overlap_ratio < 1:
            raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {crop_overlap_ratio}")

        defaults = model.generator_defaults
        self.model = model
        self.transform = model.transform
        self.point_grids = point_grids
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = _or_default(pred_iou_thresh, defaults.pred_iou_thresh)
        self.stability_score_thresh = _or_default(stability_score_thresh, defaults.stability_score_thresh)
        self.stability_score_offset = _or_default(stability_score_offset, defaults.stability_score_offset)
        self.box_nms_thresh = _or_default(box_nms_thresh, defaults.box_nms_thresh)
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.multimask_output = multimask_output
        self.mask_threshold = model.mask_threshold if mask_threshold is None else float(mask_threshold)
        self.use_m2m = use_m2m
        cleanup = defaults.small_region_cleanup
        if cleanup not in ("masks", "low_res"):
            raise ValueError(f"unknown small_region_cleanup {cleanup!r} in the model's generator defaults")
        self._clean_low_res = cleanup == "low_res" and min_mask_region_area > 0
        self._clean_masks = cleanup == "masks" and min_mask_region_area > 0
        self._geometries: dict[tuple, UpscaledThresholds] = {}

    @classmethod
    def from_pretrained(cls, source: str, *, device: str | torch.device | None = None,
                        **options: Any) -> AutomaticMaskGenerator:
        """A generator on a model loaded with ``sam_core.load_sam``.

        Args:
            source (str): Anything ``load_sam`` reads: a checkpoint file, a Hugging Face folder or hub id, or a
                registry name (``"vit_h"``, ``"sam2.1_hiera_large"``...).
            device (str, torch.device or None): Where the model goes; None (default): the CPU.
            **options: The constructor's options (see the class docstring).

        Returns:
            (AutomaticMaskGenerator): The generator.

        Raises:
            CheckpointError: If the checkpoint cannot be found or read.
            ValueError: If an option is invalid.
        """
        return cls(load_sam(source, device=device), **options)

    @torch.inference_mode()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Generate masks for the whole image.

        Args:
            image (np.ndarray): The image, HxWx3 uint8 RGB. Gray (HxW), RGBA, uint16 and float images in [0, 1]
                are converted first (``sam_core.transforms.to_rgb_uint8``).

        Returns:
            (list of dict): One record per mask, in no particular order, each with the keys:
                segmentation (np.ndarray or dict): The mask. ``"binary_mask"``: an HxW bool array;
                    ``"uncompressed_rle"``: ``{"size": [H, W], "counts": list of int}`` (runs over the
                    column-major mask, starting with background); ``"coco_rle"``: ``{"size": [H, W],
                    "counts": str}``, pycocotools' compressed RLE.
                area (int): The mask's area in pixels.
                bbox (list of int): The box around the mask, XYWH.
                predicted_iou (float): The model's own prediction of the mask's quality.
                point_coords (list of list of float): The point prompt that produced the mask, ``[[x, y]]``
                    in image pixels.
                stability_score (float): The mask's stability score (see ``stability_score_offset``).
                crop_box (list of int): The crop of the image the mask came from, XYWH.

        Raises:
            ValueError: If the image has another shape, dtype or value range.
        """
        image = to_rgb_uint8(image)
        if self.model.image_format == "BGR":
            image = np.ascontiguousarray(image[:, :, ::-1])
        proposals = self._generate_proposals(image)
        if self._clean_masks:
            proposals = self._remove_small_regions(proposals)
        return [self._record(proposals, i) for i in range(len(proposals))]

    def _record(self, proposals: _Proposals, i: int) -> dict[str, Any]:
        rle = proposals.rles[i]
        if self.output_mode == "coco_rle":
            segmentation: Any = coco_encode_rle(rle)
        elif self.output_mode == "binary_mask":
            segmentation = rle_to_mask(rle)
        else:
            segmentation = rle
        return {
            "segmentation": segmentation,
            "area": area_from_rle(rle),
            "bbox": box_xyxy_to_xywh(proposals.boxes[i]).tolist(),
            "predicted_iou": proposals.iou_preds[i].item(),
            "point_coords": [proposals.points[i].tolist()],
            "stability_score": proposals.stability_scores[i].item(),
            "crop_box": box_xyxy_to_xywh(proposals.crop_boxes[i]).tolist(),
        }

    def _generate_proposals(self, image: np.ndarray) -> _Proposals:
        image_size = image.shape[:2]
        crop_boxes, layer_indexes = generate_crop_boxes(image_size, self.crop_n_layers, self.crop_overlap_ratio)
        # Images a few pixels across get empty crops (on which the reference fails); they hold nothing.
        proposals = _Proposals.concat([self._process_crop(image, crop_box, layer)
                                       for crop_box, layer in zip(crop_boxes, layer_indexes)
                                       if crop_box[2] > crop_box[0] and crop_box[3] > crop_box[1]])
        if len(crop_boxes) > 1 and len(proposals):
            # Between crops, prefer the masks of smaller crops.
            keep = box_nms(proposals.boxes, 1 / box_area(proposals.crop_boxes), self.crop_nms_thresh)
            proposals = proposals.take(keep)
        return proposals

    def _process_crop(self, image: np.ndarray, crop_box: list[int], layer: int) -> _Proposals:
        x0, y0, x1, y1 = crop_box
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        crop_size = crop.shape[:2]
        resized = self.transform.apply_image(crop)
        pixels = torch.as_tensor(resized, device=self.model.device).permute(2, 0, 1).contiguous()[None]
        # Every point prompt of the crop shares the image's prompt-independent decoder state.
        decoder_image = self.model.prepare_image(self.model.encode(self.model.preprocess(pixels)))

        # In the precision of the family's reference, so that the records carry the same point values.
        points = (self.point_grids[layer] * np.array(crop_size)[None, ::-1]).astype(self.transform.coordinate_dtype)
        parts = [
            self._process_batch(decoder_image, points[start:start + self.points_per_batch],
                                resized.shape[:2], crop_box, image.shape[:2])
            for start in range(0, len(points), self.points_per_batch)
        ]
        proposals = _Proposals.concat(parts)
        proposals = proposals.take(box_nms(proposals.boxes, proposals.iou_preds, self.box_nms_thresh))
        if proposals.low_res is not None:
            proposals = self._draw_kept_masks(proposals, resized.shape[:2], crop_box, image.shape[:2])
        proposals.boxes = uncrop_boxes_xyxy(proposals.boxes, crop_box)
        proposals.points = uncrop_points(proposals.points, crop_box)
        return proposals

    def _process_batch(self, decoder_image: PreparedImage, points: np.ndarray, input_size: tuple[int, int],
                       crop_box: list[int], image_size: tuple[int, int]) -> _Proposals:
        crop_size = (crop_box[3] - crop_box[1], crop_box[2] - crop_box[0])
        # float64 coordinates, as the reference passes them to the prompt encoder.
        coords = torch.as_tensor(self.transform.apply_coords(points, crop_size), device=self.model.device)
        labels = torch.ones((len(points), 1), dtype=torch.int, device=coords.device)
        prompts = Prompts(point_coords=coords[:, None, :], point_labels=labels)
        decode = self._decode_refined_masks if self.use_m2m else self._decode_kept_masks
        if fast_paths_enabled():
            geometry = self._geometry(input_size, crop_size)
            extent: tuple[int, int] | None = geometry.low_res_extent
            chunk = max(1, _CELLS_PER_CHUNK // (len(geometry.rows.starts) * len(geometry.cols.starts)))
            analyse = self._filter_unseen
        else:
            extent = None
            per_mask_bytes = 4 * (crop_size[0] * crop_size[1] + input_size[0] * input_size[1])
            chunk = max(1, _UPSCALE_CHUNK_BYTES // per_mask_bytes)
            analyse = self._filter_and_encode
        low_res, iou_preds, prompt_points = decode(decoder_image, prompts, torch.as_tensor(points), extent)
        parts = []
        for start in range(0, len(low_res), chunk):
            index = slice(start, start + chunk)
            parts.append(analyse(low_res[index], iou_preds[index], prompt_points[index], input_size, crop_box,
                                 image_size))
        return _Proposals.concat(parts)

    def _geometry(self, input_size: tuple[int, int], crop_size: tuple[int, int]) -> UpscaledThresholds:
        """The upscaling of low-res logits to a crop of this size, cut into cells (cached: crops share sizes)."""
        key = (input_size, crop_size)
        if key not in self._geometries:
            side = self.model.mask_input_size
            self._geometries[key] = UpscaledThresholds(*self.model.upscale_matrices(side, input_size, crop_size))
        return self._geometries[key]

    def _filter_unseen(self, low_res: torch.Tensor, iou_preds: torch.Tensor, points: torch.Tensor,
                       input_size: tuple[int, int], crop_box: list[int], image_size: tuple[int, int]) -> _Proposals:
        """``_filter_and_encode`` without upscaling: the same stability scores, filters and boxes, from the
        low-res logits (``sam_core.pipelines.upscaled_masks``); the masks are drawn for the proposals that NMS keeps.

        Masks the thresholds cross in most cells, and masks the cell bounds cannot resolve exactly, are
        upscaled with torch as in ``_filter_and_encode``.
        """
        crop_size = (crop_box[3] - crop_box[1], crop_box[2] - crop_box[0])
        if self._clean_low_res:
            area = self.min_mask_region_area
            low_res = clean_low_res_logits(low_res, self.mask_threshold, area, area)
        geometry = self._geometry(input_size, crop_size)
        threshold, offset = self.mask_threshold, self.stability_score_offset
        levels = [threshold + offset, threshold - offset]
        bounds = geometry.bounds(low_res)
        plain = geometry.crossed_fraction(bounds, [*levels, threshold]) > _MAX_CROSSED_FRACTION
        by_cells = (~plain).nonzero().squeeze(1)
        counts, resolved = geometry.count_above(bounds.take(by_cells), levels)
        stability = torch.empty(len(low_res))
        stability[by_cells] = counts[:, 0].int() / counts[:, 1].int()  # int32 counts divided, as the reference
        plain[by_cells[~resolved]] = True
        boxes = torch.zeros((len(low_res), 4), dtype=torch.int64)
        if plain.any():
            stability[plain], boxes[plain] = self._upscaled_scores(low_res[plain.to(low_res.device)], input_size,
                                                                   crop_size)
        keep = stability >= self.stability_score_thresh if self.stability_score_thresh > 0.0 else \
            torch.ones(len(low_res), dtype=torch.bool)
        by_cells = (keep & ~plain).nonzero().squeeze(1)
        cell_boxes, resolved = geometry.box_above(bounds.take(by_cells), threshold)
        if not resolved.all():
            unresolved = by_cells[~resolved]
            cell_boxes[~resolved] = self._upscaled_scores(low_res[unresolved.to(low_res.device)], input_size,
                                                          crop_size)[1]
        boxes[by_cells] = cell_boxes
        keep &= ~is_box_near_crop_edge(boxes, crop_box, [0, 0, image_size[1], image_size[0]])
        rows, cols = geometry.low_res_extent
        return _Proposals(boxes=boxes[keep], iou_preds=iou_preds[keep.to(iou_preds.device)].cpu(),
                          points=points[keep], stability_scores=stability[keep],
                          crop_boxes=torch.tensor([crop_box], dtype=torch.int64).expand(int(keep.sum()), 4),
                          low_res=low_res[keep.to(low_res.device), :rows, :cols].cpu().clone())

    def _upscaled_scores(self, low_res: torch.Tensor, input_size: tuple[int, int],
                         crop_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stability scores and boxes computed the plain way, from masks upscaled with torch, in chunks of
        bounded memory."""
        chunk = max(1, _UPSCALE_CHUNK_BYTES // (5 * crop_size[0] * crop_size[1]))
        stability, boxes = [], []
        for start in range(0, len(low_res), chunk):
            logits = self._upscaled(low_res[start:start + chunk], input_size, crop_size)
            stability.append(calculate_stability_score(logits, self.mask_threshold, self.stability_score_offset))
            boxes.append(batched_mask_to_box(logits > self.mask_threshold))
        return torch.cat(stability).cpu(), torch.cat(boxes).cpu()

    def _upscaled(self, low_res: torch.Tensor, input_size: tuple[int, int],
                  crop_size: tuple[int, int]) -> torch.Tensor:
        """Crop-sized logits (N, H, W) of low-res logits (N, S, S) (or of the rows and columns upscaling reads)."""
        side = self.model.mask_input_size
        if low_res.shape[1:] != (side, side):
            # The rows and columns past those read hold no values; upscaling multiplies them by zero.
            low_res = F.pad(low_res, (0, side - low_res.shape[2], 0, side - low_res.shape[1]))
        return self.model.postprocess_masks(low_res[:, None], input_size, crop_size)[:, 0]

    def _draw_kept_masks(self, proposals: _Proposals, input_size: tuple[int, int], crop_box: list[int],
                         image_size: tuple[int, int]) -> _Proposals:
        """RLEs of proposals kept by NMS, drawn from their low-res logits in bounded-memory chunks."""
        crop_size = (crop_box[3] - crop_box[1], crop_box[2] - crop_box[0])
        low_res = proposals.low_res.to(self.model.device)
        chunk = max(1, _UPSCALE_CHUNK_BYTES // (5 * crop_size[0] * crop_size[1]))
        rles = []
        for start in range(0, len(low_res), chunk):
            masks = self._upscaled(low_res[start:start + chunk], input_size, crop_size) > self.mask_threshold
            rles += mask_to_rle_pytorch(masks, crop_box, image_size)
        proposals.rles, proposals.low_res = rles, None
        return proposals

    def _decode_kept_masks(self, decoder_image: PreparedImage, prompts: Prompts, points: torch.Tensor,
                           extent: tuple[int, int] | None) -> tuple[torch.Tensor, ...]:
        """Low-res logits, predicted IoU and prompt point of every mask output above pred_iou_thresh.

        The decoder runs on a few prompts at a time (its activations then stay in cache, where a batch of
        64's do not), and draws masks only for prompts whose predicted IoU passes the filter. Each prompt's
        outputs do not depend on its batch-mates. With ``extent``, only the leading rows and columns of the
        logits that upscaling reads are drawn (``draw_mask_corners``).
        """
        model = self.model
        options = model.generator_defaults.decode_options
        low_res, iou_preds, kept_points = [], [], []
        for start in range(0, len(points), _DECODER_BATCH):
            part = slice(start, start + _DECODER_BATCH)
            decoded = model.score_prompts(decoder_image, prompts.take(part), self.multimask_output, **options)
            scores = decoded.iou_predictions.float()
            if self.pred_iou_thresh > 0.0:
                keep = scores > self.pred_iou_thresh
            else:
                keep = torch.ones_like(scores, dtype=torch.bool)
            kept_prompts = keep.any(dim=1).nonzero().squeeze(1)
            if not len(kept_prompts):
                continue
            keep = keep[kept_prompts]
            kept_scores = decoded.take(kept_prompts)
            drawn = model.draw_masks(kept_scores) if extent is None else model.draw_mask_corners(kept_scores, extent)
            low_res.append(drawn.float()[keep])
            iou_preds.append(scores[kept_prompts][keep])
            kept_points.append(points[part][kept_prompts.cpu()].repeat_interleave(keep.sum(dim=1).cpu(), dim=0))
        return self._joined(low_res, iou_preds, kept_points, points)

    def _decode_refined_masks(self, decoder_image: PreparedImage, prompts: Prompts, points: torch.Tensor,
                              extent: tuple[int, int] | None) -> tuple[torch.Tensor, ...]:
        """``_decode_kept_masks`` with mask-to-mask refinement (``use_m2m``): every output of the first pass
        (the filter does not apply to it) is decoded again from its point with its low-res logits (clamped
        as the family's predictor hands them back) as mask input, for one mask; the IoU filter then applies
        to the refined outputs, and only the kept ones are drawn."""
        model = self.model
        options = model.generator_defaults.decode_options
        limit = model.low_res_logit_limit
        low_res, iou_preds, kept_points = [], [], []
        for start in range(0, len(points), _DECODER_BATCH):
            part = slice(start, start + _DECODER_BATCH)
            first = model.draw_masks(model.score_prompts(decoder_image, prompts.take(part), self.multimask_output,
                                                         **options))
            if limit is not None:
                first = first.clamp(-limit, limit)
            outputs = first.shape[1]
            refine = Prompts(point_coords=prompts.point_coords[part].repeat_interleave(outputs, dim=0),
                             point_labels=prompts.point_labels[part].repeat_interleave(outputs, dim=0),
                             mask_input=first.flatten(0, 1)[:, None])
            refine_points = points[part].repeat_interleave(outputs, dim=0)
            for sub in range(0, len(refine_points), _DECODER_BATCH):
                rows = slice(sub, sub + _DECODER_BATCH)
                scored = model.score_prompts(decoder_image, refine.take(rows), multimask_output=False, **options)
                scores = scored.iou_predictions[:, 0].float()
                keep = scores > self.pred_iou_thresh if self.pred_iou_thresh > 0.0 else torch.ones_like(
                    scores, dtype=torch.bool)
                kept = keep.nonzero().squeeze(1)
                if not len(kept):
                    continue
                kept_scores = scored.take(kept)
                drawn = model.draw_masks(kept_scores) if extent is None else model.draw_mask_corners(kept_scores,
                                                                                                     extent)
                low_res.append(drawn[:, 0].float())
                iou_preds.append(scores[kept])
                kept_points.append(refine_points[rows][kept.cpu()])
        return self._joined(low_res, iou_preds, kept_points, points)

    def _joined(self, low_res: list[torch.Tensor], iou_preds: list[torch.Tensor], kept_points: list[torch.Tensor],
                points: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not low_res:
            side = self.model.mask_input_size
            empty = torch.empty((0, side, side), device=self.model.device)
            return empty, empty.new_empty((0,)), points[:0]
        return torch.cat(low_res), torch.cat(iou_preds), torch.cat(kept_points)

    def _filter_and_encode(self, low_res: torch.Tensor, iou_preds: torch.Tensor, points: torch.Tensor,
                           input_size: tuple[int, int], crop_box: list[int],
                           image_size: tuple[int, int]) -> _Proposals:
        """Upsample one chunk of masks, apply the stability and crop-edge filters, and RLE-encode them."""
        crop_size = (crop_box[3] - crop_box[1], crop_box[2] - crop_box[0])
        if self._clean_low_res:
            area = self.min_mask_region_area
            low_res = clean_low_res_logits(low_res, self.mask_threshold, area, area)
        logits = self.model.postprocess_masks(low_res[:, None], input_size, crop_size)[:, 0]
        stability = calculate_stability_score(logits, self.mask_threshold, self.stability_score_offset)
        if self.stability_score_thresh > 0.0:
            keep = stability >= self.stability_score_thresh
            iou_preds, stability, points = iou_preds[keep], stability[keep], points[keep.cpu()]
            kept = keep.nonzero().squeeze(1).tolist()
        else:
            kept = range(len(logits))
        # Thresholded one by one, so that the float logits of the kept masks are never copied.
        masks = torch.empty((len(kept), *crop_size), dtype=torch.bool, device=logits.device)
        for row, index in enumerate(kept):
            torch.gt(logits[index], self.mask_threshold, out=masks[row])
        del logits
        boxes = batched_mask_to_box(masks)
        keep = ~is_box_near_crop_edge(boxes, crop_box, [0, 0, image_size[1], image_size[0]])
        masks, boxes, iou_preds, stability = masks[keep], boxes[keep], iou_preds[keep], stability[keep]
        return _Proposals(rles=mask_to_rle_pytorch(masks, crop_box, image_size), boxes=boxes.cpu(),
                          iou_preds=iou_preds.cpu(), points=points[keep.cpu()], stability_scores=stability.cpu(),
                          crop_boxes=torch.tensor([crop_box], dtype=torch.int64).expand(len(boxes), 4))

    def _remove_small_regions(self, proposals: _Proposals) -> _Proposals:
        """Fill small holes and drop small islands, then suppress new duplicates, preferring untouched masks.

        As in the reference, NMS runs on the cleaned masks' boxes; only the kept masks that changed get
        their new RLE and box.
        """
        if not len(proposals):
            return proposals
        cleaned_boxes, scores, cleaned_rles = [], [], {}
        for i, rle in enumerate(proposals.rles):
            mask, filled = remove_small_regions(rle_to_mask(rle), self.min_mask_region_area, "holes")
            mask, dropped = remove_small_regions(mask, self.min_mask_region_area, "islands")
            mask_tensor = torch.from_numpy(mask)
            cleaned_boxes.append(batched_mask_to_box(mask_tensor))
            scores.append(0.0 if filled or dropped else 1.0)
            if filled or dropped:
                cleaned_rles[i] = mask_to_rle_pytorch(mask_tensor[None])[0]
        cleaned_boxes_tensor = torch.stack(cleaned_boxes)
        keep = box_nms(cleaned_boxes_tensor, torch.tensor(scores),
                       max(self.box_nms_thresh, self.crop_nms_thresh))
        boxes = proposals.boxes.clone()
        rles = list(proposals.rles)
        for i in keep.tolist():
            if i in cleaned_rles:
                rles[i] = cleaned_rles[i]
                boxes[i] = cleaned_boxes_tensor[i]
        return _Proposals(rles=rles, boxes=boxes, iou_preds=proposals.iou_preds, points=proposals.points,
                          stability_scores=proposals.stability_scores,
                          crop_boxes=proposals.crop_boxes).take(keep)


def _or_default(value: float | None, default: float) -> float:
    return default if value is None else value


