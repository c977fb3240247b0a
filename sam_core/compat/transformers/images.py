"""Images in, model inputs out, masks back: transformers' ``SamImageProcessor`` and ``Sam2ImageProcessor``
(their resize, normalisation, padding, coordinate scaling and ``post_process_masks``), and the same calls for
families transformers does not have, which keep their own preprocessing."""

from __future__ import annotations

import io
import json
import os
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
from PIL import Image
from torchvision.transforms.v2 import functional as tvF

from sam_core.interface import PromptableSegmenter
from sam_core.pipelines.masks import clean_low_res_logits
from sam_core.transforms import ResizeLongestSide, StretchToSquare, to_rgb_uint8

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Where a save_pretrained folder keeps its image processor's settings: transformers 5 writes processor_config.json
# (with an "image_processor" entry), earlier versions and the hub's SAM repos preprocessor_config.json.
PROCESSOR_CONFIGS = ("processor_config.json", "preprocessor_config.json")


class BatchFeature(dict):
    """What a processor returns: a dict of model inputs (``model(**inputs)``) that also reads as attributes
    (``inputs.pixel_values``) and moves with ``.to(device)`` (floating tensors also to a dtype)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device: str | torch.device | torch.dtype | None = None,
           dtype: torch.dtype | None = None) -> BatchFeature:
        """Move every tensor to ``device`` (and floating ones to ``dtype``); returns self, as transformers'."""
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        for key, value in self.items():
            if isinstance(value, torch.Tensor):
                cast = dtype if dtype is not None and value.is_floating_point() else None
                self[key] = value.to(device=device, dtype=cast)
        return self


def load_image(image: Any, timeout: float | None = None) -> np.ndarray:
    """An image as transformers' pipelines and processors take it, as an HxWx3 uint8 RGB array.

    Args:
        image: A PIL image (converted to RGB), a path or an http(s) URL of an image file, a numpy array
            (HxW, HxWx3 or HxWx4; uint8, uint16 or float in [0, 1], see ``sam_core.transforms.to_rgb_uint8``),
            or a torch tensor (3xHxW or HxWx3, as transformers reads tensors: channels first when the first
            axis has 1, 3 or 4 entries).
        timeout: Seconds to wait for a URL; None: no limit.

    Returns:
        (np.ndarray): HxWx3 uint8 RGB.

    Raises:
        ValueError: If the image is of another type or shape, or a path does not exist.
    """
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))
    if isinstance(image, (str, os.PathLike)):
        text = os.fspath(image)
        if text.startswith(("http://", "https://")):
            with urllib.request.urlopen(text, timeout=timeout) as response:
                return np.array(Image.open(io.BytesIO(response.read())).convert("RGB"))
        if not Path(text).is_file():
            raise ValueError(f"image not found: {text} (expected a PIL image, an image file, an http(s) URL or "
                             "an array)")
        with Image.open(text) as opened:
            return np.array(opened.convert("RGB"))
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().numpy()
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)
        return to_rgb_uint8(array)
    if isinstance(image, np.ndarray):
        return to_rgb_uint8(image)
    raise ValueError(f"expected a PIL image, a path or URL, a numpy array or a tensor, got {type(image).__name__}")


def read_processor_config(source: Any) -> dict[str, Any]:
    """The image processor settings of a Hugging Face folder or hub id; {} where there are none (a checkpoint
    file, a registry name, a repo without them). A local folder is read, never downloaded."""
    if not isinstance(source, (str, os.PathLike)):
        return {}
    path = Path(source).expanduser()
    if path.is_dir():
        files = [path / name for name in PROCESSOR_CONFIGS if (path / name).is_file()]
    elif path.exists() or os.fspath(source).count("/") != 1:
        files = []
    else:
        files = _hub_processor_configs(os.fspath(source))
    for file in files:
        settings = json.loads(file.read_text())
        settings = settings.get("image_processor", settings)
        if "size" in settings or "image_mean" in settings:
            return settings
    return {}


