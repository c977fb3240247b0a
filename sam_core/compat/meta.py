"""Drop-in names of Meta's packages, kept in this one place: code written for ``segment_anything`` or for
``sam2`` (its image predictor, automatic mask generator and ``build_sam2``) runs after changing its imports
to ``sam_core.compat``. Nothing in sam_core itself uses them."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sam_core.compat.forwarding import forwarded
from sam_core.interface import PromptableSegmenter, Prompts
from sam_core.io.checkpoints import load_checkpoint, load_sam
from sam_core.models.sam2.config import SAM2_CONFIGS, Sam2Config
from sam_core.models.sam2.video.model import Sam2Video, build_sam2_video
from sam_core.pipelines.mask_generator import AutomaticMaskGenerator
from sam_core.pipelines.predictor import Predictor
from sam_core.pipelines.prompts import prompts_from_arrays, prompts_from_tensors
from sam_core.pipelines.video_predictor import VideoPredictor
from sam_core.registry import build_model

SamPredictor = Predictor
SamAutomaticMaskGenerator = AutomaticMaskGenerator
SAM2VideoPredictor = VideoPredictor


class _RegistryBuilder:
    """``sam_model_registry[name](checkpoint=...)``: the reference's entry point, backed by load_sam."""

    def __init__(self, model_type: str) -> None:
        self.model_type = model_type

    def __call__(self, checkpoint: str | os.PathLike | None = None) -> PromptableSegmenter:
        if checkpoint is None:
            return build_model(self.model_type)
        return load_sam(checkpoint, config=self.model_type)


sam_model_registry: dict[str, _RegistryBuilder] = {
    name: _RegistryBuilder(name) for name in ("default", "vit_h", "vit_l", "vit_b", "vit_t")  # vit_t: MobileSAM's
}


# ------------------------------------------------------------------------------------------------- SAM 2

_META_SIZES = {"t": "tiny", "s": "small", "b+": "base_plus", "l": "large"}


def sam2_registry_name(config_file: str | os.PathLike) -> str:
    """The registry name of one of Meta's SAM 2 config names: ``configs/sam2.1/sam2.1_hiera_t.yaml``,
    ``sam2_hiera_b+.yaml``, ``sam2.1_hiera_l``... (registry names such as ``sam2.1_hiera_tiny`` pass)."""
    stem = Path(os.fspath(config_file)).name.removesuffix(".yaml")
    version, _, size = stem.partition("_hiera_")
    name = f"{version}_hiera_{_META_SIZES.get(size, size)}"
    if version not in ("sam2", "sam2.1") or name not in SAM2_CONFIGS:
        raise ValueError(f"unknown SAM 2 config {os.fspath(config_file)!r}; expected one of Meta's, e.g. "
                         f"configs/sam2.1/sam2.1_hiera_t.yaml, or a registry name: {sorted(SAM2_CONFIGS)}")
    return name


def build_sam2(config_file: str | os.PathLike, ckpt_path: str | os.PathLike | None = None, device: str = "cpu",
               mode: str = "eval", hydra_overrides_extra: Sequence[str] = (), apply_postprocessing: bool = True,
               **kwargs: Any) -> PromptableSegmenter:
    """Meta's ``sam2.build_sam.build_sam2``: the image model of a config name, with the weights of
    ``ckpt_path`` (Meta's ``.pt``, or anything ``load_sam`` reads) or random ones.

    ``apply_postprocessing`` (Meta's default True) turns on the dynamic choice of the best multimask output
    when a single requested mask is unstable. Hydra overrides are not supported. Unlike Meta's, the
    default device is the CPU.
    """
    if hydra_overrides_extra:
        raise ValueError("hydra_overrides_extra is not supported by sam_core; pass a Sam2Config to "
                         "sam_core.load_sam or sam_core.build_sam instead")
    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    config = SAM2_CONFIGS[sam2_registry_name(config_file)]
    if not apply_postprocessing:
        config = dataclasses.replace(config, dynamic_multimask_via_stability=False)
    model = build_model(config) if ckpt_path is None else load_sam(ckpt_path, config=config)
    model = model.to(device)
    return model.train() if mode == "train" else model.eval()


def build_sam2_hf(model_id: str, **kwargs: Any) -> PromptableSegmenter:
    """Meta's ``build_sam2_hf``: a model by Hugging Face id (``facebook/sam2.1-hiera-tiny``...), through
    ``load_sam`` (Hugging Face's cache; offline-aware)."""
    device = kwargs.get("device", "cpu")
    model = load_sam(model_id, device=device)
    if not kwargs.get("apply_postprocessing", True):
        model = load_sam(model_id, device=device,
                         config=dataclasses.replace(model.config, dynamic_multimask_via_stability=False))
    return model.train() if kwargs.get("mode", "eval") == "train" else model.eval()


