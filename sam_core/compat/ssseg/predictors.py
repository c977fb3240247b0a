"""sssegmentation's SAM, SAM-HQ, MobileSAM and EdgeSAM predictors and generators on sam_core's (see the
package docstring)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from sam_core.compat.forwarding import forwarded
from sam_core.compat.ssseg.config import sam_config_from_ssseg
from sam_core.compat.ssseg.viz import ResizeLongestSide
from sam_core.compat.ssseg.weights import SSSEG_CHECKPOINT_URLS, chosen_flag, load_model, resolve_device
from sam_core.models.edge_sam.config import EDGE_SAM_CONFIGS
from sam_core.models.mobile_sam.config import MobileSamConfig
from sam_core.models.sam.config import SAM_CONFIGS
from sam_core.models.sam_hq.config import SAM_HQ_CONFIGS
from sam_core.pipelines.mask_generator import AutomaticMaskGenerator
from sam_core.pipelines.predictor import Predictor

__all__ = ["EdgeSAMAutomaticMaskGenerator", "EdgeSAMPredictor", "MobileSAMAutomaticMaskGenerator",
           "MobileSAMPredictor", "SAMAutomaticMaskGenerator", "SAMHQAutomaticMaskGenerator", "SAMHQPredictor",
           "SAMPredictor", "SamFamilyMaskGenerator", "SamFamilyPredictor"]


def choose_weights(cfg: Any, flags: dict[str, bool], flag_configs: dict[str, Any], default: Any,
                   read_cfg: Any, cfg_name: str) -> tuple[Any, str | None, str | None]:
    """(sam_core config, ckptpath, chosen flag) from a config dict or one ``use_default_*`` flag.

    ``default``: the config used when neither is given (None: sssegmentation's default config is incomplete
    there, so that is an error). ``read_cfg``: reads ``cfg`` into a sam_core config.
    """
    flag = chosen_flag(cfg, flags, cfg_name)
    if cfg is not None:
        return read_cfg(cfg), cfg.get("ckptpath"), None
    if flag is not None:
        return flag_configs[flag], SSSEG_CHECKPOINT_URLS[flag], flag
    if default is None:
        raise ValueError(f"give {cfg_name} or set one of {list(flags)}: sssegmentation's default {cfg_name} leaves "
                         "the encoder's depth and width unset")
    return default, None, None


class SsssegSamModel:
    """``predictor.model``: the sam_core model, with the attributes and methods of sssegmentation's SAM module
    that sam_core names differently (``inference``, ``postprocessmasks``). Everything else (``image_encoder``
    with its ``img_size``, ``device``, ``preprocess``, ``state_dict``...) is the sam_core model's."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.sam_core_model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sam_core_model, name)

    def inference(self, batched_input: list[dict[str, Any]], multimask_output: bool = False,
                  **options: Any) -> list[dict[str, torch.Tensor]]:
        """Batched inference on already resized images (see ``sam_core.models.sam.Sam.forward``); SAM-HQ also takes
        ``hq_token_only``."""
        return self.sam_core_model(batched_input, multimask_output, **options)

    def postprocessmasks(self, masks: torch.Tensor, input_size: Any, original_size: Any) -> torch.Tensor:
        return self.sam_core_model.postprocess_masks(masks, tuple(input_size), tuple(original_size))


class SsssegEdgeSamModel(SsssegSamModel):
    """``predictor.model`` of an EdgeSAM predictor: ``inference`` takes EdgeSAM's options."""

    def inference(self, batched_input: list[dict[str, Any]], num_multimask_outputs: int = 1,  # type: ignore[override]
                  use_stability_score: bool = False) -> list[dict[str, torch.Tensor]]:
        """Batched inference on already resized images (see ``sam_core.models.edge_sam.EdgeSam.forward``):
        ``num_multimask_outputs`` 1, 3 or 4 masks per prompt set, scored by ``use_stability_score``."""
        return self.sam_core_model(batched_input, num_multimask_outputs, use_stability_score)