def _hub_processor_configs(repo_id: str) -> list[Path]:
    files = []
    for name in PROCESSOR_CONFIGS:
        try:
            files.append(Path(hf_hub_download(repo_id, name)))
        except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError):
            continue
    return files


def _side(size: Mapping[str, int] | int | None, default: int) -> int:
    if size is None:
        return default
    if isinstance(size, int):
        return size
    return int(size.get("longest_edge") or size.get("height") or default)


def _tensor_sizes(sizes: Any) -> list[tuple[int, int]]:
    if isinstance(sizes, (torch.Tensor, np.ndarray)):
        sizes = sizes.tolist()
    return [(int(size[0]), int(size[1])) for size in sizes]


class SamImageProcessor:
    """transformers' ``SamImageProcessor``: the long side resized to ``size`` (torchvision's antialiased
    bilinear on uint8, as transformers' default backend), ImageNet-normalised, zero-padded to ``pad_size``.

    Args:
        size: ``{"longest_edge": L}`` (default 1024).
        pad_size: ``{"height": H, "width": W}`` (default L x L).
        image_mean, image_std: per-channel statistics of images scaled to [0, 1] (default ImageNet's).
        rescale_factor: the scale to [0, 1] (default 1/255).
    """

    model_input_names = ("pixel_values",)
    resizes_to_square = False

    def __init__(self, size: Mapping[str, int] | int | None = None, pad_size: Mapping[str, int] | None = None,
                 image_mean: Sequence[float] = IMAGENET_MEAN, image_std: Sequence[float] = IMAGENET_STD,
                 rescale_factor: float = 1 / 255, **unused: Any) -> None:
        side = _side(size, 1024)
        self.size = {"longest_edge": side} if not self.resizes_to_square else {"height": side, "width": side}
        self.pad_size = dict(pad_size) if pad_size else {"height": side, "width": side}
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        self.rescale_factor = rescale_factor

    @property
    def target_size(self) -> int:
        """Side of the square frame that prompts are given in."""
        return _side(self.size, 1024)

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, **overrides: Any) -> SamImageProcessor:
        """The processor of a Hugging Face folder or hub id (its ``preprocessor_config.json``), or the
        defaults for anything else ``load_sam`` reads."""
        return cls(**{**read_processor_config(source), **overrides})

    def resized_shape(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of an image of ``original_size`` once resized (transformers' rounding)."""
        return ResizeLongestSide.get_preprocess_shape(original_size[0], original_size[1], self.target_size)

    def scale_coordinates(self, coords: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """(..., 2) x, y pixels of the original image -> the model's input frame, in coords' float dtype."""
        new_h, new_w = self.resized_shape(original_size)
        scaled = coords.clone() if coords.is_floating_point() else coords.float()
        scaled[..., 0] = scaled[..., 0] * (new_w / original_size[1])
        scaled[..., 1] = scaled[..., 1] * (new_h / original_size[0])
        return scaled

    def __call__(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        """``preprocess``."""
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)

    def preprocess(self, images: Any, return_tensors: str | None = "pt", device: str | torch.device | None = None,
                   **unused: Any) -> BatchFeature:
        """Images -> ``pixel_values`` (B, 3, S, S) float32, ``original_sizes`` and ``reshaped_input_sizes``
        (B, 2) int64.

        Args:
            images: One image or a list of them (see ``load_image``).
            return_tensors: "pt" (torch tensors; the only kind returned).
            device: Where the tensors go (default CPU).

        Returns:
            (BatchFeature): ``pixel_values``, ``original_sizes`` and (SAM) ``reshaped_input_sizes``.

        Raises:
            ValueError: If there is no image, an image cannot be read, or ``return_tensors`` is not "pt".
        """
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors must be 'pt', got {return_tensors!r}")
        listed = images if isinstance(images, (list, tuple)) else [images]
        if not listed:
            raise ValueError("no images given")
        arrays = [load_image(image) for image in listed]
        pixels = torch.cat([self.pixel_values(array) for array in arrays])
        features = BatchFeature(pixel_values=pixels,
                                original_sizes=torch.tensor([array.shape[:2] for array in arrays]))
        if not self.resizes_to_square:
            features["reshaped_input_sizes"] = torch.tensor([self.resized_shape(a.shape[:2]) for a in arrays])
        return features.to(device)

    def pixel_values(self, image: np.ndarray) -> torch.Tensor:
        """One HxWx3 uint8 RGB image -> the (1, 3, S, S) float32 encoder input."""
        pixels = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)[None]
        pixels = tvF.resize(pixels, list(self._resize_to(image.shape[:2])),
                            interpolation=tvF.InterpolationMode.BILINEAR, antialias=True)
        # Fused rescale and normalise, as transformers computes it: (x - mean / r) / (std / r), in float32.
        mean = (torch.tensor(self.image_mean) * (1.0 / self.rescale_factor)).view(-1, 1, 1)
        std = (torch.tensor(self.image_std) * (1.0 / self.rescale_factor)).view(-1, 1, 1)
        pixels = (pixels.to(torch.float32) - mean) / std
        if self.resizes_to_square:
            return pixels
        height, width = self.pad_size["height"], self.pad_size["width"]
        return F.pad(pixels, (0, width - pixels.shape[-1], 0, height - pixels.shape[-2]))

    def _resize_to(self, original_size: tuple[int, int]) -> tuple[int, int]:
        return self.resized_shape(original_size)

    def post_process_masks(self, masks: Any, original_sizes: Any, reshaped_input_sizes: Any = None,
                           mask_threshold: float = 0.0, binarize: bool = True,
                           pad_size: Mapping[str, int] | None = None, max_hole_area: float = 0.0,
                           max_sprinkle_area: float = 0.0, **unused: Any) -> list[torch.Tensor]:
        """Low-res mask logits -> masks at each image's original size, as transformers' ``post_process_masks``:
        upscaled (bilinear) to the padded input, the padding cropped, upscaled to the original size.

        Args:
            masks: Per image, (P, M, s, s) logits (``outputs.pred_masks``, a tensor or a list of tensors or arrays).
            original_sizes: (B, 2) original (H, W) per image.
            reshaped_input_sizes: (B, 2) resized (h, w) per image (SAM; unused by SAM 2's processor).
            mask_threshold: Logit above which a pixel is in the mask.
            binarize: Return bool masks (default) or the upscaled logits.
            pad_size: The padded input size (default the processor's).
            max_hole_area, max_sprinkle_area: If > 0, fill background regions / remove foreground regions of
                at most this many pixels in the low-res logits first (8-connected), as SAM 2's predictor does
                (transformers 5.25 accepts them for SAM 2 and ignores them).

        Returns:
            (list of torch.Tensor): Per image, (P, M, H, W) bool masks (or float logits).

        Raises:
            ValueError: If the sizes do not match the masks.
        """
        originals = _tensor_sizes(original_sizes)
        if len(masks) != len(originals):
            raise ValueError(f"{len(masks)} mask sets for {len(originals)} original_sizes (one per image expected)")
        reshaped = None if reshaped_input_sizes is None else _tensor_sizes(reshaped_input_sizes)
        if reshaped is None and not self.resizes_to_square:
            raise ValueError("reshaped_input_sizes is needed to remove SAM's padding (the processor returns it)")
        pad = pad_size or self.pad_size
        outputs = []
        for index, original in enumerate(originals):
            logits = masks[index]
            logits = torch.from_numpy(logits) if isinstance(logits, np.ndarray) else logits
            if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
                raise ValueError("masks must hold one (point_batch, masks, height, width) tensor per image, got "
                                 f"{getattr(logits, 'shape', type(logits).__name__)}")
            if max_hole_area > 0 or max_sprinkle_area > 0:
                logits = clean_low_res_logits(logits, mask_threshold, max_hole_area, max_sprinkle_area)
            if not self.resizes_to_square:
                logits = F.interpolate(logits, (pad["height"], pad["width"]), mode="bilinear", align_corners=False)
                logits = logits[..., :reshaped[index][0], :reshaped[index][1]]
            logits = F.interpolate(logits, original, mode="bilinear", align_corners=False)
            outputs.append(logits > mask_threshold if binarize else logits)
        return outputs


class Sam2ImageProcessor(SamImageProcessor):
    """transformers' ``Sam2ImageProcessor``: the whole image stretched to ``size`` x ``size`` (torchvision's
    antialiased bilinear on uint8), ImageNet-normalised, no padding; masks go straight back to the original
    size."""

    resizes_to_square = True

    def resized_shape(self, original_size: tuple[int, int]) -> tuple[int, int]:
        return self.target_size, self.target_size

    def scale_coordinates(self, coords: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        scaled = coords.clone() if coords.is_floating_point() else coords.float()
        scaled[..., 0] = scaled[..., 0] * (self.target_size / original_size[1])
        scaled[..., 1] = scaled[..., 1] * (self.target_size / original_size[0])
        return scaled


class NativeImageProcessor(SamImageProcessor):
    """The same calls for a family that transformers does not have (EfficientViT-SAM...): the model's own
    transform and normalisation, as its reference code preprocesses."""

    def __init__(self, model: PromptableSegmenter) -> None:
        super().__init__(size=model.image_size)
        self.model = model
        self.resizes_to_square = isinstance(model.transform, StretchToSquare)

    def resized_shape(self, original_size: tuple[int, int]) -> tuple[int, int]:
        return tuple(self.model.transform.input_size(original_size))

    def scale_coordinates(self, coords: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        return torch.as_tensor(self.model.transform.apply_coords(coords.float(), original_size))

    def pixel_values(self, image: np.ndarray) -> torch.Tensor:
        resized = torch.as_tensor(self.model.transform.apply_image(image)).permute(2, 0, 1).contiguous()
        return self.model.preprocess(resized.to(self.model.device)[None]).float().cpu()

    def post_process_masks(self, masks: Any, original_sizes: Any, reshaped_input_sizes: Any = None,
                           mask_threshold: float = 0.0, binarize: bool = True, **options: Any) -> list[torch.Tensor]:
        originals = _tensor_sizes(original_sizes)
        outputs = []
        for logits, original in zip(masks, originals):
            upscaled = self.model.postprocess_masks(torch.as_tensor(logits).to(self.model.device),
                                                    self.resized_shape(original), original).cpu()
            outputs.append(upscaled > mask_threshold if binarize else upscaled)
        return outputs


def image_processor_for(model: PromptableSegmenter) -> SamImageProcessor:
    """The processor that prepares images for ``model`` as transformers does for its family.

    Args:
        model (PromptableSegmenter): A model of any family.

    Returns:
        (SamImageProcessor): SAM's processing (long side + padding) for models with SAM's transform, SAM 2's
            (stretch) for SAM 2's, both with ImageNet statistics; a :class:`NativeImageProcessor` (the model's own
            preprocessing, as its reference code does) for any other transform or statistics.
    """
    if type(model.transform) in (ResizeLongestSide, StretchToSquare) and _has_imagenet_statistics(model):
        kind = SamImageProcessor if type(model.transform) is ResizeLongestSide else Sam2ImageProcessor
        return kind(size=model.image_size)
    return NativeImageProcessor(model)


def _has_imagenet_statistics(model: PromptableSegmenter) -> bool:
    """Whether the model normalises with ImageNet's mean and std (on a 0-255 or a 0-1 scale)."""
    mean, std = getattr(model, "pixel_mean", None), getattr(model, "pixel_std", None)
    if mean is None or std is None:
        return False
    stats = np.concatenate([mean.flatten().cpu().numpy(), std.flatten().cpu().numpy()])
    imagenet = np.array([*IMAGENET_MEAN, *IMAGENET_STD])
    return bool(np.allclose(stats, imagenet) or np.allclose(stats, 255 * imagenet))
