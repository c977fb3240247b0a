"""Predictor: embed an image once, then decode masks for any number of point / box / mask prompts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sam_core.checkpoint import load_sam
from sam_core.modeling.transformer import ImageTokens
from sam_core.runtime import keep_freed_memory_by_default
from sam_core.transforms import ResizeLongestSide, to_rgb_uint8, upscale_mask_logits

Size = tuple[int, int]
Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]

_EMBEDDING_KEY = "image_embeddings"
_EMBEDDING_FORMAT = "sam_core.image_embedding.v1"


class Predictor:
    """Interactive SAM: ``set_image`` runs the heavy image encoder once, ``predict`` is then cheap.

    Works with any model exposing the reference ``Sam`` interface (``image_encoder``, ``prompt_encoder``,
    ``mask_decoder``, ``preprocess``, ``postprocess_masks``), so code written for
    ``segment_anything.SamPredictor`` runs unchanged. The public attributes mirror the reference:
    ``model``, ``transform``, ``features`` (BxCxhxw), ``original_size`` and ``input_size`` (H, W of the
    single set image), ``is_image_set``. ``original_sizes`` / ``input_sizes`` hold one entry per image
    set with ``set_images``.
    """

    def __init__(self, sam: torch.nn.Module) -> None:
        keep_freed_memory_by_default()
        self.model = sam
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)
        self.reset_image()

    @classmethod
    def from_pretrained(cls, source: str | PathLike, device: str | torch.device | None = None,
                        **load_kwargs: Any) -> Predictor:
        """Load a model with ``sam_core.load_sam`` (same sources: .pth, HF dir or id, registry name)."""
        return cls(load_sam(source, device=device, **load_kwargs))

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        """Forget the current image(s) and their embeddings."""
        self.is_image_set = False
        self.features: torch.Tensor | None = None
        self.original_size: Size | None = None
        self.input_size: Size | None = None
        self.original_sizes: list[Size] = []
        self.input_sizes: list[Size] = []
        # Per image index: the decoder's prompt-independent image input, built on the first prompt without
        # a mask input and reused by the next ones (see MaskDecoder.prepare_image).
        self._prepared_images: dict[int, ImageTokens] = {}

    # ------------------------------------------------------------------ images and embeddings

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embed one image: HxWx3 uint8 in ``image_format`` ("RGB" or "BGR").

        Gray (HxW), RGBA, uint16 and float images in [0, 1] are converted first (see
        ``sam_core.transforms.to_rgb_uint8``); anything else raises ``ValueError``.
        """
        self.set_images([image], image_format)

    def set_images(self, images: Sequence[np.ndarray], image_format: str = "RGB") -> None:
        """Embed several images in one encoder pass; decode them with ``predict_batch``.

        Memory grows with the number of images (the encoder holds all activations at once), so split
        long lists into chunks that fit.
        """
        if isinstance(images, np.ndarray) or len(images) == 0:
            raise ValueError("set_images expects a non-empty list of images (use set_image for one array)")
        inputs, original_sizes = [], []
        for image in images:
            rgb = to_rgb_uint8(image, image_format)
            if self.model.image_format == "BGR":
                rgb = rgb[:, :, ::-1]
            resized = torch.as_tensor(self.transform.apply_image(rgb), device=self.device)
            inputs.append(resized.permute(2, 0, 1)[None])
            original_sizes.append((int(rgb.shape[0]), int(rgb.shape[1])))
        self._encode(inputs, original_sizes)

    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: Sequence[int]) -> None:
        """Embed a 1x3xhxw image already resized with ``self.transform`` (long side = encoder size)."""
        size = self.model.image_encoder.img_size
        shape = tuple(transformed_image.shape)
        if len(shape) != 4 or shape[0] != 1 or shape[1] != 3 or max(shape[2:]) != size:
            raise ValueError(f"set_torch_image expects a 1x3xHxW tensor with long side {size}, got shape {shape}")
        self._encode([transformed_image.to(self.device)], [_check_size(original_image_size, "original_image_size")])

    def _encode(self, inputs: list[torch.Tensor], original_sizes: list[Size]) -> None:
        self.reset_image()
        # Each image is normalised and padded to the square encoder input on its own (they may differ
        # in shape), then all go through the encoder together. no_grad rather than inference_mode: the
        # embedding is handed to users (get_image_embedding), who may train a decoder on it, and
        # inference tensors cannot take part in autograd.
        with torch.no_grad():
            batch = torch.cat([self.model.preprocess(x) for x in inputs])
            features = self.model.image_encoder(batch)
        self._set_state(features, original_sizes, [tuple(x.shape[-2:]) for x in inputs])

    def _set_state(self, features: torch.Tensor, original_sizes: list[Size], input_sizes: list[Size]) -> None:
        self.features = features
        self._prepared_images = {}
        self.original_sizes = list(original_sizes)
        self.input_sizes = [(int(h), int(w)) for h, w in input_sizes]
        single = len(self.original_sizes) == 1
        self.original_size = self.original_sizes[0] if single else None
        self.input_size = self.input_sizes[0] if single else None
        self.is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        """The image embeddings, Bx C x h x w (B = number of set images; 1x256x64x64 for official models)."""
        self._require_image()
        return self.features

    def set_image_embedding(self, embedding: torch.Tensor | np.ndarray, original_size: Sequence[int],
                            input_size: Sequence[int] | None = None) -> None:
        """Use a precomputed embedding (1xCxhxw or Cxhxw) of an image of ``original_size`` (H, W).

        ``input_size`` (the resized size fed to the encoder) defaults to what ``set_image`` would use.
        """
        embedding = torch.as_tensor(embedding)
        if embedding.dim() == 3:
            embedding = embedding[None]
        expected = self._embedding_shape()
        if embedding.dim() != 4 or embedding.shape[0] != 1 or tuple(embedding.shape[1:]) != expected:
            raise ValueError(f"expected an embedding of shape (1, {expected[0]}, {expected[1]}, {expected[2]}), "
                             f"got {tuple(embedding.shape)}")
        original = _check_size(original_size, "original_size")
        if input_size is None:
            resized = self.transform.get_preprocess_shape(*original, self.transform.target_length)
        else:
            resized = _check_size(input_size, "input_size")
        if max(resized) > self.transform.target_length:
            raise ValueError(f"input_size {resized} exceeds the encoder size {self.transform.target_length}")
        self._set_state(embedding.to(self.device, self._dtype()), [original], [resized])

    def save_embedding(self, path: str | PathLike) -> None:
        """Write the current embedding(s) and image sizes to a safetensors file."""
        self._require_image()
        metadata = {
            "format": _EMBEDDING_FORMAT,
            "original_sizes": json.dumps([list(s) for s in self.original_sizes]),
            "input_sizes": json.dumps([list(s) for s in self.input_sizes]),
        }
        config = getattr(self.model, "config", None)
        if config is not None:
            metadata["config"] = json.dumps(config.to_dict(), sort_keys=True)
        save_file({_EMBEDDING_KEY: self.features.detach().contiguous().cpu()}, str(path), metadata=metadata)

    def load_embedding(self, path: str | PathLike) -> None:
        """Restore what ``save_embedding`` wrote, as if ``set_image``/``set_images`` had run."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"embedding file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                features = handle.get_tensor(_EMBEDDING_KEY) if _EMBEDDING_KEY in handle.keys() else None
        except Exception as error:  # safetensors raises several types for a damaged or foreign file
            raise ValueError(f"cannot read embedding file {path}: {error}") from error
        if metadata.get("format") != _EMBEDDING_FORMAT or features is None:
            raise ValueError(f"{path} is not a sam_core embedding file (written by save_embedding)")
        config = getattr(self.model, "config", None)
        if config is not None and "config" in metadata:
            if metadata["config"] != json.dumps(config.to_dict(), sort_keys=True):
                raise ValueError(f"{path} was computed by a model with config {metadata['config']}, "
                                 f"not this predictor's model ({config})")
        original_sizes = [tuple(s) for s in json.loads(metadata["original_sizes"])]
        input_sizes = [tuple(s) for s in json.loads(metadata["input_sizes"])]
        expected = self._embedding_shape()
        if tuple(features.shape[1:]) != expected or not len(original_sizes) == len(input_sizes) == len(features):
            raise ValueError(f"{path}: embedding shape {tuple(features.shape)} and {len(original_sizes)} image "
                             f"sizes do not fit this model (expected Bx{expected[0]}x{expected[1]}x{expected[2]})")
        self._set_state(features.to(self.device, self._dtype()), original_sizes, input_sizes)

    # ------------------------------------------------------------------ prediction

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                multimask_output: bool = True, return_logits: bool = False) -> Prediction:
        """Masks for one prompt on the set image; coordinates are pixels of the original image.

        Args:
            point_coords: Nx2 (x, y) points. point_labels: N labels, 1 = foreground, 0 = background.
            box: 4 numbers, x0 y0 x1 y1. mask_input: 1xSxS low-res logits from a previous call (S = 256
                for official models). multimask_output: three candidate masks instead of one.
            return_logits: return mask logits instead of booleans.

        Returns:
            masks CxHxW (bool, or float logits), scores C (predicted IoU), low-res logits CxSxS.
        """
        self._require_image()
        if self.features.shape[0] != 1:
            raise RuntimeError(f"{self.features.shape[0]} images are set; use predict_batch, or set_image for one")
        prompts = self._numpy_prompts(point_coords, point_labels, box, mask_input, self.original_size)
        masks, scores, low_res = self._decode(0, *prompts, multimask_output, return_logits)
        return _to_numpy(masks[0]), _to_numpy(scores[0]), _to_numpy(low_res[0])

    def predict_batch(self, point_coords: Sequence[np.ndarray | None] | None = None,
                      point_labels: Sequence[np.ndarray | None] | None = None,
                      boxes: Sequence[np.ndarray | None] | None = None,
                      mask_inputs: Sequence[np.ndarray | None] | None = None,
                      multimask_output: bool = True, return_logits: bool = False) -> list[Prediction]:
        """``predict`` for every image given to ``set_images``, with one prompt per image.

        Each argument is None or a sequence with one entry per image; entry i (or None) means exactly
        what the singular argument of ``predict`` means for image i. Returns one ``predict`` result
        (masks, scores, low-res logits) per image, in order.
        """
        self._require_image()
        count = self.features.shape[0]
        if len(self.original_sizes) != count or len(self.input_sizes) != count:
            raise RuntimeError("image sizes do not match the embeddings; set images with set_images")
        per_image = []
        for name, values in (("point_coords", point_coords), ("point_labels", point_labels), ("boxes", boxes),
                             ("mask_inputs", mask_inputs)):
            if values is None:
                values = [None] * count
            elif len(values) != count:
                raise ValueError(f"{name} has {len(values)} entries for {count} images")
            per_image.append(values)
        results = []
        for index, (coords, labels, box, mask) in enumerate(zip(*per_image)):
            prompts = self._numpy_prompts(coords, labels, box, mask, self.original_sizes[index])
            masks, scores, low_res = self._decode(index, *prompts, multimask_output, return_logits)
            results.append((_to_numpy(masks[0]), _to_numpy(scores[0]), _to_numpy(low_res[0])))
        return results

    def predict_torch(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                      boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                      multimask_output: bool = True,
                      return_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks for B prompts at once; coordinates already in the resized frame (``self.transform``).

        Args:
            point_coords: BxNx2; point_labels: BxN in {1, 0, -1}, -1 marking padding points.
            boxes: Bx4 XYXY. mask_input: Bx1xSxS low-res logits.

        Returns:
            masks BxCxHxW, scores BxC, low-res logits BxCxSxS (torch tensors on the model's device).
        """
        self._require_image()
        if self.features.shape[0] != 1:
            raise RuntimeError(f"{self.features.shape[0]} images are set; predict_torch decodes one image")
        prompts = self._check_torch_prompts(point_coords, point_labels, boxes, mask_input)
        return self._decode(0, *prompts, multimask_output, return_logits)

    def _decode(self, index: int, coords: torch.Tensor | None, labels: torch.Tensor | None,
                boxes: torch.Tensor | None, mask_input: torch.Tensor | None, multimask_output: bool,
                return_logits: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode prompts on image ``index`` of the set images."""
        features = self.features[index:index + 1]
        decoder = self.model.mask_decoder
        with torch.inference_mode():
            points = None if coords is None else (coords, labels)
            sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
            if mask_input is None and hasattr(decoder, "prepare_image"):
                low_res, scores = decoder.decode(self._prepared_image(index, dense), sparse, multimask_output)
            else:
                low_res, scores = decoder(
                    image_embeddings=features,
                    image_pe=self.model.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=multimask_output,
                )
            input_size, original_size = self.input_sizes[index], self.original_sizes[index]
            threshold = self.model.mask_threshold
            if low_res.device.type == "cpu":
                logits = upscale_mask_logits(low_res, self.transform.target_length, input_size, original_size)
                # NumPy thresholds a 1800x1200 multimask result about three times faster than torch.
                masks = torch.from_numpy(logits if return_logits else logits > threshold)
            else:
                logits = self.model.postprocess_masks(low_res, input_size, original_size)
                masks = logits if return_logits else logits > threshold
        return (masks.to(low_res.dtype) if return_logits else masks), scores, low_res

    def _prepared_image(self, index: int, dense: torch.Tensor) -> ImageTokens:
        """The decoder's image input for prompts without a mask input on image ``index``, built once."""
        if index not in self._prepared_images:
            features = self.features[index:index + 1]
            self._prepared_images[index] = self.model.mask_decoder.prepare_image(
                features, self.model.prompt_encoder.get_dense_pe(), dense)
        return self._prepared_images[index]

    # ------------------------------------------------------------------ validation helpers

    def _require_image(self) -> None:
        if not self.is_image_set or self.features is None:
            raise RuntimeError("no image is set: call set_image(image) (or set_images / load_embedding) first")

    def _embedding_shape(self) -> tuple[int, int, int]:
        config = getattr(self.model, "config", None)
        if config is not None:
            return config.prompt_embed_dim, config.embedding_size, config.embedding_size
        encoder = self.model.prompt_encoder
        return (encoder.embed_dim, *encoder.image_embedding_size)

    def _mask_side(self) -> int:
        config = getattr(self.model, "config", None)
        return config.low_res_mask_size if config is not None else 4 * self._embedding_shape()[2]

    def _dtype(self) -> torch.dtype:
        return next(self.model.mask_decoder.parameters()).dtype

    def _numpy_prompts(self, point_coords: Any, point_labels: Any, box: Any, mask_input: Any,
                       original_size: Size) -> tuple[torch.Tensor | None, ...]:
        """Validate one image's numpy prompts and turn them into batch-of-one tensors in the resized frame."""
        coords = labels = box_tensor = mask_tensor = None
        if point_coords is not None or point_labels is not None:
            if point_coords is None or point_labels is None:
                raise ValueError("point_coords and point_labels must be given together")
            points = np.asarray(point_coords, dtype=np.float64)
            if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
                raise ValueError(f"point_coords must have shape (N, 2) with N >= 1, got {points.shape}")
            if not np.isfinite(points).all():
                raise ValueError("point_coords contains NaN or infinite values")
            label_array = np.asarray(point_labels)
            if label_array.shape != (len(points),):
                raise ValueError(f"point_labels must have shape ({len(points)},) to match point_coords, "
                                 f"got {label_array.shape}")
            if not np.isin(label_array, (0, 1)).all():
                raise ValueError(f"point_labels must be 1 (foreground) or 0 (background), got {label_array}")
            points = self.transform.apply_coords(points, original_size)
            coords = torch.as_tensor(points, dtype=torch.float, device=self.device)[None]
            labels = torch.as_tensor(label_array.astype(np.int32), device=self.device)[None]
        if box is not None:
            corners = np.asarray(box, dtype=np.float64)
            if corners.size != 4 or corners.ndim > 2:
                raise ValueError(f"box must be 4 numbers x0, y0, x1, y1, got shape {corners.shape}")
            corners = corners.reshape(4)
            _check_boxes(corners[None], "box")
            box_tensor = torch.as_tensor(self.transform.apply_boxes(corners, original_size), dtype=torch.float,
                                         device=self.device)
        if mask_input is not None:
            side = self._mask_side()
            mask = np.asarray(mask_input, dtype=np.float32)
            if mask.shape != (1, side, side):
                raise ValueError(f"mask_input must have shape (1, {side}, {side}) (low-res logits from a previous "
                                 f"predict), got {mask.shape}")
            if not np.isfinite(mask).all():
                raise ValueError("mask_input contains NaN or infinite values")
            mask_tensor = torch.as_tensor(mask, device=self.device)[None]
        return coords, labels, box_tensor, mask_tensor

    def _check_torch_prompts(self, point_coords: Any, point_labels: Any, boxes: Any,
                             mask_input: Any) -> tuple[torch.Tensor | None, ...]:
        """Validate batched tensor prompts; returns them on the model's device with float geometry."""
        batch_sizes = {}
        coords = labels = None
        if point_coords is not None or point_labels is not None:
            if point_coords is None or point_labels is None:
                raise ValueError("point_coords and point_labels must be given together")
            coords = _as_float_tensor(point_coords, self.device)
            labels = torch.as_tensor(point_labels, device=self.device)
            if coords.dim() != 3 or coords.shape[2] != 2:
                raise ValueError(f"point_coords must have shape (B, N, 2), got {tuple(coords.shape)}")
            if tuple(labels.shape) != tuple(coords.shape[:2]):
                raise ValueError(f"point_labels must have shape {tuple(coords.shape[:2])} to match point_coords, "
                                 f"got {tuple(labels.shape)}")
            if not torch.isfinite(coords).all():
                raise ValueError("point_coords contains NaN or infinite values")
            if not ((labels == 1) | (labels == 0) | (labels == -1)).all():
                raise ValueError("point_labels must be 1 (foreground), 0 (background) or -1 (padding)")
            batch_sizes["point_coords"] = coords.shape[0]
        if boxes is not None:
            boxes = _as_float_tensor(boxes, self.device)
            if boxes.dim() != 2 or boxes.shape[1] != 4:
                raise ValueError(f"boxes must have shape (B, 4), got {tuple(boxes.shape)}")
            _check_boxes(boxes, "boxes")
            batch_sizes["boxes"] = boxes.shape[0]
        if mask_input is not None:
            side = self._mask_side()
            mask_input = _as_float_tensor(mask_input, self.device)
            if mask_input.dim() != 4 or tuple(mask_input.shape[1:]) != (1, side, side):
                raise ValueError(f"mask_input must have shape (B, 1, {side}, {side}), got {tuple(mask_input.shape)}")
            if not torch.isfinite(mask_input).all():
                raise ValueError("mask_input contains NaN or infinite values")
            batch_sizes["mask_input"] = mask_input.shape[0]
        if len(set(batch_sizes.values())) > 1:
            raise ValueError(f"prompt batch sizes differ: {batch_sizes}")
        return coords, labels, boxes, mask_input


SamPredictor = Predictor


def _check_size(size: Sequence[int], name: str) -> Size:
    values = tuple(int(v) for v in size)
    if len(values) != 2 or min(values) <= 0:
        raise ValueError(f"{name} must be two positive integers (H, W), got {tuple(size)}")
    return values  # type: ignore[return-value]


def _check_boxes(boxes: np.ndarray | torch.Tensor, name: str) -> None:
    """Raise unless every row is four finite numbers with x1 >= x0 and y1 >= y0."""
    finite = np.isfinite(boxes).all() if isinstance(boxes, np.ndarray) else bool(torch.isfinite(boxes).all())
    if not finite:
        raise ValueError(f"{name} contains NaN or infinite values")
    if bool((boxes[:, 2] < boxes[:, 0]).any()) or bool((boxes[:, 3] < boxes[:, 1]).any()):
        raise ValueError(f"{name} must be x0, y0, x1, y1 with x1 >= x0 and y1 >= y0, got {boxes.tolist()}")


def _as_float_tensor(values: Any, device: torch.device) -> torch.Tensor:
    tensor = torch.as_tensor(values, device=device)
    return tensor if tensor.is_floating_point() else tensor.float()


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    # On CPU this shares memory with the tensor instead of copying the full-resolution masks. NumPy has no
    # bfloat16, so a bfloat16 model's scores and logits come back as float32.
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
