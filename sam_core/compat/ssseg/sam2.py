"""sssegmentation 1.7.0's SAM 2 classes (``SAMV2ImagePredictor``, ``SAMV2AutomaticMaskGenerator``,
``SAMV2VideoPredictor``) on sam_core's SAM 2 image predictor, generator and video predictor. sssegmentation's
SAM 2 is Meta's SAM 2.0 (July 2024) under other method names; sam_core's classes give the same results."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from sam_core.compat.meta import SAM2ImagePredictor
from sam_core.compat.ssseg.config import Samv2Settings, sam2_config_from_ssseg
from sam_core.compat.ssseg.weights import SSSEG_CHECKPOINT_URLS, chosen_flag, load_model, resolve_device
from sam_core.models.sam2 import SAM2_CONFIGS
from sam_core.pipelines.mask_generator import AutomaticMaskGenerator
from sam_core.pipelines.video_predictor import VideoPredictor

_FLAG_MODELS = {"use_default_samv2_t": "sam2_hiera_tiny", "use_default_samv2_s": "sam2_hiera_small",
                "use_default_samv2_bplus": "sam2_hiera_base_plus", "use_default_samv2_l": "sam2_hiera_large"}
# Meta's post-processing (sssegmentation's apply_postprocessing=True): the best multimask output replaces an
# unstable single mask; for video also binarised clicked masks in memory and holes of up to 8 pixels filled.
_POSTPROCESSING_HOLE_AREA = 8


def _settings(samv2_cfg: dict[str, Any] | None, flags: dict[str, bool]) -> tuple[Samv2Settings, str | None]:
    """The model settings and ckptpath of ``samv2_cfg`` or one flag; neither: the large model, random weights."""
    flag = chosen_flag(samv2_cfg, flags, "samv2_cfg")
    if samv2_cfg is not None:
        return sam2_config_from_ssseg(samv2_cfg), samv2_cfg.get("ckptpath")
    name = _FLAG_MODELS[flag or "use_default_samv2_l"]
    # sssegmentation's default config has no decoder extras (no dynamic multimask) and does not binarise.
    config = dataclasses.replace(SAM2_CONFIGS[name], dynamic_multimask_via_stability=False)
    return Samv2Settings(config, False, False), SSSEG_CHECKPOINT_URLS[flag] if flag else None


class SAMV2ImagePredictor:
    """sssegmentation's ``SAMV2ImagePredictor``: ``samv2_cfg`` (its dict, with ``ckptpath``) or one of
    ``use_default_samv2_t/s/bplus/l`` (Meta's SAM 2.0 files); with neither, sssegmentation's default config:
    Hiera-L with random weights. ``apply_postprocessing`` (default True) turns on the dynamic choice of the
    best multimask output when a single mask is asked for and unstable, whatever ``samv2_cfg`` says.

    ``predict`` returns float32 masks (0/1, or logits with ``return_logits``), float32 scores and low-res
    logits clamped to +-32; ``predictbatch`` returns three lists. Attributes: ``model`` (sam_core's SAM 2
    model, with ``image_size`` and ``device``), ``mask_threshold``.
    """

    def __init__(self, samv2_cfg: dict[str, Any] | None = None, use_default_samv2_t: bool = False,
                 use_default_samv2_s: bool = False, use_default_samv2_bplus: bool = False,
                 use_default_samv2_l: bool = False, device: str = "cuda", load_ckpt_strict: bool = True,
                 mask_threshold: float = 0.0, max_hole_area: float = 0.0, max_sprinkle_area: float = 0.0,
                 apply_postprocessing: bool = True) -> None:
        settings, ckptpath = _settings(samv2_cfg, {
            "use_default_samv2_t": use_default_samv2_t, "use_default_samv2_s": use_default_samv2_s,
            "use_default_samv2_bplus": use_default_samv2_bplus, "use_default_samv2_l": use_default_samv2_l})
        config = settings.config
        if apply_postprocessing:
            config = dataclasses.replace(config, dynamic_multimask_via_stability=True,
                                         dynamic_multimask_stability_delta=0.05,
                                         dynamic_multimask_stability_thresh=0.98)
        self.settings = dataclasses.replace(settings, config=config)
        self.apply_postprocessing = apply_postprocessing
        self.model = load_model(config, ckptpath, load_ckpt_strict, resolve_device(device),
                                        video=self._video)
        self.mask_threshold = mask_threshold
        self._image_predictor = SAM2ImagePredictor(self.model, mask_threshold=mask_threshold,
                                                   max_hole_area=max_hole_area, max_sprinkle_area=max_sprinkle_area)

    _video = False

    @property
    def device(self) -> torch.device:
        return self.model.device

    def setimage(self, image: Any) -> None:
        """Embed an HxWx3 RGB numpy image or a PIL image."""
        self._image_predictor.set_image(image)

    def setimagebatch(self, image_list: list[np.ndarray]) -> None:
        """Embed a list of HxWx3 RGB numpy images; decode them with :meth:`predictbatch`."""
        self._image_predictor.set_image_batch(image_list)

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None, multimask_output: bool = True,
                return_logits: bool = False, normalize_coords: bool = True,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt (or a batch: point_coords BxNx2, box Bx4) in image pixels, or in [0, 1] with
        ``normalize_coords=False``.

        Returns:
            masks (C or BxC)xHxW float32, scores float32, low-res logits float32.
        """
        return self._image_predictor.predict(point_coords, point_labels, box, mask_input, multimask_output,
                                             return_logits, normalize_coords)

    def predictbatch(self, point_coords_batch: list[np.ndarray] | None = None,
                     point_labels_batch: list[np.ndarray] | None = None, box_batch: list[np.ndarray] | None = None,
                     mask_input_batch: list[np.ndarray] | None = None, multimask_output: bool = True,
                     return_logits: bool = False, normalize_coords: bool = True,
                     ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """:meth:`predict` for each image of :meth:`setimagebatch`, one prompt per image."""
        return self._image_predictor.predict_batch(point_coords_batch, point_labels_batch, box_batch,
                                                   mask_input_batch, multimask_output, return_logits, normalize_coords)

    def getimageembedding(self) -> torch.Tensor:
        """The image embedding(s), BxCxhxw."""
        if not self._image_predictor.predictor.is_image_set:
            raise RuntimeError("an image must be set with .setimage(...) to generate an embedding")
        return self._image_predictor.get_image_embedding()

    def resetpredictor(self) -> None:
        self._image_predictor.reset_predictor()


class SAMV2AutomaticMaskGenerator:
    """sssegmentation's ``SAMV2AutomaticMaskGenerator``: its options on sam_core's generator (SAM 2's records).

    As sssegmentation's, it defaults to the **large** model (Meta's Hiera-L file) and to
    ``apply_postprocessing=False``, and ``min_mask_region_area`` cleans holes and sprinkles in the low-res
    logits (no small-region pass on the final masks). Unlike sssegmentation's, ``use_default_samv2_l``
    defaults to None, meaning "large unless ``samv2_cfg`` or another flag is given", so that those work
    without also passing ``use_default_samv2_l=False`` (which sssegmentation requires).
    """

    def __init__(self, points_per_side: int | None = 32, points_per_batch: int = 64, pred_iou_thresh: float = 0.8,
                 stability_score_thresh: float = 0.95, stability_score_offset: float = 1.0,
                 mask_threshold: float = 0.0, box_nms_thresh: float = 0.7, crop_n_layers: int = 0,
                 crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: list[np.ndarray] | None = None,
                 min_mask_region_area: int = 0, output_mode: str = "binary_mask", use_m2m: bool = False,
                 multimask_output: bool = True, samv2_cfg: dict[str, Any] | None = None,
                 use_default_samv2_t: bool = False, use_default_samv2_s: bool = False,
                 use_default_samv2_bplus: bool = False, use_default_samv2_l: bool | None = None,
                 device: str = "cuda", load_ckpt_strict: bool = True, apply_postprocessing: bool = False) -> None:
        if use_default_samv2_l is None:
            use_default_samv2_l = samv2_cfg is None and not (use_default_samv2_t or use_default_samv2_s
                                                             or use_default_samv2_bplus)
        # The predictor's hole and sprinkle cleaning is the generator's min_mask_region_area, as there.
        self.predictor = SAMV2ImagePredictor(
            samv2_cfg, use_default_samv2_t, use_default_samv2_s, use_default_samv2_bplus, use_default_samv2_l,
            device, load_ckpt_strict, mask_threshold, min_mask_region_area, min_mask_region_area, apply_postprocessing)
        self._generator = AutomaticMaskGenerator(
            self.predictor.model, points_per_side=points_per_side, points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset, box_nms_thresh=box_nms_thresh, crop_n_layers=crop_n_layers,
            crop_nms_thresh=crop_nms_thresh, crop_overlap_ratio=crop_overlap_ratio,
            crop_n_points_downscale_factor=crop_n_points_downscale_factor, point_grids=point_grids,
            min_mask_region_area=min_mask_region_area, output_mode=output_mode, multimask_output=multimask_output,
            mask_threshold=mask_threshold, use_m2m=use_m2m)
        for name in ("point_grids", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
                     "stability_score_offset", "mask_threshold", "box_nms_thresh", "crop_n_layers", "crop_nms_thresh",
                     "crop_overlap_ratio", "crop_n_points_downscale_factor", "min_mask_region_area", "output_mode",
                     "use_m2m", "multimask_output"):
            setattr(self, name, getattr(self._generator, name))

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Mask records for an HxWx3 uint8 RGB image."""
        return self._generator.generate(image)


class SAMV2VideoPredictor(SAMV2ImagePredictor):
    """sssegmentation's ``SAMV2VideoPredictor`` (also an image predictor): track objects through a folder of
    JPEG frames. Keyword arguments other than its four are :class:`SAMV2ImagePredictor`'s.

    As sssegmentation's, ``apply_postprocessing=True`` (the default) sets ``fill_hole_area`` to 8 whatever is
    passed, and binarises clicked masks before they enter memory. Unlike sssegmentation's, objects may be added
    after tracking started, and ``clear_non_cond_mem_around_input`` applies to every object
    (``clear_non_cond_mem_for_multi_obj`` is accepted and has no effect).
    """

    _video = True

    def __init__(self, fill_hole_area: int = 0, non_overlap_masks: bool = False,
                 clear_non_cond_mem_around_input: bool = False, clear_non_cond_mem_for_multi_obj: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        settings = self.settings
        self.fill_hole_area = _POSTPROCESSING_HOLE_AREA if self.apply_postprocessing else fill_hole_area
        self.non_overlap_masks = non_overlap_masks
        self.clear_non_cond_mem_around_input = clear_non_cond_mem_around_input
        self.clear_non_cond_mem_for_multi_obj = clear_non_cond_mem_for_multi_obj
        self._video_predictor = VideoPredictor(
            self.model, fill_hole_area=self.fill_hole_area, non_overlap_masks=non_overlap_masks,
            binarize_mask_from_pts_for_mem_enc=self.apply_postprocessing or settings.binarize_mask_from_pts_for_mem_enc,
            clear_non_cond_mem_around_input=clear_non_cond_mem_around_input,
            add_all_frames_to_correct_as_cond=settings.add_all_frames_to_correct_as_cond)

    def initstate(self, video_path: str | os.PathLike, offload_video_to_cpu: bool = False,
                  offload_state_to_cpu: bool = False, async_loading_frames: bool = False) -> dict[str, Any]:
        """A new inference state for a folder of JPEG frames named by their index (``00000.jpg``...)."""
        return self._video_predictor.init_state(video_path, offload_video_to_cpu, offload_state_to_cpu,
                                                async_loading_frames)

    def addnewpoints(self, inference_state: dict[str, Any], frame_idx: int, obj_id: Any, points: Any, labels: Any,
                     clear_old_points: bool = True, normalize_coords: bool = True,
                     ) -> tuple[int, list[Any], torch.Tensor]:
        """Clicks (Nx2 x, y; N labels) for one object on one frame, in video pixels (or [0, 1] with
        ``normalize_coords=False``).

        Returns:
            (frame_idx, obj_ids, mask logits (objects x 1 x H x W) on this frame).
        """
        return self._video_predictor.add_new_points_or_box(inference_state, frame_idx, obj_id, points, labels,
                                                           clear_old_points, normalize_coords)

    def addnewmask(self, inference_state: dict[str, Any], frame_idx: int, obj_id: Any,
                   mask: Any) -> tuple[int, list[Any], torch.Tensor]:
        """An HxW mask prompt for one object on one frame; returns as :meth:`addnewpoints`."""
        return self._video_predictor.add_new_mask(inference_state, frame_idx, obj_id, mask)

    def propagateinvideo(self, inference_state: dict[str, Any], start_frame_idx: int | None = None,
                         max_frame_num_to_track: int | None = None, reverse: bool = False,
                         ) -> Iterator[tuple[int, list[Any], torch.Tensor]]:
        """Track every object; yields (frame_idx, obj_ids, mask logits objects x 1 x H x W) per frame."""
        return self._video_predictor.propagate_in_video(inference_state, start_frame_idx, max_frame_num_to_track,
                                                        reverse)

    def resetstate(self, inference_state: dict[str, Any]) -> None:
        """Forget every object, prompt and tracking result of the state (the frames stay)."""
        self._video_predictor.reset_state(inference_state)
