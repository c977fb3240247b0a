"""The one interface every model family implements (``PromptableSegmenter``), the data types between its stages,
and what the registry knows of a family (``ModelFamily``).

The stages, the optional hooks and how to add a family: docs/architecture.md."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from sam_core.transforms import ImageTransform

ImageFeatures = dict[str, torch.Tensor]
"""What ``encode`` returns: named tensors whose first axis indexes the images of the batch."""

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class GeneratorDefaults:
    """A family's defaults for the automatic mask generator's quality filters."""

    pred_iou_thresh: float
    stability_score_thresh: float
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    decode_options: Mapping[str, Any] = field(default_factory=dict)
    """Options the generator passes to ``score_prompts`` (EdgeSAM: ``use_stability_score=True``, so that its
    ``predicted_iou`` are stability scores, as EdgeSAM's generator has them)."""
    small_region_cleanup: str = "masks"
    """What the generator's ``min_mask_region_area`` cleans: ``"masks"`` (SAM's generator: holes and islands
    of the final masks, then NMS again) or ``"low_res"`` (SAM 2's: holes and sprinkles of up to that many
    pixels in the low-res logits, before upscaling; ``sam_core.pipelines.masks.clean_low_res_logits``)."""


@dataclass
class Prompts:
    """B prompt sets in the model's input frame (pixels of the resized image), already validated."""

    point_coords: torch.Tensor | None = None  # (B, N, 2) x, y
    point_labels: torch.Tensor | None = None  # (B, N): 1 foreground, 0 background, -1 padding
    boxes: torch.Tensor | None = None  # (B, 4) x0, y0, x1, y1
    mask_input: torch.Tensor | None = None  # (B, 1, S, S) low-res logits of an earlier prediction

    @property
    def batch_size(self) -> int:
        for prompt in (self.point_coords, self.boxes, self.mask_input):
            if prompt is not None:
                return prompt.shape[0]
        return 1

    def take(self, index: slice) -> Prompts:
        """The prompt sets at ``index``."""
        def rows(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value[index]
        return Prompts(rows(self.point_coords), rows(self.point_labels), rows(self.boxes), rows(self.mask_input))


@dataclass
class MaskPrediction:
    """The decoder's answer for B prompt sets."""

    low_res_logits: torch.Tensor  # (B, M, S, S)
    iou_predictions: torch.Tensor  # (B, M)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # family-specific, e.g. object scores


@dataclass
class PreparedImage:
    """One image's features and whatever prompt-independent decoder state the family computes once for
    every prompt on that image. Families subclass it to add that state."""

    features: ImageFeatures  # batch of one


class ScoredPrompts(Protocol):
    """Decoded prompt sets whose IoU predictions are known and whose masks are not drawn yet. A family may
    add ``extras``: a dict of per-prompt-set tensors (batch first) that ``decode`` returns with the masks."""

    iou_predictions: torch.Tensor  # (B, M)

    def take(self, index: torch.Tensor) -> ScoredPrompts:
        """The prompt sets at integer ``index``."""


class PromptableSegmenter(nn.Module, ABC):
    """A promptable segmentation model: encode an image once, then decode masks for any prompts."""

    family: ClassVar[str]
    """Name of the family in ``sam_core.registry.FAMILIES``."""
    embedding_key: ClassVar[str]
    """The feature that ``Predictor.get_image_embedding`` returns."""
    generator_defaults: ClassVar[GeneratorDefaults]
    mask_threshold: float = 0.0
    image_format: str = "RGB"
    low_res_logit_limit: ClassVar[float | None] = None
    """If set, the low-res logits a predictor hands back (for reuse as ``mask_input``) are clamped to
    +-this, as SAM 2's predictor does (32); the masks are drawn from the unclamped logits."""
    transform: ImageTransform
    config: Any
    decode_options: ClassVar[frozenset[str]] = frozenset()
    """Keyword options ``score_prompts`` takes beyond the prompts and ``multimask_output`` (SAM-HQ:
    ``hq_token_only``); ``decode`` and the Predictor pass them on and refuse any other."""
    parameter_roles: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """The parts fine-tuning works with, as parameter name prefixes: ``"image_encoder"`` (everything
    ``encode`` reads, so frozen whenever embeddings are cached), ``"prompt_encoder"`` and ``"mask_decoder"``.
    A name that matches the image encoder's prefixes belongs to it, whatever else it matches."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def image_size(self) -> int:
        """Side of the square model input."""
        return self.transform.target_length

    @property
    @abstractmethod
    def mask_input_size(self) -> int:
        """Side of the square low-res logits the decoder returns and accepts as ``mask_input``."""

    @property
    @abstractmethod
    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each feature ``encode`` returns, with its shape for one image (no batch axis)."""

    @abstractmethod
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) 0-255 images from ``transform.apply_image`` -> (B, 3, S, S) model input."""

    @abstractmethod
    def encode(self, images: torch.Tensor) -> ImageFeatures:
        """Preprocessed images (B, 3, S, S) -> named features, batch first."""

    @abstractmethod
    def prepare_image(self, features: ImageFeatures) -> PreparedImage:
        """One image's features (batch of one) -> its prompt-independent decoder state."""

    @abstractmethod
    def score_prompts(self, image: PreparedImage, prompts: Prompts, multimask_output: bool) -> ScoredPrompts:
        """Run the decoder up to the IoU predictions of the outputs that ``multimask_output`` selects."""

    @abstractmethod
    def draw_masks(self, scored: ScoredPrompts) -> torch.Tensor:
        """Low-res logits (B, M, S, S) of scored prompt sets."""

    def draw_mask_corners(self, scored: ScoredPrompts, extent: tuple[int, int]) -> torch.Tensor:
        """``draw_masks`` where only the leading ``extent`` = (rows, cols) of the logits are needed (those that
        upscaling to the image reads): (B, M, rows', cols') with rows' >= rows and cols' >= cols. By default
        the whole masks; a family that can draw less overrides it."""
        return self.draw_masks(scored)

    def decode(self, image: PreparedImage, prompts: Prompts, multimask_output: bool,
               **options: Any) -> MaskPrediction:
        """Masks and IoU predictions for B prompt sets on a prepared image (``options``: ``decode_options``)."""
        unknown = sorted(set(options) - self.decode_options)
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not an option of {self.family} models (their options: "
                             f"{sorted(self.decode_options) or 'none'})")
        scored = self.score_prompts(image, prompts, multimask_output, **options)
        return MaskPrediction(self.draw_masks(scored), scored.iou_predictions, dict(getattr(scored, "extras", {})))

    def postprocess_masks(self, low_res: torch.Tensor, input_size: tuple[int, ...],
                          original_size: tuple[int, ...]) -> torch.Tensor:
        """Low-res logits (..., S, S) -> logits at ``original_size``, in torch on the model's device."""
        return self.transform.upscale_logits(low_res, input_size, original_size, backend="torch")

    def upscale_matrices(self, side: int, input_size: tuple[int, ...],
                         original_size: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``postprocess_masks`` as the linear map it is, one matrix per axis (see
        ``ImageTransform.upscale_matrices``); a family that overrides one overrides both."""
        return self.transform.upscale_matrices(side, input_size, original_size)


@dataclass(frozen=True)
class OfficialCheckpoint:
    """A released checkpoint file: where it comes from and how to check it."""

    filename: str
    sha256: str | None  # None: not known from a verifiable source; the file is then never downloaded
    size: int | None  # bytes, None if unknown
    base_url: str = ""  # where the file is published; SAM_CORE_WEIGHTS_URL overrides it


@dataclass(frozen=True)
class ModelFamily:
    """What ``load_sam``, ``save_sam`` and the registry need to know about a family.

    Args:
        name: the family's name, as stored in sam_core checkpoints ("sam", "sam2", ...).
        config_type: its frozen config dataclass (with ``to_dict`` / ``from_dict``).
        configs: registry name -> config (``load_sam(name)``, ``build_sam(name)``).
        build: config -> randomly initialised model in eval mode.
        owns_checkpoint: whether a state dict with these tensor names (in any naming the family reads)
            belongs to this family (or to a family that ``specialises`` it).
        infer_config: (native state dict, origin) -> the config whose shapes it has.
        to_native_names: tensor names of a foreign format (Hugging Face) -> the family's own; the identity
            for names that are already native. Raises ``CheckpointError`` on anything else. By default a copy:
            a family whose files all use its own names (``sam_core.models.hf_names.reading_hf_names`` makes
            one for a family with a Hugging Face format).
        specialises: the families whose checkpoints this family's are a special case of (SAM-HQ's files are
            SAM's or MobileSAM's with an HQ token): where this family and one of those own a checkpoint, it is
            this family's.
        config_from_hf: (Hugging Face ``config.json`` dict, origin) -> config, if the family has a
            Hugging Face format.
        official_checkpoints: registry name -> released file.
        split_extras: native state dict -> (the model's tensors, tensors the family's files also hold that this
            model does not use, e.g. SAM 2's video-only modules). ``load_checkpoint`` hands the extras back
            apart; ``load_sam`` leaves them out.
        to_meta_file: native state dict -> the object Meta's code saves for this family (``torch.save``d by
            ``save_meta_checkpoint``, ``sam-convert DST.pth``); None if Meta's files hold more than the model.
    """

    name: str
    config_type: type
    configs: Mapping[str, Any]
    build: Callable[[Any], PromptableSegmenter]
    owns_checkpoint: Callable[[Collection[str]], bool]
    infer_config: Callable[[Mapping[str, torch.Tensor], str], Any]
    to_native_names: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]] = dict
    specialises: tuple[str, ...] = ()
    config_from_hf: Callable[[Mapping[str, Any], str], Any] | None = None
    official_checkpoints: Mapping[str, OfficialCheckpoint] = field(default_factory=dict)
    split_extras: Callable[[StateDict], tuple[StateDict, StateDict]] | None = None
    to_meta_file: Callable[[dict[str, torch.Tensor]], Any] | None = None

    def model_type_name(self, config: Any) -> str:
        """The registry name of ``config``, else a short description of a custom model."""
        for name, known in self.configs.items():
            if known == config and name != "default":
                return name
        return f"custom ({config.summary()})"
