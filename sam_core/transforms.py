"""How a model sees an image: the resize into its input frame for images, points and boxes, and the way back
from low-res mask logits to the original image. ``ImageTransform`` is the interface; ``ResizeLongestSide``
is SAM's (scale the long side, pad the rest), ``StretchToSquare`` SAM 2's (stretch the whole image to the
square input)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal, TypeVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

Array = TypeVar("Array", np.ndarray, torch.Tensor)
UpscaleBackend = Literal["torch", "opencv"]
UPSCALE_BACKENDS = ("torch", "opencv")


class ImageTransform(ABC):
    """A family's map between image pixels and its model's input frame (a ``target_length`` square)."""

    target_length: int
    coordinate_dtype: type = np.float64
    """Precision in which the family's reference maps prompt coordinates (float64 for SAM, float32 for SAM 2);
    the automatic mask generator keeps its grid points in it, so that its records carry the same values."""

    @abstractmethod
    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of an image of ``original_size`` once resized into the model input."""

    @abstractmethod
    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 -> the resized uint8 image fed to ``preprocess``."""

    @abstractmethod
    def apply_coords(self, coords: Array, original_size: tuple[int, int]) -> Array:
        """(..., 2) x, y pixel coordinates of the original image -> the model's input frame."""

    def apply_boxes(self, boxes: Array, original_size: tuple[int, int]) -> Array:
        """(..., 4) XYXY boxes -> the model's input frame, as (N, 4)."""
        corners = self.apply_coords(boxes.reshape(-1, 2, 2), original_size)
        return corners.reshape(-1, 4)

    def apply_normalized_coords(self, coords: Array, original_size: tuple[int, int]) -> Array:
        """(..., 2) x, y coordinates given as fractions of the original image's width and height -> the model's
        input frame (``Predictor.predict(normalize_coords=False)``)."""
        height, width = original_size
        scale = np.array([width, height], dtype=np.float64)
        if isinstance(coords, torch.Tensor):
            return self.apply_coords(coords.to(torch.float64) * torch.as_tensor(scale, device=coords.device),
                                     original_size)
        return self.apply_coords(np.asarray(coords, dtype=np.float64) * scale, original_size)

    def apply_normalized_boxes(self, boxes: Array, original_size: tuple[int, int]) -> Array:
        """(..., 4) XYXY boxes as fractions of the image's width and height -> the model's frame, as (N, 4)."""
        corners = self.apply_normalized_coords(boxes.reshape(-1, 2, 2), original_size)
        return corners.reshape(-1, 4)

    @abstractmethod
    def masks_to_low_res(self, masks: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Ground truth in the frame of the low-res logits (training): (N, H, W) masks of an original image ->
        (N, size, size) bool masks, resized (and padded) as the image is, then brought from the square model
        input down to ``size`` (a low-res pixel is in a mask when at least half of it is); and the
        (size, size) bool map of the low-res pixels that show the image rather than padding."""

    @abstractmethod
    def upscale_logits(self, low_res: torch.Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...],
                       backend: UpscaleBackend = "torch") -> torch.Tensor | np.ndarray:
        """Low-res logits (..., S, S) -> logits (..., H, W) at ``original_size``.

        ``backend="torch"`` computes on the logits' device (the reference's arithmetic) and returns a tensor;
        ``"opencv"`` computes on the CPU and returns a float32 numpy array.
        """

    def upscale_masks(self, low_res: torch.Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...],
                      threshold: float, backend: UpscaleBackend = "torch") -> torch.Tensor | np.ndarray:
        """``upscale_logits(...) > threshold`` (bool, same shape and type), upscaled one mask at a time, so
        that the float logits of a single mask are held at once instead of all of them (a multimask
        prediction on an 8000x6000 photo: 192 MB instead of 576 MB)."""
        flat = low_res.reshape(-1, 1, *low_res.shape[-2:])
        if backend == "opencv":
            masks: torch.Tensor | np.ndarray = np.empty((len(flat), *original_size), dtype=bool)
        else:
            masks = torch.empty((len(flat), *original_size), dtype=torch.bool, device=low_res.device)
        for mask, target in zip(flat, masks):
            logits = self.upscale_logits(mask[None], input_size, original_size, backend)[0, 0]
            # NumPy thresholds the OpenCV result several times faster than torch would.
            if isinstance(logits, np.ndarray):
                np.greater(logits, threshold, out=target)
            else:
                torch.gt(logits, threshold, out=target)
        return masks.reshape(*low_res.shape[:-2], *original_size)

    @abstractmethod
    def upscale_matrices(self, side: int, input_size: tuple[int, ...],
                         original_size: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``upscale_logits(backend="torch")`` of (side, side) logits as the linear map it is: matrices
        ``rows`` (H, side) and ``cols`` (W, side) with ``logits = rows @ low_res @ cols.T`` in exact arithmetic.

        Their entries are products of the float32 interpolation weights torch uses (``interpolation_matrix``),
        in float64; torch's float32 result differs from the exact product by rounding only.
        """


