"""transformers' ``SamModel``, ``SamHQModel`` and ``Sam2Model`` calls on sam_core models: ``from_pretrained``,
``get_image_embeddings`` and ``model(**inputs)`` with transformers' tensor shapes."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from sam_core.interface import PreparedImage, PromptableSegmenter, Prompts
from sam_core.io.checkpoints import load_sam

# transformers' label of padding points; sam_core's models pad with Meta's -1 ("not a point").
_TRANSFORMERS_PAD_LABEL = -10


class TransformersScores:
    """Scored prompt sets of a sam_core model, as transformers' model of the family returns them.

    For SAM-HQ with ``multimask_output`` (and not ``hq_token_only``), transformers returns SAM's three masks
    sorted by predicted IoU, each plus the HQ token's mask, where segment-anything-hq (and sam_core) return the
    best one alone; every other case is sam_core's own. Build with :meth:`score`."""

    def __init__(self, model: PromptableSegmenter, scored: Any, token_order: torch.Tensor | None,
                 iou_predictions: torch.Tensor) -> None:
        self.model, self.scored, self.token_order = model, scored, token_order
        self.iou_predictions = iou_predictions  # (B, M)

    @classmethod
    def score(cls, model: PromptableSegmenter, prepared: PreparedImage, prompts: Prompts, multimask_output: bool,
              **options: Any) -> TransformersScores:
        """``model.score_prompts``, in transformers' outputs."""
        unknown = sorted(set(options) - model.decode_options)
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not an option of {model.family} models (their options: "
                             f"{sorted(model.decode_options) or 'none'})")
        scored = model.score_prompts(prepared, prompts, multimask_output, **options)
        if model.family == "sam_hq" and multimask_output and not options.get("hq_token_only"):
            iou, order = scored.decoded.iou_pred[:, 1:].sort(dim=1, descending=True)
            return cls(model, scored, order + 1, iou)
        return cls(model, scored, None, scored.iou_predictions)

    @property
    def extras(self) -> dict[str, torch.Tensor]:
        return dict(getattr(self.scored, "extras", {}))

    def take(self, index: torch.Tensor) -> TransformersScores:
        """The prompt sets at integer ``index``."""
        order = None if self.token_order is None else self.token_order[index]
        return TransformersScores(self.model, self.scored.take(index), order, self.iou_predictions[index])

    def draw(self, extent: tuple[int, int] | None = None) -> torch.Tensor:
        """Low-res logits (B, M, S, S) (or the leading ``extent`` rows and columns, and maybe more)."""
        if self.token_order is not None:
            scored = self.scored
            return torch.cat([self.model.mask_decoder.hq_masks(scored.decoded, tokens, scored.hq_features, False)
                              for tokens in self.token_order.T], dim=1)
        if extent is None:
            return self.model.draw_masks(self.scored)
        return self.model.draw_mask_corners(self.scored, extent)


@dataclass
class SamImageSegmentationOutput:
    """``model(**inputs)``'s result: ``iou_scores`` (B, P, M) and ``pred_masks`` (B, P, M, s, s) low-res logits,
    for B images, P prompt sets each, M masks per set (3 with ``multimask_output``, else 1)."""

    iou_scores: torch.Tensor
    pred_masks: torch.Tensor
    vision_hidden_states: Any = None
    vision_attentions: Any = None
    mask_decoder_attentions: Any = None

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, int):
            return self.to_tuple()[key]
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [field.name for field in fields(self) if getattr(self, field.name) is not None]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, key) for key in self.keys())


@dataclass
class Sam2ImageSegmentationOutput(SamImageSegmentationOutput):
    """SAM 2's result: also ``object_score_logits`` (B, P, 1) and the ``image_embeddings`` used."""

    object_score_logits: torch.Tensor | None = None
    image_embeddings: Any = None


