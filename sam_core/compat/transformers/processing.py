"""transformers' ``SamProcessor`` and ``Sam2Processor``: an image processor plus prompts given as nested lists
(or arrays), checked against transformers' nesting rules, padded with its pad value and scaled into the
model's input frame."""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np
import torch

from sam_core.compat.transformers.images import BatchFeature, Sam2ImageProcessor, SamImageProcessor

POINT_PAD_VALUE = -10
"""transformers' padding value for points and labels of uneven prompt sets."""


def nesting_depth(value: Any, name: str, expected: str) -> int:
    """Levels of nesting of a prompt given as lists, tuples, arrays or tensors (an array counts its axes)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.ndim
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name}: an empty level; expected nesting {expected}")
        depths = {nesting_depth(item, name, expected) for item in value}
        if len(depths) != 1:
            raise ValueError(f"{name}: its entries are nested to different depths; expected nesting {expected}")
        return 1 + depths.pop()
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return 0
    raise ValueError(f"{name}: expected numbers in nested lists ({expected}), found {type(value).__name__}")


def padded_array(value: Any, depth: int, pad_value: float) -> np.ndarray:
    """A nested prompt of ``depth`` levels as a float64 array, shorter lists padded with ``pad_value`` to the
    longest at their level."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
    if depth == 0:
        return np.asarray(float(value))
    parts = [padded_array(item, depth - 1, pad_value) for item in value]
    if depth == 1:
        return np.stack(parts)
    shape = np.max([part.shape for part in parts], axis=0)
    return np.stack([np.pad(part, [(0, int(n - s)) for n, s in zip(shape, part.shape)], constant_values=pad_value)
                     for part in parts])


