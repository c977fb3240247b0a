"""Predictor: embed an image once, then decode masks for any number of point / box / mask prompts.

Works with every model family through the model interface (``sam_core.interface``); prompts are
validated in ``sam_core.pipelines.prompts`` and embeddings stored by ``sam_core.io.embeddings``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from os import PathLike
from typing import Any

import numpy as np
import torch

from sam_core.interface import ImageFeatures, PreparedImage, PromptableSegmenter, Prompts
from sam_core.io.checkpoints import load_sam
from sam_core.io.embeddings import StoredFeatures, load_features, save_features
from sam_core.pipelines.masks import clean_low_res_logits
from sam_core.pipelines.prompts import prompts_from_arrays, prompts_from_tensors, to_model_frame
from sam_core.transforms import UPSCALE_BACKENDS, UpscaleBackend, to_rgb_uint8

Size = tuple[int, int]
Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]


def _serialized(method: Callable) -> Callable:
    """Run ``method`` holding the predictor's lock: calls from several threads take turns, so that each one
    sees, and leaves behind, one whole image state."""
    @functools.wraps(method)
    def locked(self: Predictor, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class Predictor:
    """Interactive segmentation: ``set_image`` runs the heavy image encoder once, ``predict`` is then cheap.

    Any model family works (SAM, SAM 2, and the families registered in ``sam_core.registry``), each with
    its reference predictor's semantics: code written for ``segment_anything.SamPredictor`` runs unchanged,
    and with a SAM 2 model the results are ``sam2.SAM2ImagePredictor``'s (whose exact signatures
    ``sam_core.compat.SAM2ImagePredictor`` offers). The public attributes mirror the references: ``model``,
    ``transform``, ``features`` (the image embedding, B x C x h x w), ``original_size`` and ``input_size``
    (H, W of the single set image), ``is_image_set``. ``original_sizes`` / ``input_sizes`` hold one entry per
    image set with ``set_images``.

    Threads: the methods of one Predictor hold a lock, so calls from several threads take turns and each
    ``predict`` decodes one whole image state (never the embedding of one image with the size of another);
    which image that is, when another thread calls ``set_image`` meanwhile, depends on timing. To work on
    different images in parallel, give each thread its own Predictor: they can share one model, which
    inference only reads.

    Args:
        sam (PromptableSegmenter): The model, e.g. from ``sam_core.load_sam``.
        mask_upscaling (str): How low-res logits go back to the image size. ``"opencv"`` (default): on the CPU
            with OpenCV's bilinear resize, faster than torch there and equal to it within ~1e-5 on logits; the
            full-size masks then come back on the CPU. ``"torch"``: the reference's interpolation, on the
            model's device (the choice for a GPU).
        mask_threshold (float or None): Logit above which a pixel is in the mask. None (default): the model's
            ``mask_threshold``, 0.0.
        max_hole_area (float): If > 0, holes (8-connected background regions) of at most this many pixels in
            the low-res logits are filled before upscaling (SAM2ImagePredictor's option; see
            ``sam_core.pipelines.masks.clean_low_res_logits``). Default 0: off.
        max_sprinkle_area (float): If > 0, foreground specks of at most this many low-res pixels are removed
            before upscaling. Default 0: off.

    Raises:
        ValueError: If ``mask_upscaling`` is neither ``"opencv"`` nor ``"torch"``, or an area is negative.
    """

    def __init__(self, sam: PromptableSegmenter, mask_upscaling: UpscaleBackend = "opencv",
                 mask_threshold: float | None = None, max_hole_area: float = 0.0,
                 max_sprinkle_area: float = 0.0) -> None:
        """See the class docstring for the arguments."""
        if mask_upscaling not in UPSCALE_BACKENDS:
            raise ValueError(f"mask_upscaling must be one of {UPSCALE_BACKENDS}, got {mask_upscaling!r}")
        if max_hole_area < 0 or max_sprinkle_area < 0:
            raise ValueError(f"max_hole_area and max_sprinkle_area must be >= 0, got {max_hole_area} and "
                             f"{max_sprinkle_area}")
        self.model = sam
        self.transform = sam.transform
        self.mask_upscaling = mask_upscaling
        self.mask_threshold = sam.mask_threshold if mask_threshold is None else float(mask_threshold)
        self.max_hole_area = max_hole_area
        self.max_sprinkle_area = max_sprinkle_area
        self._lock = threading.RLock()
        self.reset_image()

    @classmethod
    def from_pretrained(cls, source: str | PathLike, device: str | torch.device | None = None,
                        mask_upscaling: UpscaleBackend = "opencv", mask_threshold: float | None = None,
                        max_hole_area: float = 0.0, max_sprinkle_area: float = 0.0, **load_kwargs: Any) -> Predictor:
        """A Predictor on a model loaded with ``sam_core.load_sam``.

        Args:
            source (str or PathLike): Anything ``load_sam`` reads: a Meta ``.pth`` / ``.pt`` file, a sam_core
                ``.safetensors`` file, a Hugging Face folder or hub id, or a registry name (``"vit_b"``,
                ``"sam2.1_hiera_tiny"``...).
            device (str, torch.device or None): Where the model goes; None (default): the CPU.
            mask_upscaling (str): As for the constructor (see the class docstring).
            mask_threshold (float or None): As for the constructor.
            max_hole_area (float): As for the constructor.
            max_sprinkle_area (float): As for the constructor.
            **load_kwargs: Further arguments of ``load_sam``: ``config`` (a registry name or config object that
                forces the model's shapes) and ``dtype`` (torch.dtype; default: the checkpoint's floating dtype).

        Returns:
            (Predictor): A predictor on the loaded model, with no image set.

        Raises:
            CheckpointError: If the checkpoint cannot be found, read, or fitted to the requested model.
            ValueError: If a predictor option is invalid.
        """
        return cls(load_sam(source, device=device, **load_kwargs), mask_upscaling=mask_upscaling,
                   mask_threshold=mask_threshold, max_hole_area=max_hole_area, max_sprinkle_area=max_sprinkle_area)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def features(self) -> torch.Tensor | None:
        """The image embedding(s) of the set image(s), B x C x h x w (the reference's attribute)."""
        return None if self.features_by_name is None else self.features_by_name[self.model.embedding_key]

    @_serialized
    def reset_image(self) -> None:
        """Forget the current image(s) and their embeddings."""
        self.is_image_set = False
        self.features_by_name: ImageFeatures | None = None
        self.original_size: Size | None = None
        self.input_size: Size | None = None
        self.original_sizes: list[Size] = []
        self.input_sizes: list[Size] = []
        # One per set image: its prompt-independent decoder state, shared by all its prompts.
        self._prepared: list[PreparedImage] = []

    # ------------------------------------------------------------------ images and embeddings

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Compute the image embedding of one image, for ``predict`` and ``predict_torch`` to prompt.

        Args:
            image (np.ndarray): The image, HxWx3 uint8 in ``image_format``. Gray (HxW or HxWx1), RGBA (HxWx4),
                uint16 and float images in [0, 1] are converted first (see ``sam_core.transforms.to_rgb_uint8``).
            image_format (str): The channel order of ``image``, ``"RGB"`` (default) or ``"BGR"``.

        Raises:
            ValueError: If the image has another shape, dtype or value range, is empty, or ``image_format`` is
                neither ``"RGB"`` nor ``"BGR"``.
        """
        self.set_images([image], image_format)

    @_serialized
    def set_images(self, images: Sequence[np.ndarray], image_format: str = "RGB") -> None:
        """Compute the embeddings of several images in one encoder pass; decode them with ``predict_batch``.

        Memory grows with the number of images (the encoder holds all activations at once), so split
        long lists into chunks that fit. Afterwards ``original_sizes`` and ``input_sizes`` hold one (H, W) per
        image, and ``original_size`` / ``input_size`` are set only if there is one image.

        Args:
            images (list of np.ndarray): The images, each HxWx3 uint8 in ``image_format`` (or converted as for
                ``set_image``); they may differ in size.
            image_format (str): The channel order of every image, ``"RGB"`` (default) or ``"BGR"``.

        Raises:
            ValueError: If ``images`` is a single array or empty, or an image is not usable (see ``set_image``).
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

    def set_image_batch(self, image_list: Sequence[np.ndarray], image_format: str = "RGB") -> None:
        """``set_images`` under SAM2ImagePredictor's name."""
        self.set_images(image_list, image_format)

    @_serialized
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: Sequence[int]) -> None:
        """Embed a 1x3xhxw image already passed through ``self.transform.apply_image`` (for SAM: resized so
        that its long side is the encoder size; SAM 2's transform leaves the image as it is)."""
        original = _check_size(original_image_size, "original_image_size")
        expected = self.transform.input_size(original)
        shape = tuple(transformed_image.shape)
        long_side = max(expected) == self.model.image_size  # SAM: any h x w with that long side, as the reference
        fits = shape[2:] == expected or (long_side and len(shape) == 4 and max(shape[2:]) == max(expected))
        if len(shape) != 4 or shape[0] != 1 or shape[1] != 3 or not fits:
            what = f"long side {self.model.image_size}" if long_side else f"size {expected}"
            raise ValueError(f"set_torch_image expects a 1x3xHxW tensor with {what} (the transformed image of "
                             f"an {original[0]}x{original[1]} image), got shape {shape}")
        self._encode([transformed_image.to(self.device)], [original])

    def _encode(self, inputs: list[torch.Tensor], original_sizes: list[Size]) -> None:
        self.reset_image()
        # Each image is normalised (and padded) to the model input on its own, since they may differ in
        # shape, then all go through the encoder together. no_grad rather than inference_mode: the
        # embedding is handed to users (get_image_embedding), who may train a decoder on it, and
        # inference tensors cannot take part in autograd.
        with torch.no_grad():
            batch = torch.cat([self.model.preprocess(x) for x in inputs])
            features = self.model.encode(batch)
        self._set_state(StoredFeatures(features, original_sizes, [tuple(x.shape[-2:]) for x in inputs]))

    def _set_state(self, stored: StoredFeatures) -> None:
        self.features_by_name = stored.features
        self.original_sizes = [(int(h), int(w)) for h, w in stored.original_sizes]
        self.input_sizes = [(int(h), int(w)) for h, w in stored.input_sizes]
        single = len(self.original_sizes) == 1
        self.original_size = self.original_sizes[0] if single else None
        self.input_size = self.input_sizes[0] if single else None
        count = len(self.original_sizes)
        with torch.inference_mode():
            self._prepared = [self.model.prepare_image({name: f[i:i + 1] for name, f in stored.features.items()})
                              for i in range(count)]
        self.is_image_set = True

    @_serialized
    def get_image_embedding(self) -> torch.Tensor:
        """The image embeddings of the set image(s).

        Returns:
            (torch.Tensor): The model's ``embedding_key`` feature, B x C x h x w in the model's dtype on its
                device (B = number of set images; 1x256x64x64 for the released SAM and SAM 2 models). SAM 2's
                high-resolution features are in ``features_by_name``.

        Raises:
            RuntimeError: If no image is set.
        """
        self._require_image()
        return self.features

    @_serialized
    def set_image_embedding(self, embedding: torch.Tensor | np.ndarray, original_size: Sequence[int],
                            input_size: Sequence[int] | None = None) -> None:
        """Use a precomputed embedding (1xCxhxw or Cxhxw) of an image of ``original_size`` (H, W).

        ``input_size`` (the resized size fed to the encoder) defaults to what ``set_image`` would use. For
        families whose features are more than the embedding (SAM 2), use ``load_embedding``.
        """
        shapes = self.model.feature_shapes
        if set(shapes) != {self.model.embedding_key}:
            raise ValueError(f"this {self.model.family} model needs more than the embedding ({sorted(shapes)}); "
                             "use save_embedding / load_embedding")
        embedding = torch.as_tensor(embedding)
        if embedding.dim() == 3:
            embedding = embedding[None]
        expected = shapes[self.model.embedding_key]
        if embedding.dim() != 4 or embedding.shape[0] != 1 or tuple(embedding.shape[1:]) != expected:
            raise ValueError(f"expected an embedding of shape {(1, *expected)}, got {tuple(embedding.shape)}")
        original = _check_size(original_size, "original_size")
        resized = self.transform.input_size(original) if input_size is None else _check_size(input_size,
                                                                                              "input_size")
        if max(resized) > self.model.image_size:
            raise ValueError(f"input_size {resized} exceeds the encoder size {self.model.image_size}")
        features = {self.model.embedding_key: embedding.to(self.device, self._dtype())}
        self.reset_image()
        self._set_state(StoredFeatures(features, [original], [resized]))

    @_serialized
    def save_embedding(self, path: str | PathLike) -> None:
        """Write the features of the set image(s) and their sizes to a safetensors file, atomically.

        The file holds every feature of ``features_by_name`` (batch first), the images' original and resized
        sizes, the model family and its config, and a CRC-32 of the content (see docs/pipelines.md).

        Args:
            path (str or PathLike): The file to write (replaced if it exists).

        Raises:
            RuntimeError: If no image is set.
        """
        self._require_image()
        save_features(path, StoredFeatures(self.features_by_name, self.original_sizes, self.input_sizes),
                      self.model.family, self.model.config)

    @_serialized
    def load_embedding(self, path: str | PathLike) -> None:
        """Restore what ``save_embedding`` wrote, as if ``set_image`` / ``set_images`` had run.

        The features are moved to the model's device and dtype.

        Args:
            path (str or PathLike): A file written by ``save_embedding``.

        Raises:
            FileNotFoundError: If ``path`` is not a file.
            ValueError: If it is not a sam_core embedding file, is damaged (CRC-32), or was computed by a model
                of another family, config or feature shapes.
        """
        stored = load_features(path, self.model.family, self.model.config, self.model.feature_shapes)
        stored.features = {name: f.to(self.device, self._dtype()) for name, f in stored.features.items()}
        self.reset_image()
        self._set_state(stored)

    # ------------------------------------------------------------------ prediction

    @_serialized
    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                multimask_output: bool = True, return_logits: bool = False,
                normalize_coords: bool = True, hq_token_only: bool = False) -> Prediction:
        """Predict masks for one prompt on the image set with ``set_image``; coordinates are pixels of that image.

        Args:
            point_coords (np.ndarray or None): A Nx2 array of (x, y) point prompts, in pixels of the image (or
                fractions of it, see ``normalize_coords``). Lists and tensors are accepted too.
            point_labels (np.ndarray or None): A length N array of labels for the points, 1 = foreground,
                0 = background. Given together with ``point_coords``.
            box (np.ndarray or None): A length 4 array, x0 y0 x1 y1 (x1 >= x0, y1 >= y0), in the same frame.
            mask_input (np.ndarray or None): A 1xSxS array of low-res logits from a previous call (its third
                return value, one mask of it), S = ``model.mask_input_size`` (256 for the released models).
            multimask_output (bool): If True (default), return three candidate masks, which suits an
                ambiguous prompt such as one click; if False, one mask (with one mask asked for, SAM 2 returns
                its best multimask output when its single-mask output is unstable, as Meta's predictor does).
            return_logits (bool): If True, return the upscaled mask logits instead of booleans.
            normalize_coords (bool): True (default): coordinates are pixels of the image. False: they are
                fractions of its width and height, in [0, 1] (SAM2ImagePredictor's option).
            hq_token_only (bool): SAM-HQ only: the HQ token's mask alone instead of its sum with SAM's mask.
                SAM-HQ returns one mask either way; with ``multimask_output`` SAM's part is its best of three.

        Returns:
            (np.ndarray): The masks, CxHxW with (H, W) the image's size and C = 3 with ``multimask_output``
                (SAM-HQ: always 1), else 1; bool, or float logits with ``return_logits`` (the model's dtype;
                float32 for bfloat16 models).
            (np.ndarray): The predicted IoU of each mask, length C, in the model's dtype (float32 for float32
                and bfloat16 models).
            (np.ndarray): Low-res logits, CxSxS, same dtype, to pass back as ``mask_input`` (clamped to +-32
                for SAM 2, as Meta's predictor hands them back).

        Raises:
            RuntimeError: If no image is set, or several are (``set_images``: use ``predict_batch``).
            ValueError: If a prompt has the wrong shape, non-finite values, labels other than 0 / 1, a box with
                x1 < x0 or y1 < y0, only one of ``point_coords`` / ``point_labels``, or ``hq_token_only`` is
                asked of a model that is not SAM-HQ.
        """
        self._require_image()
        if len(self._prepared) != 1:
            raise RuntimeError(f"{len(self._prepared)} images are set; use predict_batch, or set_image for one")
        prompts = prompts_from_arrays(point_coords, point_labels, box, mask_input,
                                      mask_input_size=self.model.mask_input_size)
        return self.predict_prompts(prompts, 0, multimask_output, return_logits, normalize_coords, hq_token_only)

    @_serialized
    def predict_batch(self, point_coords: Sequence[np.ndarray | None] | None = None,
                      point_labels: Sequence[np.ndarray | None] | None = None,
                      boxes: Sequence[np.ndarray | None] | None = None,
                      mask_inputs: Sequence[np.ndarray | None] | None = None,
                      multimask_output: bool = True, return_logits: bool = False,
                      normalize_coords: bool = True, hq_token_only: bool = False) -> list[Prediction]:
        """``predict`` for every image given to ``set_images``, with one prompt per image.

        Args:
            point_coords (sequence of np.ndarray or None, or None): One Nx2 array (or None) per image.
            point_labels (sequence of np.ndarray or None, or None): One length N array (or None) per image.
            boxes (sequence of np.ndarray or None, or None): One length 4 array (or None) per image.
            mask_inputs (sequence of np.ndarray or None, or None): One 1xSxS array (or None) per image.
                Entry i of a sequence (or None) means exactly what the singular argument of ``predict`` means
                for image i; an argument left None is None for every image.
            multimask_output (bool): As for ``predict``, for every image.
            return_logits (bool): As for ``predict``, for every image.
            normalize_coords (bool): As for ``predict``, for every image.
            hq_token_only (bool): As for ``predict``, for every image.

        Returns:
            (list of tuple): One ``predict`` result (masks CxHixWi, scores C, low-res logits CxSxS, numpy) per
                image, in the order of ``set_images``.

        Raises:
            RuntimeError: If no image is set.
            ValueError: If a sequence's length differs from the number of images, or a prompt is invalid (see
                ``predict``).
        """
        self._require_image()
        count = len(self._prepared)
        per_image = []
        for name, values in (("point_coords", point_coords), ("point_labels", point_labels), ("boxes", boxes),
                             ("mask_inputs", mask_inputs)):
            if values is None:
                values = [None] * count
            elif len(values) != count:
                raise ValueError(f"{name} has {len(values)} entries for {count} images")
            per_image.append(values)
        prompts = [prompts_from_arrays(*values, mask_input_size=self.model.mask_input_size)
                   for values in zip(*per_image)]
        return [self.predict_prompts(image_prompts, index, multimask_output, return_logits, normalize_coords,
                                     hq_token_only)
                for index, image_prompts in enumerate(prompts)]

    @_serialized
    def predict_torch(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                      boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                      multimask_output: bool = True, return_logits: bool = False,
                      hq_token_only: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict masks for B prompt sets at once on the image set with ``set_image``. Coordinates are in the
        model's input frame: pass them through ``self.transform.apply_coords`` / ``apply_boxes`` first.

        Args:
            point_coords (torch.Tensor or None): A BxNx2 float tensor of (x, y) points in the input frame.
            point_labels (torch.Tensor or None): A BxN tensor of labels, 1 = foreground, 0 = background,
                -1 = padding (a point that is ignored, to batch prompt sets of different lengths).
            boxes (torch.Tensor or None): A Bx4 float tensor of x0 y0 x1 y1 boxes in the input frame.
            mask_input (torch.Tensor or None): A Bx1xSxS float tensor of low-res logits from a previous call.
            multimask_output (bool): As for ``predict``.
            return_logits (bool): As for ``predict``.
            hq_token_only (bool): As for ``predict``.

        Returns:
            (torch.Tensor): The masks, BxCxHxW at the image's size, bool (or float logits in the model's dtype
                with ``return_logits``), on the model's device.
            (torch.Tensor): The predicted IoU of each mask, BxC, in the model's dtype.
            (torch.Tensor): Low-res logits, BxCxSxS, in the model's dtype (clamped to +-32 for SAM 2).

        Raises:
            RuntimeError: If no image is set, or several are.
            ValueError: If a prompt has the wrong shape or values, or batch sizes differ (see ``predict``).
        """
        self._require_image()
        if len(self._prepared) != 1:
            raise RuntimeError(f"{len(self._prepared)} images are set; predict_torch decodes one image")
        prompts = prompts_from_tensors(point_coords, point_labels, boxes, mask_input,
                                       mask_input_size=self.model.mask_input_size)
        prompts = Prompts(*(None if p is None else p.to(self.device) for p in
                            (prompts.point_coords, prompts.point_labels, prompts.boxes, prompts.mask_input)))
        masks, scores, low_res = self.decode_prompts(prompts, 0, multimask_output, return_logits, hq_token_only)
        return masks.to(self.device), scores, low_res

    @contextlib.contextmanager
    def holding_image(self) -> Iterator[Predictor]:
        """Hold the set image(s) for a block of calls: other threads' ``set_image`` and ``predict`` calls wait,
        so that image sizes read in the block and the decoding that follows see one image state.

        Returns:
            A context manager giving this predictor.
        """
        with self._lock:
            yield self

    @_serialized
    def predict_prompts(self, prompts: Prompts, image_index: int = 0, multimask_output: bool = True,
                        return_logits: bool = False, normalize_coords: bool = True,
                        hq_token_only: bool = False) -> Prediction:
        """``predict`` for prompts already checked and batched (``sam_core.pipelines.prompts.prompts_from_arrays``),
        in pixels of set image ``image_index``.

        Args:
            prompts (Prompts): one prompt set (a batch of one) in original-image pixels (or fractions, see
                ``normalize_coords``).
            image_index (int): which of the images given to ``set_images`` (0 after ``set_image``).
            multimask_output (bool): as for :meth:`predict`.
            return_logits (bool): as for :meth:`predict`.
            normalize_coords (bool): as for :meth:`predict`.
            hq_token_only (bool): as for :meth:`predict`.

        Returns:
            masks CxHxW (bool, or float logits), scores C, low-res logits CxSxS, as numpy arrays.
        """
        prompts = to_model_frame(prompts, self.transform, self.original_sizes[image_index], self.device,
                                 normalized=not normalize_coords)
        masks, scores, low_res = self.decode_prompts(prompts, image_index, multimask_output, return_logits,
                                                     hq_token_only)
        return _to_numpy(masks[0]), _to_numpy(scores[0]), _to_numpy(low_res[0])

    @_serialized
    def decode_prompts(self, prompts: Prompts, image_index: int = 0, multimask_output: bool = True,
                       return_logits: bool = False, hq_token_only: bool = False,
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode B prompt sets given in the model's input frame on set image ``image_index``, and bring the
        masks to that image's size.

        The masks come from the low-res logits with small holes and sprinkles cleaned (if asked); the low-res
        logits returned are the decoder's, clamped if the model family's predictor clamps them.

        Args:
            prompts (Prompts): B prompt sets, coordinates in the resized frame (``self.transform``), on the
                model's device.
            image_index (int): as for :meth:`predict_prompts`.
            multimask_output (bool): as for :meth:`predict_prompts`.
            return_logits (bool): as for :meth:`predict_prompts`.
            hq_token_only (bool): as for :meth:`predict_prompts`.

        Returns:
            masks BxCxHxW (bool, or float logits), scores BxC, low-res logits BxCxSxS (torch tensors).
        """
        index, options = image_index, _decode_options(hq_token_only)
        with torch.inference_mode():
            prediction = self.model.decode(self._prepared[index], prompts, multimask_output, **options)
            low_res = prediction.low_res_logits
            threshold = self.mask_threshold
            cleaned = clean_low_res_logits(low_res, threshold, self.max_hole_area, self.max_sprinkle_area)
            sizes = (self.input_sizes[index], self.original_sizes[index])
            if return_logits:
                masks = self.transform.upscale_logits(cleaned, *sizes, backend=self.mask_upscaling)
            else:
                masks = self.transform.upscale_masks(cleaned, *sizes, threshold, backend=self.mask_upscaling)
            masks = torch.from_numpy(masks) if isinstance(masks, np.ndarray) else masks
            limit = self.model.low_res_logit_limit
            if limit is not None:
                low_res = low_res.clamp(-limit, limit)
        return (masks.to(low_res.dtype) if return_logits else masks), prediction.iou_predictions, low_res

    # ------------------------------------------------------------------ helpers

    def _require_image(self) -> None:
        if not self.is_image_set or self.features_by_name is None:
            raise RuntimeError("no image is set: call set_image(image) (or set_images / load_embedding) first")

    def _dtype(self) -> torch.dtype:
        return self.model.dtype


def _decode_options(hq_token_only: bool) -> dict[str, Any]:
    """The model's decode options a call asks for; defaults are left out, so that every family takes them."""
    return {"hq_token_only": True} if hq_token_only else {}


def _check_size(size: Sequence[int], name: str) -> Size:
    values = tuple(int(v) for v in size)
    if len(values) != 2 or min(values) <= 0:
        raise ValueError(f"{name} must be two positive integers (H, W), got {tuple(size)}")
    return values  # type: ignore[return-value]


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    # On CPU this shares memory with the tensor instead of copying the full-resolution masks. NumPy has no
    # bfloat16, so a bfloat16 model's scores and logits come back as float32.
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