class SAM2ImagePredictor:
    """Meta's ``sam2.sam2_image_predictor.SAM2ImagePredictor`` with its signatures and return types, on
    sam_core's :class:`~sam_core.pipelines.predictor.Predictor` (which gives the same masks with sam_core's own API).

    As Meta's: ``predict`` returns float32 masks (0/1, or logits with ``return_logits``), float32 scores and
    clamped low-res logits; ``predict_batch`` returns three lists; prompts may be batched (``point_coords``
    BxNx2, ``box`` Bx4). Unlike Meta's on a CPU, ``max_hole_area`` and ``max_sprinkle_area`` take effect.
    """

    def __init__(self, sam_model: PromptableSegmenter, mask_threshold: float = 0.0, max_hole_area: float = 0.0,
                 max_sprinkle_area: float = 0.0, **kwargs: Any) -> None:
        self.model = sam_model
        self.mask_threshold = mask_threshold
        self.predictor = Predictor(sam_model, mask_upscaling="torch", mask_threshold=mask_threshold,
                                   max_hole_area=max_hole_area, max_sprinkle_area=max_sprinkle_area)
        self._is_batch = False

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> SAM2ImagePredictor:
        return cls(build_sam2_hf(model_id, **kwargs), **kwargs)

    device = forwarded("model", "device")
    _is_image_set = forwarded("predictor", "is_image_set")

    @property
    def _orig_hw(self) -> list[tuple[int, int]] | None:
        return self.predictor.original_sizes or None

    @property
    def _features(self) -> dict[str, Any] | None:
        """Meta's layout: ``image_embed`` and the list ``high_res_feats``."""
        features = self.predictor.features_by_name
        if features is None:
            return None
        high_res = [features[name] for name in sorted(features) if name.startswith("high_res_feats_")]
        return {"image_embed": features[self.model.embedding_key], "high_res_feats": high_res}

    def set_image(self, image: Any) -> None:
        """An HxWx3 RGB numpy image or a PIL image."""
        self.predictor.set_image(_as_array(image))
        self._is_batch = False

    def set_image_batch(self, image_list: list[np.ndarray]) -> None:
        if not isinstance(image_list, list):
            raise ValueError("set_image_batch expects a list of HxWx3 RGB numpy images")
        self.predictor.set_image_batch([_as_array(image) for image in image_list])
        self._is_batch = True

    def reset_predictor(self) -> None:
        self.predictor.reset_image()
        self._is_batch = False

    def get_image_embedding(self) -> torch.Tensor:
        return self.predictor.get_image_embedding()

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None, multimask_output: bool = True,
                return_logits: bool = False, normalize_coords: bool = True,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.predictor.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        return self._predict_one(0, point_coords, point_labels, box, mask_input, multimask_output, return_logits,
                                 normalize_coords)

    def predict_batch(self, point_coords_batch: list[np.ndarray] | None = None,
                      point_labels_batch: list[np.ndarray] | None = None, box_batch: list[np.ndarray] | None = None,
                      mask_input_batch: list[np.ndarray] | None = None, multimask_output: bool = True,
                      return_logits: bool = False, normalize_coords: bool = True,
                      ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        if not self._is_batch:
            raise RuntimeError("predict_batch needs images set with .set_image_batch(...)")
        results = []
        for index in range(len(self.predictor.original_sizes)):
            prompts = [None if values is None else values[index]
                       for values in (point_coords_batch, point_labels_batch, box_batch, mask_input_batch)]
            results.append(self._predict_one(index, *prompts, multimask_output, return_logits, normalize_coords))
        masks, scores, low_res = zip(*results) if results else ((), (), ())
        return list(masks), list(scores), list(low_res)

    def _predict_one(self, index: int, point_coords: Any, point_labels: Any, box: Any, mask_input: Any,
                     multimask_output: bool, return_logits: bool, normalize_coords: bool,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self.predictor.holding_image():  # one image state from the sizes read here to the decoding
            return self._predict_one_locked(index, point_coords, point_labels, box, mask_input, multimask_output,
                                            return_logits, normalize_coords)

    def _predict_one_locked(self, index: int, point_coords: Any, point_labels: Any, box: Any, mask_input: Any,
                            multimask_output: bool, return_logits: bool, normalize_coords: bool,
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        predictor = self.predictor
        batched = any(value is not None and np.ndim(value) == rank
                      for value, rank in ((point_coords, 3), (box, 2), (mask_input, 4)))
        if not batched:
            masks, scores, low_res = predictor.predict_prompts(
                prompts_from_arrays(point_coords, point_labels, box, mask_input,
                                    mask_input_size=self.model.mask_input_size),
                index, multimask_output, return_logits, normalize_coords)
            return _float32(masks), _float32(scores), _float32(low_res)
        # Batched prompts: several prompt sets on one image, as Meta's predict accepts them.
        size = predictor.original_sizes[index]
        transform = predictor.transform
        coords = boxes = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_coords and point_labels must be given together")
            apply = transform.apply_coords if normalize_coords else transform.apply_normalized_coords
            coords = torch.as_tensor(apply(np.asarray(point_coords, dtype=np.float64), size), dtype=torch.float)
        if box is not None:
            apply = transform.apply_boxes if normalize_coords else transform.apply_normalized_boxes
            boxes = torch.as_tensor(apply(np.asarray(box, dtype=np.float64), size), dtype=torch.float)
        prompts = prompts_from_tensors(coords, None if point_labels is None else torch.as_tensor(point_labels),
                                       boxes, None if mask_input is None else torch.as_tensor(mask_input),
                                       mask_input_size=self.model.mask_input_size)
        prompts = Prompts(*(None if p is None else p.to(self.device) for p in
                            (prompts.point_coords, prompts.point_labels, prompts.boxes, prompts.mask_input)))
        masks, scores, low_res = predictor.decode_prompts(prompts, index, multimask_output, return_logits)
        return tuple(_float32(value[0] if value.shape[0] == 1 else value) for value in (masks, scores, low_res))


class SAM2AutomaticMaskGenerator(AutomaticMaskGenerator):
    """Meta's ``sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator``: its signature (positional order
    and defaults) on sam_core's :class:`~sam_core.pipelines.mask_generator.AutomaticMaskGenerator`, which returns the
    same records. Extra keyword arguments are ignored, as Meta's are."""

    def __init__(self, model: PromptableSegmenter, points_per_side: int | None = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.8, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, mask_threshold: float = 0.0, box_nms_thresh: float = 0.7,
                 crop_n_layers: int = 0, crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: list[np.ndarray] | None = None,
                 min_mask_region_area: int = 0, output_mode: str = "binary_mask", use_m2m: bool = False,
                 multimask_output: bool = True, **kwargs: Any) -> None:
        super().__init__(
            model, points_per_side=points_per_side, points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset, box_nms_thresh=box_nms_thresh,
            crop_n_layers=crop_n_layers, crop_nms_thresh=crop_nms_thresh, crop_overlap_ratio=crop_overlap_ratio,
            crop_n_points_downscale_factor=crop_n_points_downscale_factor, point_grids=point_grids,
            min_mask_region_area=min_mask_region_area, output_mode=output_mode, multimask_output=multimask_output,
            mask_threshold=mask_threshold, use_m2m=use_m2m)

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> SAM2AutomaticMaskGenerator:  # type: ignore[override]
        return cls(build_sam2_hf(model_id, **kwargs), **kwargs)


def _as_array(image: Any) -> np.ndarray:
    """numpy images as they are; PIL images as RGB arrays."""
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    raise ValueError(f"expected an HxWx3 numpy array or a PIL image, got {type(image).__name__}")


def _float32(value: Any) -> np.ndarray:
    array = value.detach().cpu().float().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return array.astype(np.float32, copy=False)


def build_sam2_video_predictor(config_file: str | os.PathLike | Sam2Config = "sam2.1_hiera_tiny",
                               ckpt_path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                               mode: str = "eval", hydra_overrides_extra: Sequence[str] = (),
                               apply_postprocessing: bool = True, vos_optimized: bool = False,
                               **kwargs: Any) -> VideoPredictor:
    """Meta's ``build_sam2_video_predictor``: a :class:`VideoPredictor` for a config (Meta's config name such
    as ``configs/sam2.1/sam2.1_hiera_t.yaml``, a registry name, or a Sam2Config) with the weights of
    ``ckpt_path`` (Meta's ``.pt`` or anything ``sam_core.load_checkpoint`` reads), or random ones.

    ``apply_postprocessing`` (default True, as Meta's) gives the dynamic multimask choice, binarised clicked
    masks in memory and hole filling (8 pixels). Unlike Meta's, the default device is the CPU; Hydra
    overrides and ``vos_optimized`` are not supported.
    """
    if hydra_overrides_extra or vos_optimized:
        raise ValueError("hydra_overrides_extra and vos_optimized are not supported by sam_core; pass a "
                         "Sam2Config instead")
    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    if isinstance(config_file, Sam2Config):
        config = config_file
    else:
        config = SAM2_CONFIGS[sam2_registry_name(config_file)]
    if not apply_postprocessing:
        config = dataclasses.replace(config, dynamic_multimask_via_stability=False)
    if ckpt_path is None:
        model = build_sam2_video(config)
    else:
        loaded = load_checkpoint(ckpt_path, config=config)
        model = Sam2Video.from_image_model(loaded.model, loaded.extras)
    model = model.to(device)
    model = model.train() if mode == "train" else model.eval()
    if apply_postprocessing:
        return VideoPredictor(model, **kwargs)
    return VideoPredictor(model, fill_hole_area=0, binarize_mask_from_pts_for_mem_enc=False, **kwargs)


class SAM3InteractiveImagePredictor(SAM2ImagePredictor):
    """Meta's ``sam3.model.sam1_task_predictor.SAM3InteractiveImagePredictor`` (SAM 3's points-and-boxes image
    predictor): :class:`SAM2ImagePredictor`'s API on a SAM 3 model, with SAM 3's default of filling background
    holes of up to 256 low-res pixels (which Meta's skips on a CPU, where its CUDA kernel is missing)."""

    def __init__(self, sam_model: PromptableSegmenter, mask_threshold: float = 0.0, max_hole_area: float = 256.0,
                 max_sprinkle_area: float = 0.0, **kwargs: Any) -> None:
        super().__init__(sam_model, mask_threshold, max_hole_area, max_sprinkle_area, **kwargs)