def read_prompt(value: Any, name: str, depths: dict[int, str], leaf: int | None,
                pad_value: float) -> tuple[np.ndarray, int] | None:
    """A prompt checked against its allowed nestings (depth -> description) and its leaf length, as an array."""
    if value is None:
        return None
    expected = " or ".join(depths.values())
    depth = nesting_depth(value, name, expected)
    if depth not in depths:
        raise ValueError(f"{name} must be nested as {expected} ({' or '.join(map(str, depths))} levels); "
                         f"got {depth} level{'s' * (depth != 1)}")
    array = padded_array(value, depth, pad_value)
    if leaf is not None and array.shape[-1] != leaf:
        raise ValueError(f"{name}: the innermost level must hold {leaf} numbers ({expected}); got "
                         f"{array.shape[-1]}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array, depth


class SamProcessor:
    """transformers' ``SamProcessor`` for sam_core: ``processor(images, input_points=..., input_labels=...,
    input_boxes=..., return_tensors="pt")``.

    Nesting (as transformers'): ``input_points`` [image][point][x, y] (one prompt set per image) or
    [image][prompt set][point][x, y]; ``input_labels`` [image][point] or [image][prompt set][point] (1 foreground,
    0 background); ``input_boxes`` [image][box][x0, y0, x1, y1]. Coordinates are pixels of the original image.
    Uneven point counts are padded with ``point_pad_value`` (-10) in points and labels.

    Args:
        image_processor: A :class:`SamImageProcessor` (default: 1024 long side).
    """

    image_processor_class = SamImageProcessor
    point_depths = {3: "[image][point][x, y]", 4: "[image][prompt set][point][x, y]"}
    label_depths = {2: "[image][point]", 3: "[image][prompt set][point]"}
    point_pad_value = POINT_PAD_VALUE
    coordinate_dtype = torch.float64  # transformers' SamProcessor scales in numpy float64

    def __init__(self, image_processor: SamImageProcessor | None = None) -> None:
        self.image_processor = image_processor or self.image_processor_class()

    @property
    def target_size(self) -> int:
        return self.image_processor.target_size

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, **overrides: Any) -> SamProcessor:
        """The processor of a Hugging Face folder or hub id (its ``preprocessor_config.json``), or the
        defaults for a checkpoint file or registry name. A local folder is read, never downloaded."""
        return cls(cls.image_processor_class.from_pretrained(source, **overrides))

    def __call__(self, images: Any = None, input_points: Any = None, input_labels: Any = None,
                 input_boxes: Any = None, return_tensors: str | None = "pt", original_sizes: Any = None,
                 point_pad_value: int | None = None, **kwargs: Any) -> BatchFeature:
        """Preprocess images and prompts.

        Args:
            images: One image or a list (PIL, path, URL, array, tensor); None with ``original_sizes``.
            input_points, input_labels, input_boxes: Prompts, nested as the class docstring says.
            return_tensors: "pt".
            original_sizes: (H, W) per image, when no images are given (to scale prompts for embeddings
                computed earlier).
            point_pad_value: Padding of uneven point lists (default -10).

        Returns:
            (BatchFeature): ``pixel_values`` (B, 3, S, S), ``original_sizes`` (B, 2), ``reshaped_input_sizes``
                (B, 2; SAM), and the prompts in the model's frame: ``input_points`` (B, P, N, 2),
                ``input_labels`` (B, P, N) int64, ``input_boxes`` (B, nb, 4).

        Raises:
            ValueError: If a prompt is nested otherwise, holds non-finite values, its labels do not match its
                points, or its image count differs from the images'.
        """
        if kwargs.get("segmentation_maps") is not None:
            raise ValueError("segmentation_maps (training labels) are not supported by sam_core's processor")
        pad = self.point_pad_value if point_pad_value is None else point_pad_value
        if images is not None:
            features = self.image_processor(images, return_tensors=return_tensors)
        elif original_sizes is not None:
            sizes = torch.as_tensor(original_sizes, dtype=torch.int64).reshape(-1, 2)
            features = BatchFeature(original_sizes=sizes)
            if not self.image_processor.resizes_to_square:
                features["reshaped_input_sizes"] = torch.tensor(
                    [self.image_processor.resized_shape(tuple(size)) for size in sizes.tolist()])
        elif input_points is None and input_boxes is None:
            raise ValueError("give images (or original_sizes with prompts)")
        else:
            raise ValueError("prompts need the images (or original_sizes) they belong to")
        sizes = [tuple(size) for size in features["original_sizes"].tolist()]
        points = read_prompt(input_points, "input_points", self.point_depths, 2, pad)
        labels = read_prompt(input_labels, "input_labels", self.label_depths, None, pad)
        boxes = read_prompt(input_boxes, "input_boxes", {3: "[image][box][x0, y0, x1, y1]"}, 4, pad)
        if points is not None:
            point_array = self._four_levels(points, 4)
            self._check_images(point_array, "input_points", len(sizes))
            if labels is None and (point_array == pad).all(-1).any():
                raise ValueError(f"input_points have uneven point counts (padded with {pad}); give input_labels "
                                 "for them")
            if labels is not None:
                labels_array = self._four_levels(labels, 3)
                if labels_array.shape != point_array.shape[:-1]:
                    raise ValueError(f"input_labels nested as {list(labels_array.shape)} do not match input_points "
                                     f"nested as {list(point_array.shape[:-1])} ([image][prompt set][point])")
                features["input_labels"] = torch.from_numpy(labels_array.astype(np.int64))
            features["input_points"] = self._scaled(point_array, sizes, pad)
        elif labels is not None:
            raise ValueError("input_labels were given without input_points")
        if boxes is not None:
            box_array = boxes[0]
            self._check_images(box_array, "input_boxes", len(sizes))
            if (box_array == pad).all(-1).any():
                raise ValueError("input_boxes: every image needs the same number of boxes (boxes cannot be padded)")
            corners = self._scaled(box_array.reshape(*box_array.shape[:-1], 2, 2), sizes, None)
            features["input_boxes"] = corners.reshape(box_array.shape)
        return features

    @staticmethod
    def _four_levels(prompt: tuple[np.ndarray, int], full_depth: int) -> np.ndarray:
        array, depth = prompt
        return array[:, None] if depth < full_depth else array

    @staticmethod
    def _check_images(array: np.ndarray, name: str, images: int) -> None:
        if len(array) != images:
            raise ValueError(f"{name} holds prompts for {len(array)} images, but there are {images} (the first "
                             "nesting level is the image)")

    def _scaled(self, coords: np.ndarray, sizes: list[tuple[int, int]], pad: float | None) -> torch.Tensor:
        """Pixel coordinates (B, ..., 2) -> the model frame, per image; points equal to the pad value stay."""
        tensor = torch.from_numpy(coords).to(self.coordinate_dtype)
        scaled = torch.stack([self.image_processor.scale_coordinates(tensor[i], size) for i, size in enumerate(sizes)])
        if pad is not None:
            scaled = torch.where((tensor == pad).all(-1, keepdim=True), tensor, scaled)
        return scaled

    def post_process_masks(self, *args: Any, **kwargs: Any) -> list[torch.Tensor]:
        """``image_processor.post_process_masks``."""
        return self.image_processor.post_process_masks(*args, **kwargs)


class Sam2Processor(SamProcessor):
    """transformers' ``Sam2Processor`` for sam_core. Nesting (as transformers'): ``input_points``
    [image][object][point][x, y], ``input_labels`` [image][object][point], ``input_boxes`` [image][box][x0, y0,
    x1, y1]; every level padded with -10 where uneven. Coordinates are scaled in float32."""

    image_processor_class = Sam2ImageProcessor
    point_depths = {4: "[image level, object level, point level, point coordinates]"}
    label_depths = {3: "[image level, object level, point level]"}
    coordinate_dtype = torch.float32
