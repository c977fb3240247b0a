"""User prompts -> validated :class:`~sam_core.interface.Prompts`.

Two shapes of input reach the predictor: one image's prompts as numpy arrays or lists (``predict``), and
batched tensors (``predict_torch``). Each is converted to batched tensors here, checking only the shape of
its own form, and then :func:`validate_prompts` checks the values of both in one place.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sam_core.interface import Prompts


def prompts_from_arrays(point_coords: Any = None, point_labels: Any = None, box: Any = None,
                        mask_input: Any = None, *, mask_input_size: int) -> Prompts:
    """One image's prompts as ``Predictor.predict`` takes them, as a batch of one.

    Args:
        point_coords: (N, 2) x, y points. point_labels: (N,) labels, 1 foreground, 0 background.
        box: four numbers x0, y0, x1, y1. mask_input: (1, S, S) low-res logits of an earlier prediction.
        mask_input_size: S, the model's low-res mask side.

    Geometry is kept in float64, so that mapping it into the model's frame rounds as the reference does.
    """
    coords = labels = boxes = masks = None
    if point_coords is not None or point_labels is not None:
        _require_both(point_coords, point_labels)
        coords = _as_tensor(point_coords, torch.float64)
        if coords.dim() != 2 or coords.shape[1] != 2 or len(coords) == 0:
            raise ValueError(f"point_coords must have shape (N, 2) with N >= 1, got {tuple(coords.shape)}")
        labels = _as_tensor(point_labels)
        if tuple(labels.shape) != (len(coords),):
            raise ValueError(f"point_labels must have shape ({len(coords)},) to match point_coords, "
                             f"got {tuple(labels.shape)}")
        coords, labels = coords[None], labels[None]
    if box is not None:
        boxes = _as_tensor(box, torch.float64)
        if boxes.numel() != 4 or boxes.dim() > 2:
            raise ValueError(f"box must be 4 numbers x0, y0, x1, y1, got shape {tuple(boxes.shape)}")
        boxes = boxes.reshape(1, 4)
    if mask_input is not None:
        masks = _as_tensor(mask_input, torch.float32)
        side = mask_input_size
        if tuple(masks.shape) != (1, side, side):
            raise ValueError(f"mask_input must have shape (1, {side}, {side}) (low-res logits from a previous "
                             f"predict), got {tuple(masks.shape)}")
        masks = masks[None]
    prompts = Prompts(coords, labels, boxes, masks)
    validate_prompts(prompts, padding_allowed=False)
    return prompts


def prompts_from_tensors(point_coords: Any = None, point_labels: Any = None, boxes: Any = None,
                         mask_input: Any = None, *, mask_input_size: int) -> Prompts:
    """Batched prompts as ``Predictor.predict_torch`` takes them.

    Args:
        point_coords: (B, N, 2). point_labels: (B, N) in {1, 0, -1}, -1 marking padding points.
        boxes: (B, 4) XYXY. mask_input: (B, 1, S, S) low-res logits.
        mask_input_size: S, the model's low-res mask side.
    """
    coords = labels = None
    if point_coords is not None or point_labels is not None:
        _require_both(point_coords, point_labels)
        coords, labels = _as_tensor(point_coords, floating=True), _as_tensor(point_labels)
        if coords.dim() != 3 or coords.shape[2] != 2:
            raise ValueError(f"point_coords must have shape (B, N, 2), got {tuple(coords.shape)}")
        if tuple(labels.shape) != tuple(coords.shape[:2]):
            raise ValueError(f"point_labels must have shape {tuple(coords.shape[:2])} to match point_coords, "
                             f"got {tuple(labels.shape)}")
    if boxes is not None:
        boxes = _as_tensor(boxes, floating=True)
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must have shape (B, 4), got {tuple(boxes.shape)}")
    if mask_input is not None:
        mask_input = _as_tensor(mask_input, floating=True)
        side = mask_input_size
        if mask_input.dim() != 4 or tuple(mask_input.shape[1:]) != (1, side, side):
            raise ValueError(f"mask_input must have shape (B, 1, {side}, {side}), got {tuple(mask_input.shape)}")
    prompts = Prompts(coords, labels, boxes, mask_input)
    validate_prompts(prompts, padding_allowed=True)
    return prompts


def validate_prompts(prompts: Prompts, padding_allowed: bool) -> None:
    """Raise ``ValueError`` unless every value is usable: finite numbers, known labels, ordered boxes, and
    one batch size for all prompts."""
    batch_sizes = {}
    if prompts.point_coords is not None:
        labels = prompts.point_labels
        if not torch.isfinite(prompts.point_coords).all():
            raise ValueError("point_coords contains NaN or infinite values")
        allowed = (labels == 1) | (labels == 0) | ((labels == -1) if padding_allowed else False)
        if not bool(allowed.all()):
            expected = "1 (foreground), 0 (background) or -1 (padding)" if padding_allowed \
                else "1 (foreground) or 0 (background)"
            raise ValueError(f"point_labels must be {expected}, got {labels.tolist()}")
        batch_sizes["point_coords"] = prompts.point_coords.shape[0]
    if prompts.boxes is not None:
        boxes = prompts.boxes
        if not torch.isfinite(boxes).all():
            raise ValueError("box contains NaN or infinite values")
        if bool((boxes[:, 2] < boxes[:, 0]).any()) or bool((boxes[:, 3] < boxes[:, 1]).any()):
            raise ValueError(f"box must be x0, y0, x1, y1 with x1 >= x0 and y1 >= y0, got {boxes.tolist()}")
        batch_sizes["boxes"] = boxes.shape[0]
    if prompts.mask_input is not None:
        if not torch.isfinite(prompts.mask_input).all():
            raise ValueError("mask_input contains NaN or infinite values")
        batch_sizes["mask_input"] = prompts.mask_input.shape[0]
    if len(set(batch_sizes.values())) > 1:
        raise ValueError(f"prompt batch sizes differ: {batch_sizes}")


def to_model_frame(prompts: Prompts, transform: Any, original_size: tuple[int, int],
                   device: torch.device, normalized: bool = False) -> Prompts:
    """Prompts given in pixels of the original image (or, with ``normalized``, as fractions of its width and
    height) -> the model's input frame, as float32 on ``device``.

    The geometry is mapped in numpy in the precision of the family's reference (``transform``), then
    rounded to float32, as the references do with numpy prompts.
    """
    apply_coords = transform.apply_normalized_coords if normalized else transform.apply_coords
    apply_boxes = transform.apply_normalized_boxes if normalized else transform.apply_boxes
    coords = boxes = None
    with np.errstate(over="ignore"):  # coordinates that overflow float32 raise ValueError in _float32
        if prompts.point_coords is not None:
            coords = _float32(apply_coords(prompts.point_coords.cpu().numpy(), original_size), device, "point_coords")
        if prompts.boxes is not None:
            boxes = _float32(apply_boxes(prompts.boxes.cpu().numpy(), original_size), device, "box")
    labels = None if prompts.point_labels is None else prompts.point_labels.to(device, torch.int32)
    mask = None if prompts.mask_input is None else prompts.mask_input.to(device)
    return Prompts(coords, labels, boxes, mask)


def _float32(values: np.ndarray, device: torch.device, name: str) -> torch.Tensor:
    """``values`` as float32; finite float64 values too large for float32 would become inf (and the masks NaN)."""
    values = np.asarray(values, dtype=np.float32)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds values too large to use (beyond float32's range once mapped into the "
                         "model's input frame)")
    return torch.as_tensor(values, device=device)


def _require_both(point_coords: Any, point_labels: Any) -> None:
    if point_coords is None or point_labels is None:
        raise ValueError("point_coords and point_labels must be given together")


def _as_tensor(values: Any, dtype: torch.dtype | None = None, floating: bool = False) -> torch.Tensor:
    """A tensor of ``values`` (numpy array, list or tensor); ``floating`` keeps float dtypes, else float32."""
    if isinstance(values, np.ndarray) and values.dtype.kind not in "biuf":
        raise ValueError(f"expected numbers, got an array of {values.dtype}")
    try:
        tensor = torch.as_tensor(values) if not isinstance(values, torch.Tensor) else values
    except (TypeError, ValueError, RuntimeError) as error:  # strings, ragged lists, objects
        raise ValueError(f"expected an array of numbers, got {type(values).__name__} ({error})") from None
    if dtype is not None:
        return tensor.to(dtype)
    if floating and not tensor.is_floating_point():
        return tensor.float()
    return tensor