class SamFamilyPredictor:
    """What sssegmentation's SAM, SAM-HQ, MobileSAM and EdgeSAM predictors share.

    A subclass names its ``use_default_*`` flags in ``FLAGS`` (flag -> the sam_core config of its file, whose
    URL is in ``SSSEG_CHECKPOINT_URLS``), calls :meth:`_setup` from an ``__init__`` with
    sssegmentation's keywords, and overrides :meth:`read_config` (how ``sam_cfg`` is read) and
    ``MODEL_WRAPPER`` (``predictor.model``) where its family needs to. Methods whose arguments differ from
    SAM's call :meth:`_predict` / :meth:`_predicttorch` with the model's decode options.

    Attributes: ``model`` (:class:`SsssegSamModel`), ``transform`` (:class:`ResizeLongestSide`),
    ``features``, ``original_size``, ``input_size``, ``is_image_set``, ``device``.
    """

    FLAGS: ClassVar[dict[str, Any]] = {}  # use_default_* flag -> the sam_core config of its file
    DEFAULT_CONFIG: ClassVar[Any] = None  # the model without sam_cfg and flags (None: an error)
    LENIENT_FLAGS: ClassVar[frozenset[str]] = frozenset()  # flags whose files sssegmentation loads non-strictly
    HQ: ClassVar[bool] = False
    MODEL_WRAPPER: ClassVar[type[SsssegSamModel]] = SsssegSamModel
    decode_options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def read_config(cls, sam_cfg: dict[str, Any]) -> Any:
        """The sam_core config of a ``sam_cfg`` dict (``sam_config_from_ssseg``)."""
        return sam_config_from_ssseg(sam_cfg, hq=cls.HQ)

    def _setup(self, sam_cfg: dict[str, Any] | None, flags: dict[str, bool], device: str | torch.device,
               load_ckpt_strict: bool) -> None:
        config, ckptpath, flag = choose_weights(sam_cfg, flags, self.FLAGS, self.DEFAULT_CONFIG, self.read_config,
                                                "sam_cfg")
        strict = load_ckpt_strict and flag not in self.LENIENT_FLAGS
        core = load_model(config, ckptpath, strict, resolve_device(device))
        # torch upscaling: the reference's interpolation, so that masks and logits are its own.
        self._predictor = Predictor(core, mask_upscaling="torch")
        self.model = self.MODEL_WRAPPER(core)
        self.transform = ResizeLongestSide(core.image_encoder.img_size)

    device = forwarded("_predictor", "device")
    is_image_set = forwarded("_predictor", "is_image_set")
    features = forwarded("_predictor", "features")
    original_size = forwarded("_predictor", "original_size")
    input_size = forwarded("_predictor", "input_size")

    def setimage(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embed an HxWx3 uint8 image in ``image_format`` ("RGB" or "BGR")."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        self._predictor.set_image(image, image_format)

    def settorchimage(self, transformed_image: torch.Tensor, original_image_size: tuple[int, int]) -> None:
        """Embed a 1x3xHxW image already resized by ``self.transform`` (long side ``img_size``)."""
        self._predictor.set_torch_image(transformed_image, original_image_size)

    def _predict(self, point_coords: np.ndarray | None, point_labels: np.ndarray | None, box: np.ndarray | None,
                 mask_input: np.ndarray | None, multimask_output: bool, return_logits: bool,
                 **options: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._predictor.is_image_set:
            raise RuntimeError("an image must be set with .setimage(...) before mask prediction")
        return self._predictor.predict(point_coords, point_labels, box, mask_input, multimask_output, return_logits,
                                       **options)

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None, multimask_output: bool = True,
                return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt in original image pixels.

        Args:
            point_coords: Nx2 (x, y); point_labels: N (1 foreground, 0 background); box: XYXY;
                mask_input: 1xSxS low-res logits of an earlier call.
            multimask_output: three candidate masks instead of one. return_logits: logits instead of booleans.

        Returns:
            masks CxHxW (bool, or float32 logits), scores C (float32), low-res logits CxSxS (float32).
        """
        return self._predict(point_coords, point_labels, box, mask_input, multimask_output, return_logits)

    def _predicttorch(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                      boxes: torch.Tensor | None, mask_input: torch.Tensor | None, multimask_output: bool,
                      return_logits: bool, **options: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self._predictor.is_image_set:
            raise RuntimeError("an image must be set with .setimage(...) before mask prediction")
        return self._predictor.predict_torch(point_coords, point_labels, boxes, mask_input, multimask_output,
                                             return_logits, **options)

    def predicttorch(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                     boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                     multimask_output: bool = True, return_logits: bool = False,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks for B prompts given as tensors in the resized frame (``self.transform.applycoordstorch``).

        Args:
            point_coords: BxNx2; point_labels: BxN; boxes: Bx4; mask_input: Bx1xSxS.

        Returns:
            masks BxCxHxW, scores BxC, low-res logits BxCxSxS, on the model's device.
        """
        return self._predicttorch(point_coords, point_labels, boxes, mask_input, multimask_output, return_logits)

    def getimageembedding(self) -> torch.Tensor:
        """The set image's embedding, 1xCxhxw."""
        if not self._predictor.is_image_set:
            raise RuntimeError("an image must be set with .setimage(...) to generate an embedding")
        return self._predictor.get_image_embedding()

    def resetimage(self) -> None:
        self._predictor.reset_image()


class SAMPredictor(SamFamilyPredictor):
    """sssegmentation's ``SAMPredictor``: ``sam_cfg`` (its dict, with ``ckptpath``) or one of
    ``use_default_sam_h/l/b`` (Meta's ViT-H/L/B files)."""

    FLAGS = {"use_default_sam_h": SAM_CONFIGS["vit_h"], "use_default_sam_l": SAM_CONFIGS["vit_l"],
             "use_default_sam_b": SAM_CONFIGS["vit_b"]}

    def __init__(self, sam_cfg: dict[str, Any] | None = None, use_default_sam_h: bool = False,
                 use_default_sam_l: bool = False, use_default_sam_b: bool = False, device: str = "cuda",
                 load_ckpt_strict: bool = True) -> None:
        self._setup(sam_cfg, {"use_default_sam_h": use_default_sam_h, "use_default_sam_l": use_default_sam_l,
                              "use_default_sam_b": use_default_sam_b}, device, load_ckpt_strict)


class SAMHQPredictor(SamFamilyPredictor):
    """sssegmentation's ``SAMHQPredictor``: ``sam_cfg`` (with ``head.vit_dim``) or one of
    ``use_default_samhq_t_5m/b/l/h``. As sssegmentation, the tiny file is loaded non-strictly (it keeps
    TinyViT's classifier head); ``predict``, ``predicttorch`` and ``model.inference`` take ``hq_token_only``."""

    FLAGS = {"use_default_samhq_t_5m": SAM_HQ_CONFIGS["sam_hq_vit_tiny"],
             "use_default_samhq_b": SAM_HQ_CONFIGS["sam_hq_vit_b"],
             "use_default_samhq_l": SAM_HQ_CONFIGS["sam_hq_vit_l"],
             "use_default_samhq_h": SAM_HQ_CONFIGS["sam_hq_vit_h"]}
    LENIENT_FLAGS = frozenset({"use_default_samhq_t_5m"})
    HQ = True

    def __init__(self, sam_cfg: dict[str, Any] | None = None, use_default_samhq_t_5m: bool = False,
                 use_default_samhq_b: bool = False, use_default_samhq_l: bool = False,
                 use_default_samhq_h: bool = False, device: str = "cuda", load_ckpt_strict: bool = True) -> None:
        self._setup(sam_cfg, {"use_default_samhq_t_5m": use_default_samhq_t_5m,
                              "use_default_samhq_b": use_default_samhq_b, "use_default_samhq_l": use_default_samhq_l,
                              "use_default_samhq_h": use_default_samhq_h}, device, load_ckpt_strict)

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None, multimask_output: bool = True,
                return_logits: bool = False, hq_token_only: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`SamFamilyPredictor.predict`; ``hq_token_only``: the HQ token's mask alone (else its sum with
        SAM's best mask). One mask either way."""
        return self._predict(point_coords, point_labels, box, mask_input, multimask_output, return_logits,
                             hq_token_only=hq_token_only)

    def predicttorch(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                     boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                     multimask_output: bool = True, return_logits: bool = False, hq_token_only: bool = False,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._predicttorch(point_coords, point_labels, boxes, mask_input, multimask_output, return_logits,
                                  hq_token_only=hq_token_only)


class MobileSAMPredictor(SamFamilyPredictor):
    """sssegmentation's ``MobileSAMPredictor``: ``sam_cfg``, else MobileSAM's TinyViT-5M model, with the weights
    of sssegmentation's ``sam_vit_t_5m.pth`` if ``use_default_sam_t_5m``. As sssegmentation, files load
    non-strictly by default (``load_ckpt_strict=False``)."""

    FLAGS = {"use_default_sam_t_5m": MobileSamConfig()}
    DEFAULT_CONFIG = MobileSamConfig()

    def __init__(self, sam_cfg: dict[str, Any] | None = None, use_default_sam_t_5m: bool = False,
                 device: str = "cuda", load_ckpt_strict: bool = False) -> None:
        self._setup(sam_cfg, {"use_default_sam_t_5m": use_default_sam_t_5m}, device, load_ckpt_strict)


class EdgeSAMPredictor(SamFamilyPredictor):
    """sssegmentation's ``EdgeSAMPredictor``: ``sam_cfg`` (an ``EdgeSAMRepViT`` backbone, ``arch`` m1, m2 or m3,
    and an optional top-level ``stability_score_offset``), else EdgeSAM's RepViT-M1 model, with the weights of
    sssegmentation's ``edge_sam.pth`` / ``edge_sam_3x.pth`` if ``use_default_edgesam`` /
    ``use_default_edgesam_3x`` (random weights with neither, as there).

    ``predict``, ``predicttorch`` and ``model.inference`` take EdgeSAM's ``num_multimask_outputs`` (1: the
    single-mask output, 3: the multimask ones, 4: all) and ``use_stability_score`` (score masks by the
    stability of their low-res logits instead of the IoU head), with sssegmentation's defaults, which differ:
    ``predict`` 3 outputs and IoU-head scores, ``predicttorch`` 3 outputs and stability scores,
    ``model.inference`` 1 output and IoU-head scores. Point label -2 (EdgeSAM's "ignore") is refused, as
    sssegmentation's SAM prompt encoder reads it otherwise.

    Attributes: those of :class:`SamFamilyPredictor`, and ``stability_score_offset`` (``sam_cfg``'s, else 1.0).
    """

    FLAGS = {"use_default_edgesam": EDGE_SAM_CONFIGS["edge_sam"],
             "use_default_edgesam_3x": EDGE_SAM_CONFIGS["edge_sam_3x"]}
    DEFAULT_CONFIG = EDGE_SAM_CONFIGS["edge_sam"]
    MODEL_WRAPPER = SsssegEdgeSamModel

    def __init__(self, sam_cfg: dict[str, Any] | None = None, use_default_edgesam: bool = False,
                 use_default_edgesam_3x: bool = False, device: str = "cuda", load_ckpt_strict: bool = True) -> None:
        self._setup(sam_cfg, {"use_default_edgesam": use_default_edgesam,
                              "use_default_edgesam_3x": use_default_edgesam_3x}, device, load_ckpt_strict)
        # Checked by read_config; EdgeSam scores stability with its own offset, as sssegmentation's model does.
        self.stability_score_offset = float(sam_cfg.get("stability_score_offset", 1.0)) if sam_cfg else 1.0
        self.model.sam_core_model.stability_score_offset = self.stability_score_offset

    @classmethod
    def read_config(cls, sam_cfg: dict[str, Any]) -> Any:
        return sam_config_from_ssseg(sam_cfg, edge=True)

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None, num_multimask_outputs: int = 3,
                return_logits: bool = False, use_stability_score: bool = False,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`SamFamilyPredictor.predict` with ``num_multimask_outputs`` (1, 3 or 4) masks, scored by the IoU
        head, or by the stability of their low-res logits with ``use_stability_score``."""
        with self.model.sam_core_model.decoding_options(num_multimask_outputs=num_multimask_outputs,
                                                        use_stability_score=use_stability_score):
            return self._predict(point_coords, point_labels, box, mask_input, True, return_logits)

    def predicttorch(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                     boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                     num_multimask_outputs: int = 3, return_logits: bool = False, use_stability_score: bool = True,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`SamFamilyPredictor.predicttorch` with ``num_multimask_outputs`` (1, 3 or 4) masks. Unlike
        :meth:`predict`, ``use_stability_score`` defaults to True, as in sssegmentation (its generator relies on
        it): the scores are then the stability of the low-res logits, not the IoU head's predictions."""
        with self.model.sam_core_model.decoding_options(num_multimask_outputs=num_multimask_outputs,
                                                        use_stability_score=use_stability_score):
            return self._predicttorch(point_coords, point_labels, boxes, mask_input, True, return_logits)


class _WithDecodeOptions:
    """A model whose ``score_prompts`` always gets ``options`` (the generator passes none): SAM-HQ's
    ``generate(image, hq_token_only=True)``."""

    def __init__(self, model: torch.nn.Module, **options: Any) -> None:
        self.wrapped = model
        self.options = options

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    def score_prompts(self, image: Any, prompts: Any, multimask_output: bool) -> Any:
        return self.wrapped.score_prompts(image, prompts, multimask_output, **self.options)


class SamFamilyMaskGenerator:
    """What sssegmentation's SAM, SAM-HQ and MobileSAM generators share: its options on sam_core's
    :class:`~sam_core.pipelines.mask_generator.AutomaticMaskGenerator`, which returns the same records
    (``segmentation``, ``area``, ``bbox``, ``predicted_iou``, ``point_coords``, ``stability_score``, ``crop_box``)."""

    def _setup(self, predictor: SamFamilyPredictor, options: dict[str, Any]) -> None:
        self.predictor = predictor
        self._options = options
        self._generators: dict[tuple, AutomaticMaskGenerator] = {}
        generator = self._generator()
        for name in ("point_grids", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
                     "stability_score_offset", "box_nms_thresh", "crop_n_layers", "crop_nms_thresh",
                     "crop_overlap_ratio", "crop_n_points_downscale_factor", "min_mask_region_area", "output_mode"):
            setattr(self, name, getattr(generator, name))

    def _generator(self, **decode_options: Any) -> AutomaticMaskGenerator:
        key = tuple(sorted(decode_options.items()))
        if key not in self._generators:
            model = self.predictor.model.sam_core_model
            if decode_options:
                model = _WithDecodeOptions(model, **decode_options)
            self._generators[key] = AutomaticMaskGenerator(model, **self._options)
        return self._generators[key]

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Mask records for an HxWx3 uint8 RGB image."""
        return self._generator().generate(image)


def _generator_options(points_per_side: int | None, points_per_batch: int, pred_iou_thresh: float,
                       stability_score_thresh: float, stability_score_offset: float, box_nms_thresh: float,
                       crop_n_layers: int, crop_nms_thresh: float, crop_overlap_ratio: float,
                       crop_n_points_downscale_factor: int, point_grids: list[np.ndarray] | None,
                       min_mask_region_area: int, output_mode: str) -> dict[str, Any]:
    return dict(points_per_side=points_per_side, points_per_batch=points_per_batch, pred_iou_thresh=pred_iou_thresh,
                stability_score_thresh=stability_score_thresh, stability_score_offset=stability_score_offset,
                box_nms_thresh=box_nms_thresh, crop_n_layers=crop_n_layers, crop_nms_thresh=crop_nms_thresh,
                crop_overlap_ratio=crop_overlap_ratio, crop_n_points_downscale_factor=crop_n_points_downscale_factor,
                point_grids=point_grids, min_mask_region_area=min_mask_region_area, output_mode=output_mode)


class SAMAutomaticMaskGenerator(SamFamilyMaskGenerator):
    """sssegmentation's ``SAMAutomaticMaskGenerator``: its options, and the model of ``sam_cfg`` /
    ``use_default_sam_*``, or a ready ``user_defined_sam_predictor`` (then neither may be given)."""

    def __init__(self, points_per_side: int | None = 32, points_per_batch: int = 64, pred_iou_thresh: float = 0.88,
                 stability_score_thresh: float = 0.95, stability_score_offset: float = 1.0, device: str = "cuda",
                 box_nms_thresh: float = 0.7, crop_n_layers: int = 0, crop_nms_thresh: float = 0.7,
                 crop_overlap_ratio: float = 512 / 1500, crop_n_points_downscale_factor: int = 1,
                 point_grids: list[np.ndarray] | None = None, min_mask_region_area: int = 0,
                 output_mode: str = "binary_mask", sam_cfg: dict[str, Any] | None = None,
                 use_default_sam_h: bool = False, use_default_sam_l: bool = False, use_default_sam_b: bool = False,
                 user_defined_sam_predictor: SamFamilyPredictor | None = None, load_ckpt_strict: bool = True) -> None:
        options = _generator_options(points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh,
                                     stability_score_offset, box_nms_thresh, crop_n_layers, crop_nms_thresh,
                                     crop_overlap_ratio, crop_n_points_downscale_factor, point_grids,
                                     min_mask_region_area, output_mode)
        if user_defined_sam_predictor is not None:
            if sam_cfg is not None or use_default_sam_h or use_default_sam_l or use_default_sam_b:
                raise ValueError("give either user_defined_sam_predictor or sam_cfg / use_default_sam_*, not both")
            predictor = user_defined_sam_predictor
        else:
            predictor = SAMPredictor(sam_cfg, use_default_sam_h, use_default_sam_l, use_default_sam_b, device,
                                     load_ckpt_strict)
        self._setup(predictor, options)


class SAMHQAutomaticMaskGenerator(SamFamilyMaskGenerator):
    """sssegmentation's ``SAMHQAutomaticMaskGenerator``; ``generate`` takes ``hq_token_only``."""

    def __init__(self, points_per_side: int | None = 32, points_per_batch: int = 64, pred_iou_thresh: float = 0.88,
                 stability_score_thresh: float = 0.95, stability_score_offset: float = 1.0, device: str = "cuda",
                 box_nms_thresh: float = 0.7, crop_n_layers: int = 0, crop_nms_thresh: float = 0.7,
                 crop_overlap_ratio: float = 512 / 1500, crop_n_points_downscale_factor: int = 1,
                 point_grids: list[np.ndarray] | None = None, min_mask_region_area: int = 0,
                 output_mode: str = "binary_mask", sam_cfg: dict[str, Any] | None = None,
                 use_default_samhq_t_5m: bool = False, use_default_samhq_b: bool = False,
                 use_default_samhq_l: bool = False, use_default_samhq_h: bool = False,
                 load_ckpt_strict: bool = True) -> None:
        predictor = SAMHQPredictor(sam_cfg, use_default_samhq_t_5m, use_default_samhq_b, use_default_samhq_l,
                                   use_default_samhq_h, device, load_ckpt_strict)
        self._setup(predictor, _generator_options(
            points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh, stability_score_offset,
            box_nms_thresh, crop_n_layers, crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor,
            point_grids, min_mask_region_area, output_mode))

    def generate(self, image: np.ndarray, hq_token_only: bool = False) -> list[dict[str, Any]]:
        """Mask records; ``hq_token_only``: from the HQ token's masks alone."""
        generator = self._generator(hq_token_only=True) if hq_token_only else self._generator()
        return generator.generate(image)


class MobileSAMAutomaticMaskGenerator(SamFamilyMaskGenerator):
    """sssegmentation's ``MobileSAMAutomaticMaskGenerator`` (files load non-strictly by default, as there)."""

    def __init__(self, points_per_side: int | None = 32, points_per_batch: int = 64, pred_iou_thresh: float = 0.88,
                 stability_score_thresh: float = 0.95, stability_score_offset: float = 1.0, device: str = "cuda",
                 box_nms_thresh: float = 0.7, crop_n_layers: int = 0, crop_nms_thresh: float = 0.7,
                 crop_overlap_ratio: float = 512 / 1500, crop_n_points_downscale_factor: int = 1,
                 point_grids: list[np.ndarray] | None = None, min_mask_region_area: int = 0,
                 output_mode: str = "binary_mask", sam_cfg: dict[str, Any] | None = None,
                 use_default_sam_t_5m: bool = False, load_ckpt_strict: bool = False) -> None:
        predictor = MobileSAMPredictor(sam_cfg, use_default_sam_t_5m, device, load_ckpt_strict)
        self._setup(predictor, _generator_options(
            points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh, stability_score_offset,
            box_nms_thresh, crop_n_layers, crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor,
            point_grids, min_mask_region_area, output_mode))


class EdgeSAMAutomaticMaskGenerator(SamFamilyMaskGenerator):
    """sssegmentation's ``EdgeSAMAutomaticMaskGenerator``: masks from 3 outputs per point, their
    ``predicted_iou`` the stability of their low-res logits (with ``sam_cfg``'s ``stability_score_offset``, the
    predictor's), filtered by ``pred_iou_thresh`` like the IoU head's; ``stability_score`` is measured on the
    upscaled logits with this generator's ``stability_score_offset``, as for SAM."""

    def __init__(self, points_per_side: int | None = 32, points_per_batch: int = 64, pred_iou_thresh: float = 0.88,
                 stability_score_thresh: float = 0.95, stability_score_offset: float = 1.0, device: str = "cuda",
                 box_nms_thresh: float = 0.7, crop_n_layers: int = 0, crop_nms_thresh: float = 0.7,
                 crop_overlap_ratio: float = 512 / 1500, crop_n_points_downscale_factor: int = 1,
                 point_grids: list[np.ndarray] | None = None, min_mask_region_area: int = 0,
                 output_mode: str = "binary_mask", sam_cfg: dict[str, Any] | None = None,
                 use_default_edgesam: bool = False, use_default_edgesam_3x: bool = False,
                 load_ckpt_strict: bool = True) -> None:
        predictor = EdgeSAMPredictor(sam_cfg, use_default_edgesam, use_default_edgesam_3x, device, load_ckpt_strict)
        # sam_core's generator scores an EdgeSam's masks by stability (EdgeSam.generator_defaults), as here.
        self._setup(predictor, _generator_options(
            points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh, stability_score_offset,
            box_nms_thresh, crop_n_layers, crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor,
            point_grids, min_mask_region_area, output_mode))