class ResizeLongestSide(ImageTransform):
    """Scale so the longest side equals ``target_length``; the same scale applies to coordinates. The model
    pads the rest of its square input, so logits go back by upscaling to the square, cropping the padding,
    and resizing to the original size.

    The numpy image path resizes with Pillow's bilinear filter (which antialiases when shrinking), the
    filter the reference reaches through torchvision's PIL resize, so the pixels fed to the encoder are
    identical to the reference's.
    """

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        return self.get_preprocess_shape(original_size[0], original_size[1], self.target_length)

    @staticmethod
    def get_preprocess_shape(old_h: int, old_w: int, long_side_length: int) -> tuple[int, int]:
        scale = long_side_length / max(old_h, old_w)
        # At least one pixel: an image over ~2 * long_side_length times longer than wide would round to none
        # (where the reference fails); otherwise the reference's rounding.
        return max(1, int(old_h * scale + 0.5)), max(1, int(old_w * scale + 0.5))

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """HxWxC (or HxW) uint8 -> resized uint8 with the longest side = target_length."""
        new_h, new_w = self.get_preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        # np.array (not asarray): a writable copy, so torch.as_tensor can wrap it without warnings.
        return np.array(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))

    def apply_coords(self, coords: Array, original_size: tuple[int, int]) -> Array:
        """Rescale (..., 2) x,y coordinates given in the original image's pixel frame."""
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        if isinstance(coords, torch.Tensor):
            coords = coords.detach().clone().to(torch.float)
        else:
            coords = np.array(coords, dtype=float, copy=True)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """BxCxHxW float tensor -> resized with antialiased bilinear interpolation."""
        new_size = self.get_preprocess_shape(image.shape[2], image.shape[3], self.target_length)
        return F.interpolate(image, new_size, mode="bilinear", align_corners=False, antialias=True)

    def masks_to_low_res(self, masks: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks resized like the image (long side to ``target_length``, aspect ratio kept), zero-padded at the
        bottom and right to the square, averaged down to ``size``; padding is not valid."""
        height, width = self.input_size((masks.shape[-2], masks.shape[-1]))
        resized = self.apply_image_torch(masks[:, None].float())  # (N, 1, height, width)
        pad = (0, self.target_length - width, 0, self.target_length - height)
        shown = F.pad(resized.new_ones((1, 1, height, width)), pad)
        low_res = F.adaptive_avg_pool2d(F.pad(resized, pad), size)
        return low_res[:, 0] >= 0.5, F.adaptive_avg_pool2d(shown, size)[0, 0] >= 0.5

    # The reference names its torch variants separately; coordinates work for both array types here.
    apply_coords_torch = apply_coords
    apply_boxes_torch = ImageTransform.apply_boxes

    def upscale_logits(self, low_res: torch.Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...],
                       backend: UpscaleBackend = "torch") -> torch.Tensor | np.ndarray:
        if backend == "opencv":
            return upscale_mask_logits(low_res, self.target_length, tuple(input_size), tuple(original_size))
        if backend != "torch":
            raise ValueError(f"mask upscaling backend must be one of {UPSCALE_BACKENDS}, got {backend!r}")
        side = low_res.shape[-1]
        if self.target_length % side == 0 and low_res.shape[-2] == side:
            factor = self.target_length // side
            rows, cols = low_res_extent(side, factor, input_size)
            low_res = F.interpolate(low_res[..., :rows, :cols], (rows * factor, cols * factor), mode="bilinear",
                                    align_corners=False)
        else:
            low_res = F.interpolate(low_res, (self.target_length, self.target_length), mode="bilinear",
                                    align_corners=False)
        cropped = low_res[..., : input_size[0], : input_size[1]]
        return F.interpolate(cropped, tuple(original_size), mode="bilinear", align_corners=False)

    def upscale_matrices(self, side: int, input_size: tuple[int, ...],
                         original_size: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        # The steps of the torch branch of upscale_logits, one axis at a time.
        if self.target_length % side == 0:
            factor = self.target_length // side
            extents = low_res_extent(side, factor, input_size)
        else:
            factor, extents = None, (side, side)
        maps = []
        for extent, kept, original in zip(extents, input_size, original_size):
            upscaled = extent * factor if factor else self.target_length
            first = interpolation_matrix(extent, upscaled)[:kept]
            full = np.zeros((kept, side))
            full[:, :extent] = first
            maps.append(interpolation_matrix(kept, original) @ full)
        return maps[0], maps[1]


class StretchToSquare(ImageTransform):
    """SAM 2's frame: the whole image is stretched (aspect ratio not kept) to a ``target_length`` square.

    The pixels are left as they are here: the model's ``preprocess`` stretches them on the tensor, as Meta's
    ``SAM2Transforms`` does (``resize_torch``: the 0-255 image divided by 255, then torchvision's ``Resize``
    arithmetic, antialiased bilinear), so the encoder sees bit-identical input. ``apply_image`` is
    therefore the identity and ``input_size`` the original size. Coordinates are divided by the original
    width and height and multiplied by ``target_length``, in float32 as the reference computes them; mask
    logits go back with one bilinear resize from the low-res square to the original size.
    """

    coordinate_dtype = np.float32

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        return int(original_size[0]), int(original_size[1])

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """The image itself (uint8): the stretch happens in the model's ``preprocess`` (see the class)."""
        return np.array(image, copy=True)  # writable, so that torch.as_tensor can wrap it

    def resize_torch(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) float images -> (B, C, S, S): torchvision ``Resize((S, S))`` on tensors (antialiased
        bilinear, half-pixel centres); an image already S x S is returned as it is, as torchvision does."""
        size = (self.target_length, self.target_length)
        if tuple(images.shape[-2:]) == size:
            return images
        return F.interpolate(images, size, mode="bilinear", align_corners=False, antialias=True)

    def masks_to_low_res(self, masks: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks stretched to the square like the image, averaged down to ``size``; every pixel is valid."""
        low_res = F.adaptive_avg_pool2d(self.resize_torch(masks[:, None].float()), size)
        return low_res[:, 0] >= 0.5, torch.ones((size, size), dtype=torch.bool, device=masks.device)

    def apply_coords(self, coords: Array, original_size: tuple[int, int]) -> Array:
        height, width = original_size
        if isinstance(coords, torch.Tensor):
            coords = coords.detach().to(torch.float32, copy=True)
            coords[..., 0] = coords[..., 0] / width
            coords[..., 1] = coords[..., 1] / height
            return coords * self.target_length
        coords = np.array(coords, dtype=np.float32, copy=True)
        coords[..., 0] = coords[..., 0] / np.float32(width)
        coords[..., 1] = coords[..., 1] / np.float32(height)
        return coords * np.float32(self.target_length)

    def apply_normalized_coords(self, coords: Array, original_size: tuple[int, int]) -> Array:
        if isinstance(coords, torch.Tensor):
            return coords.detach().to(torch.float32) * self.target_length
        return np.asarray(coords, dtype=np.float32) * np.float32(self.target_length)

    def upscale_logits(self, low_res: torch.Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...],
                       backend: UpscaleBackend = "torch") -> torch.Tensor | np.ndarray:
        if backend == "opencv":
            side = low_res.shape[-1]
            source = low_res.detach().float().cpu().numpy().reshape(-1, low_res.shape[-2], side)
            out = np.empty((len(source), *original_size), dtype=np.float32)
            for mask, target in zip(source, out):
                cv2.resize(mask, (original_size[1], original_size[0]), dst=target, interpolation=cv2.INTER_LINEAR)
            return out.reshape(*low_res.shape[:-2], *original_size)
        if backend != "torch":
            raise ValueError(f"mask upscaling backend must be one of {UPSCALE_BACKENDS}, got {backend!r}")
        return F.interpolate(low_res, tuple(original_size), mode="bilinear", align_corners=False)

    def upscale_matrices(self, side: int, input_size: tuple[int, ...],
                         original_size: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        return interpolation_matrix(side, original_size[0]), interpolation_matrix(side, original_size[1])


def interpolation_matrix(input_length: int, output_length: int) -> np.ndarray:
    """(output_length, input_length) float64 matrix of the weights with which torch's bilinear interpolation
    (``align_corners=False``) resizes one axis: exactly the float32 values its kernel multiplies by.

    Read off torch itself, by resizing the unit vectors: each output is then ``1 * w + 0 * w'``, exact in any
    evaluation order (where both taps fall on the same input, the entry is their rounded sum).
    """
    unit_vectors = torch.eye(input_length, dtype=torch.float32).reshape(input_length, 1, input_length, 1)
    resized = F.interpolate(unit_vectors, (output_length, 1), mode="bilinear", align_corners=False)
    return resized[:, 0, :, 0].T.double().numpy()


def to_rgb_uint8(image: np.ndarray, image_format: str = "RGB") -> np.ndarray:
    """Bring a user image to the HxWx3 uint8 RGB array SAM expects.

    Converted, because the meaning is unambiguous: gray HxW or HxWx1 (replicated to 3 channels), RGBA/BGRA
    (alpha dropped), uint16 (scaled by 255/65535), float in [0, 1] (scaled by 255 and rounded), BGR (when
    ``image_format="BGR"``). Anything else raises ``ValueError`` naming the shape and dtype.
    """
    if image_format not in ("RGB", "BGR"):
        raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy array image, got {type(image).__name__}")
    described = f"shape {image.shape} and dtype {image.dtype}"
    if image.size == 0:
        raise ValueError(f"image is empty: {described}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got {described}")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    if image.dtype == np.uint16:
        image = np.round(image.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ValueError(f"float images must hold finite values in [0, 1]; got NaN or inf in {described}")
        if image.min() < 0.0 or image.max() > 1.0:
            raise ValueError(f"float images must hold finite values in [0, 1]; got {described} "
                             f"with range [{image.min()}, {image.max()}]")
        image = np.round(image * 255.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported image {described}; use uint8, uint16 or float in [0, 1]")
    if image_format == "BGR":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def low_res_extent(side: int, factor: int, input_size: tuple[int, ...]) -> tuple[int, int]:
    """Rows and columns of a (side, side) low-res map that upscaling by ``factor`` and cropping to
    ``input_size`` reads: those under the crop plus one bilinear neighbour. Upscaling only them gives the
    same values in the crop, for less work on non-square images."""
    return min(side, input_size[0] // factor + 2), min(side, input_size[1] // factor + 2)


def upscale_mask_logits(low_res: torch.Tensor, image_size: int, input_size: tuple[int, int],
                        original_size: tuple[int, int]) -> np.ndarray:
    """Low-res logits (..., S, S) -> float32 logits (..., H, W) at the original image size.

    The two bilinear resizes of ``ResizeLongestSide.upscale_logits`` (to the padded ``image_size`` square,
    crop to the resized image ``input_size``, then to ``original_size``), run by OpenCV: faster than torch's
    on CPU, and equal to it within ~1e-4 on logits of a few units (OpenCV's fixed-point interpolation
    weights).
    Only the rows and columns of ``low_res_extent`` are upscaled.
    """
    side = low_res.shape[-1]
    factor = image_size // side
    rows, cols = low_res_extent(side, factor, input_size)
    source = low_res.detach().float().cpu().numpy().reshape(-1, side, side)
    out = np.empty((len(source), *original_size), dtype=np.float32)
    for mask, target in zip(source, out):
        padded = cv2.resize(mask[:rows, :cols], (cols * factor, rows * factor), interpolation=cv2.INTER_LINEAR)
        cropped = padded[: input_size[0], : input_size[1]]
        cv2.resize(cropped, (original_size[1], original_size[0]), dst=target, interpolation=cv2.INTER_LINEAR)
    return out.reshape(*low_res.shape[:-2], *original_size)