class SamModel(nn.Module):
    """A sam_core model of any family behind transformers' ``SamModel`` calls.

    Args:
        model (PromptableSegmenter): The sam_core model (e.g. ``sam_core.load_sam(...)``).
    """

    output_type = SamImageSegmentationOutput

    def __init__(self, model: PromptableSegmenter) -> None:
        super().__init__()
        self.model = model

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, device: str | torch.device | None = None,
                        torch_dtype: torch.dtype | None = None, dtype: torch.dtype | None = None,
                        **unused: Any) -> SamModel:
        """Load weights with ``sam_core.load_sam``: a Hugging Face hub id or ``save_pretrained`` folder (a local
        folder is read, never downloaded), a Meta ``.pth`` / ``.pt``, a sam_core ``.safetensors`` or a registry
        name; any family. Options transformers' ``from_pretrained`` takes and sam_core does not need are ignored.

        Returns:
            (SamModel): The model in eval mode, on ``device`` (default CPU) in ``dtype`` (default the file's).

        Raises:
            sam_core.errors.CheckpointError: If the weights cannot be found or read.
        """
        return cls(load_sam(source, device=device, dtype=dtype or torch_dtype))

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @torch.no_grad()
    def get_image_embeddings(self, pixel_values: torch.Tensor) -> Any:
        """(B, 3, S, S) ``pixel_values`` -> the image embedding (B, C, s, s) for SAM; for families with more
        features, a tuple of them, embedding first (SAM-HQ: the early ViT features; SAM 2: the two high-res
        maps). ``model(image_embeddings=...)`` takes either back."""
        features = self._encode(pixel_values)
        if len(features) == 1:
            return features[self.model.embedding_key]
        return tuple(features[name] for name in self._feature_order())

    def _feature_order(self) -> list[str]:
        """The order of the features in ``get_image_embeddings`` (transformers': SAM-HQ's embedding first, SAM
        2's last)."""
        key = self.model.embedding_key
        others = [name for name in self.model.feature_shapes if name != key]
        return [*others, key] if self.embedding_last else [key, *others]

    embedding_last = False

    def _encode(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise ValueError("pixel_values must be a (batch, 3, height, width) tensor from the processor, got "
                             f"{getattr(pixel_values, 'shape', type(pixel_values).__name__)}")
        side = self.model.image_size
        if tuple(pixel_values.shape[-2:]) != (side, side):
            raise ValueError(f"pixel_values are {tuple(pixel_values.shape[-2:])}; this model takes {side}x{side} "
                             "(use the processor of the same checkpoint)")
        return self.model.encode(pixel_values.to(self.model.device, self.model.dtype))

    def _features(self, pixel_values: torch.Tensor | None, image_embeddings: Any,
                  intermediate_embeddings: Any) -> dict[str, torch.Tensor]:
        if (pixel_values is None) == (image_embeddings is None):
            raise ValueError("give exactly one of pixel_values and image_embeddings")
        if pixel_values is not None:
            return self._encode(pixel_values)
        names = self._feature_order()
        given = list(image_embeddings) if isinstance(image_embeddings, (tuple, list)) else [image_embeddings]
        if intermediate_embeddings is not None:
            given += list(intermediate_embeddings) if isinstance(intermediate_embeddings, (tuple, list)) else [
                intermediate_embeddings]
        if len(given) != len(names):
            raise ValueError(f"image_embeddings: this model needs {len(names)} feature tensors ({', '.join(names)}), "
                             f"as get_image_embeddings returns them; got {len(given)}")
        return {name: tensor.to(self.model.device, self.model.dtype) for name, tensor in zip(names, given)}

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor | None = None, input_points: torch.Tensor | None = None,
                input_labels: torch.Tensor | None = None, input_boxes: torch.Tensor | None = None,
                input_masks: torch.Tensor | None = None, image_embeddings: Any = None,
                multimask_output: bool = True, intermediate_embeddings: Any = None,
                **options: Any) -> SamImageSegmentationOutput:
        """Masks for the prompts of each image, in transformers' shapes.

        Args:
            pixel_values: (B, 3, S, S) from the processor; or ``image_embeddings`` from ``get_image_embeddings``.
            input_points: (B, P, N, 2) points in the model's frame (the processor's ``input_points``).
            input_labels: (B, P, N): 1 foreground, 0 background, -1 not a point, -10 padding (default all 1).
            input_boxes: (B, P, 4) boxes in the model's frame; with points, one box per prompt set.
            input_masks: (B, s, s), (B, 1, s, s) or (B, P, s, s) low-res logits of earlier predictions.
            multimask_output: Three masks per prompt set (default) or one.
            intermediate_embeddings: SAM-HQ's early features, when ``image_embeddings`` is the embedding alone.
            **options: The family's decode options (SAM-HQ: ``hq_token_only``); transformers' per-call options
                that change nothing here (``original_sizes``, ``reshaped_input_sizes``, ``output_attentions``
                ...) are accepted when None or False.

        Returns:
            (SamImageSegmentationOutput): ``iou_scores`` (B, P, M), ``pred_masks`` (B, P, M, s, s); SAM 2 also
                ``object_score_logits`` (B, P, 1).

        Raises:
            ValueError: If the inputs are missing, of other shapes, or their batch sizes disagree.
        """
        for name in ("original_sizes", "reshaped_input_sizes", "return_dict"):
            options.pop(name, None)
        unsupported = [name for name, value in options.items()
                       if name not in self.model.decode_options and value not in (None, False)]
        if unsupported:
            raise ValueError(f"{', '.join(unsupported)}: not supported by sam_core's {type(self).__name__}")
        decode_options = {name: value for name, value in options.items() if name in self.model.decode_options}
        features = self._features(pixel_values, image_embeddings, intermediate_embeddings)
        images = next(iter(features.values())).shape[0]
        points, labels, boxes, masks = self._check_prompts(images, input_points, input_labels, input_boxes,
                                                           input_masks)
        low_res, scores, extras = [], [], []
        for index in range(images):
            prepared = self.model.prepare_image({name: value[index:index + 1] for name, value in features.items()})
            prompts = Prompts(
                point_coords=None if points is None else points[index],
                point_labels=None if labels is None else labels[index],
                boxes=None if boxes is None else boxes[index],
                mask_input=None if masks is None else masks[index])
            scored = TransformersScores.score(self.model, prepared, prompts, multimask_output, **decode_options)
            low_res.append(scored.draw())
            scores.append(scored.iou_predictions)
            extras.append(scored.extras)
        output = {"iou_scores": torch.stack(scores), "pred_masks": torch.stack(low_res)}
        if extras[0].get("object_score_logits") is not None:
            output["object_score_logits"] = torch.stack([extra["object_score_logits"] for extra in extras])
        return self._output(output, features)

    def _output(self, output: dict[str, torch.Tensor], features: dict[str, torch.Tensor]) -> Any:
        return self.output_type(**{key: value for key, value in output.items()
                                   if key in {field.name for field in fields(self.output_type)}})

    def _check_prompts(self, images: int, points: Any, labels: Any, boxes: Any, masks: Any) -> tuple[Any, ...]:
        device = self.model.device
        sets = None
        if points is not None:
            points = torch.as_tensor(points)
            if points.dim() != 4 or points.shape[-1] != 2:
                raise ValueError("input_points must be (batch, prompt sets, points, 2) (the processor's nesting "
                                 f"[image][prompt set][point][x, y]); got shape {tuple(points.shape)}")
            labels = torch.ones(points.shape[:-1], dtype=torch.int64) if labels is None else torch.as_tensor(labels)
            if labels.shape != points.shape[:-1]:
                raise ValueError(f"input_labels must be (batch, prompt sets, points) = {tuple(points.shape[:-1])}, "
                                 f"matching input_points; got {tuple(labels.shape)}")
            labels = torch.where(labels == _TRANSFORMERS_PAD_LABEL, -1, labels).to(device, torch.int64)
            points = points.to(device)
            sets = points.shape[1]
        if boxes is not None:
            boxes = torch.as_tensor(boxes)
            if boxes.dim() != 3 or boxes.shape[-1] != 4:
                raise ValueError("input_boxes must be (batch, boxes, 4) (the processor's nesting "
                                 f"[image][box][x0, y0, x1, y1]); got shape {tuple(boxes.shape)}")
            if sets is not None and boxes.shape[1] != sets:
                raise ValueError(f"with points, give one box per prompt set: {sets} point sets, {boxes.shape[1]} boxes")
            boxes = boxes.to(device)
            sets = boxes.shape[1]
        if masks is not None:
            masks = torch.as_tensor(masks).to(device, self.model.dtype)
            if masks.dim() == 3:
                masks = masks[:, None]
            side = self.model.mask_input_size
            if masks.dim() != 4 or masks.shape[-2:] != (side, side):
                raise ValueError(f"input_masks must be (batch, {side}, {side}) or (batch, prompt sets, {side}, "
                                 f"{side}); got shape {tuple(masks.shape)}")
            masks = masks.expand(-1, sets or masks.shape[1], -1, -1)[:, :, None]
        for name, prompt in (("input_points", points), ("input_boxes", boxes), ("input_masks", masks)):
            if prompt is not None and prompt.shape[0] != images:
                raise ValueError(f"{name} are for {prompt.shape[0]} images, the image inputs for {images}")
        return points, labels, boxes, masks


class SamHQModel(SamModel):
    """``SamModel`` for SAM-HQ weights: ``model(..., hq_token_only=True)`` returns the HQ mask alone."""


class Sam2Model(SamModel):
    """``SamModel`` for SAM 2 / 2.1 weights; outputs also carry ``object_score_logits`` (B, P, 1)."""

    output_type = Sam2ImageSegmentationOutput
    embedding_last = True

    def _output(self, output: dict[str, torch.Tensor], features: dict[str, torch.Tensor]) -> Any:
        embeddings = [features[name] for name in self._feature_order()]
        return Sam2ImageSegmentationOutput(**output, image_embeddings=embeddings)
