"""ONNX export of SAM and SAM 2: the prompt encoder and mask decoder as one graph with the inputs and outputs of
Meta's ``scripts/export_onnx_model.py`` (``DECODER_INPUTS``, ``DECODER_OUTPUTS``; SAM 2 adds ``HIGH_RES_INPUTS``
and ``object_score_logits``), the image encoder as an optional second graph, and an int8 quantised decoder.

The graphs' inputs and outputs, shapes, dtypes and conventions: docs/onnx.md."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths
from sam_core.io.checkpoints import load_sam
from sam_core.models.sam.model import Sam
from sam_core.models.sam.transformer import ImageTokens
from sam_core.models.sam2.model import HIGH_RES_KEYS, LOW_RES_LOGIT_LIMIT, Sam2

OPSET = 17
"""Meta's exporter's default opset; ONNX Runtime and onnxruntime-web run it."""
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
HIGH_RES_INPUTS = ("high_res_feats_0", "high_res_feats_1")
SAM2_DECODER_INPUTS = (DECODER_INPUTS[0], *HIGH_RES_INPUTS, *DECODER_INPUTS[1:])
SAM2_DECODER_OUTPUTS = (*DECODER_OUTPUTS, "object_score_logits")
ENCODER_INPUT = "image"
ENCODER_OUTPUT = "image_embeddings"
ENCODER_FAMILIES = ("sam", "sam2")
"""Families whose image encoder graph ``export_onnx`` writes (and the tests compare with the model)."""
LABEL_VALUES = (-1, 0, 1, 2, 3)
"""Point labels of the decoder graph: padding, background, foreground, box top-left, box bottom-right."""


class SamOnnxDecoder(nn.Module):
    """Prompt encoder, mask decoder and upscaling to the original size, written without data-dependent control
    flow so that one traced graph serves every prompt.

    Args:
        sam: the model whose prompt encoder and mask decoder are exported.
    """

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.sam = sam
        self.register_buffer("label_values", torch.tensor(LABEL_VALUES, dtype=torch.float32), persistent=False)

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor,
                orig_im_size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        prompt_encoder = self.sam.prompt_encoder
        sparse, dense = _embed_prompts(prompt_encoder, self.label_values, point_coords, point_labels, mask_input,
                                       has_mask_input)
        low_res, iou = self.sam.mask_decoder.predict_masks(image_embeddings, prompt_encoder.get_dense_pe(), sparse,
                                                           dense)
        return self._upscale(low_res, orig_im_size), iou, low_res

    def _upscale(self, low_res: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """Low-res logits -> the padded square, cropped to the resized image, -> the original size: the steps
        of ``ResizeLongestSide.upscale_logits``, with sizes computed in the graph from ``orig_im_size``."""
        side = self.sam.image_encoder.img_size
        masks = F.interpolate(low_res, (side, side), mode="bilinear", align_corners=False)
        original = orig_im_size.to(torch.float64)  # float64: the rounding of ResizeLongestSide's Python floats
        resized = torch.floor(original * (side / original.max()) + 0.5).to(torch.int64).clamp(min=1)
        masks = masks[..., : resized[0], : resized[1]]
        size = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)


class SamOnnxEncoder(nn.Module):
    """The image encoder with SAM's normalisation and padding.

    Input ``image``: (1, 3, h, w) float32 RGB in 0-255, already resized so that its long side is the model's
    input size S (``model.transform.apply_image``; h and w are dynamic). Output ``image_embeddings``.

    Args:
        sam: the model whose image encoder is exported.
    """

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.sam = sam

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        side = self.sam.image_encoder.img_size
        # The padded input's shape as constants: every size the encoder computes from it is then static.
        return self.sam.image_encoder(self.sam.preprocess(image).reshape(1, 3, side, side))


def _embed_prompts(prompt_encoder: nn.Module, label_values: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
                   mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse (1, N, C) tokens of (1, N, 2) coordinates with (1, N) float labels, and the dense (1, C, h, w)
    embedding: the mask input's where ``has_mask_input`` is 1, the learned "no mask" one where it is 0."""
    encoded = prompt_encoder.pe_layer.forward_with_coords(coords + 0.5, prompt_encoder.input_image_size)
    encoded = encoded * (labels != -1).unsqueeze(-1).to(encoded.dtype)  # padding points carry no position
    # One offset row per entry of LABEL_VALUES; a label matching none gets no offset, as in Meta's graph.
    offsets = torch.cat([prompt_encoder.not_a_point_embed.weight]
                        + [embedding.weight for embedding in prompt_encoder.point_embeddings])
    one_hot = (labels.unsqueeze(-1) == label_values).to(encoded.dtype)  # (1, N, len(LABEL_VALUES))
    has_mask = has_mask_input.reshape(-1, 1, 1, 1)
    no_mask = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    dense = has_mask * prompt_encoder.mask_downscaling(mask_input) + (1 - has_mask) * no_mask
    return encoded + one_hot @ offsets, dense


class Sam2OnnxDecoder(nn.Module):
    """SAM 2's prompt encoder and mask decoder with the resize to the original size, for one traced graph.

    SAM 2's decoder also reads the image encoder's two high-resolution feature maps, which are two more
    inputs (``SAM2_DECODER_INPUTS``); everything else follows SAM's graph. Coordinates are in SAM 2's frame
    (the image stretched to the model's square: ``model.transform.apply_coords``), the masks are resized from
    the low-res square to ``orig_im_size`` in one step, ``low_res_masks`` are clamped to +-32 as
    ``SAM2ImagePredictor`` returns them, and ``object_score_logits`` (> 0: the object is present) is added.

    Args:
        model: the ``Sam2`` whose prompt encoder and mask decoder are exported.
    """

    def __init__(self, model: Sam2) -> None:
        super().__init__()
        if not model.sam_mask_decoder.use_high_res_features:
            raise ValueError("ONNX export of SAM 2 needs a decoder with high-resolution features (as every "
                             "released SAM 2 model has)")
        self.model = model
        self.register_buffer("label_values", torch.tensor(LABEL_VALUES, dtype=torch.float32), persistent=False)

    def forward(self, image_embeddings: torch.Tensor, high_res_feats_0: torch.Tensor, high_res_feats_1: torch.Tensor,
                point_coords: torch.Tensor, point_labels: torch.Tensor, mask_input: torch.Tensor,
                has_mask_input: torch.Tensor, orig_im_size: torch.Tensor) -> tuple[torch.Tensor, ...]:
        prompt_encoder, decoder = self.model.sam_prompt_encoder, self.model.sam_mask_decoder
        sparse, dense = _embed_prompts(prompt_encoder, self.label_values, point_coords, point_labels, mask_input,
                                       has_mask_input)
        image = ImageTokens.from_maps(image_embeddings + dense, prompt_encoder.get_dense_pe())
        decoded = decoder.decode_tokens(decoder.with_high_res(image, [high_res_feats_0, high_res_feats_1]), sparse)
        low_res = decoder.masks_from_tokens(decoded)  # every mask token: (1, 4, S/4, S/4)
        size = orig_im_size.to(torch.int64)
        masks = F.interpolate(low_res, size=(size[0], size[1]), mode="bilinear", align_corners=False)
        limit = LOW_RES_LOGIT_LIMIT
        return masks, decoded.iou_pred, low_res.clamp(-limit, limit), decoded.object_score_logits


class Sam2OnnxEncoder(nn.Module):
    """SAM 2's image encoder with its preprocessing: ``image`` (1, 3, S, S) float32 RGB in 0-255, already
    stretched to the model's square (the same resize as ``Sam2.preprocess``, e.g. torchvision's
    ``Resize((S, S))``) -> ``image_embeddings`` and the two high-resolution feature maps.

    Args:
        model: the ``Sam2`` whose image encoder is exported.
    """

    def __init__(self, model: Sam2) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        normalised = (image / 255 - self.model.pixel_mean) / self.model.pixel_std
        embedding, (high_res_0, high_res_1) = self.model.encode_image(normalised)
        return embedding, high_res_0, high_res_1


@dataclass
class ExportedFiles:
    """The files ``export_onnx`` wrote."""

    decoder: Path
    encoder: Path | None = None
    quantized_decoder: Path | None = None


def export_onnx(model: Sam | Sam2 | str | os.PathLike, output: str | os.PathLike,
                encoder: str | os.PathLike | None = None, quantize: bool = False, opset: int = OPSET) -> ExportedFiles:
    """Write the decoder graph (prompt encoder + mask decoder + upscaling) of a SAM or SAM 2 model to ``output``,
    with the inputs and outputs of Meta's exporter (docs/onnx.md).

    The model is exported in float32 on the CPU, in eval mode, traced with the plain formulas. Decoder inputs:
    ``image_embeddings`` (1, C, h, w), [SAM 2: ``high_res_feats_0`` (1, C/8, 4h, 4w), ``high_res_feats_1``
    (1, C/4, 2h, 2w)], ``point_coords`` (1, N, 2), ``point_labels`` (1, N), ``mask_input`` (1, 1, 4h, 4w),
    ``has_mask_input`` (1,), ``orig_im_size`` (2,), all float32, N dynamic; outputs ``masks`` (1, 4, H, W),
    ``iou_predictions`` (1, 4), ``low_res_masks`` (1, 4, 4h, 4w) [SAM 2: ``object_score_logits`` (1, 1)], float32.

    Args:
        model (Sam, Sam2, str or PathLike): A ``Sam`` (SAM, MobileSAM, EfficientViT-SAM) or ``Sam2`` model, or
            anything ``sam_core.load_sam`` reads (registry name, checkpoint, Hugging Face folder or id). A model
            passed in is converted to float32 on the CPU in eval mode, in place.
        output (str or PathLike): The decoder's ``.onnx`` file (its folder is created if needed).
        encoder (str, PathLike or None): If given, the image encoder's ``.onnx`` file (SAM and SAM 2 only; see
            ``SamOnnxEncoder`` / ``Sam2OnnxEncoder``).
        quantize (bool): Also write the decoder with int8 weights (ONNX Runtime's dynamic quantisation; needs
            ``onnxruntime``) beside ``output``, as ``<stem>.int8.onnx``.
        opset (int): The ONNX opset of the graphs (default 17, Meta's).

    Returns:
        (ExportedFiles): The paths written: ``decoder``, and ``encoder`` / ``quantized_decoder`` (None when not
            asked for).

    Raises:
        ValueError: If the model is not a SAM, MobileSAM, EfficientViT-SAM or SAM 2 model (SAM-HQ is refused),
            a SAM 2 decoder has no high-resolution features, or an encoder graph is asked of a family other
            than SAM and SAM 2 (after the decoder graph was written).
        CheckpointError: If ``model`` names a checkpoint that cannot be loaded.
    """
    model = _as_model(model)
    output = Path(output)
    files = ExportedFiles(decoder=output)
    points = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    if isinstance(model, Sam2):
        _export(Sam2OnnxDecoder(model), _decoder_example(model), output, SAM2_DECODER_INPUTS, SAM2_DECODER_OUTPUTS,
                opset, dynamic_axes=points)
    else:
        _export(SamOnnxDecoder(model), _decoder_example(model), output, DECODER_INPUTS, DECODER_OUTPUTS, opset,
                dynamic_axes=points)
    if encoder is not None:
        if model.family not in ENCODER_FAMILIES:
            raise ValueError(f"the encoder graph is exported for {', '.join(ENCODER_FAMILIES)} models; a "
                             f"{model.family} model's decoder graph was written to {output}")
        files.encoder = Path(encoder)
        side = model.image_size
        if isinstance(model, Sam2):
            _export(Sam2OnnxEncoder(model), (torch.zeros(1, 3, side, side),), files.encoder, (ENCODER_INPUT,),
                    (ENCODER_OUTPUT, *HIGH_RES_INPUTS), opset, dynamic_axes={})
        else:
            _export(SamOnnxEncoder(model), (torch.zeros(1, 3, side, side * 3 // 4),), files.encoder, (ENCODER_INPUT,),
                    (ENCODER_OUTPUT,), opset, dynamic_axes={ENCODER_INPUT: {2: "height", 3: "width"}})
    if quantize:
        # Imported here: the onnx extra: only --quantize needs it.
        from onnxruntime.quantization import QuantType, quantize_dynamic

        files.quantized_decoder = output.with_suffix(".int8.onnx")
        quantize_dynamic(output, files.quantized_decoder, weight_type=QuantType.QInt8)
    return files


def decoder_inputs(model: Sam | Sam2, embedding: np.ndarray | torch.Tensor | Mapping[str, Any],
                   original_size: tuple[int, int], point_coords: np.ndarray | None = None,
                   point_labels: np.ndarray | None = None, box: np.ndarray | None = None,
                   mask_input: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The decoder graph's inputs for prompts in original image pixels, as Meta's notebook builds them.

    Args:
        model: the exported model (for its coordinate transform and mask input size).
        embedding: (1, C, h, w) image embedding; for SAM 2, the image's features by name (the encoder
            graph's three outputs, or ``Predictor.features_by_name``).
        original_size: (height, width) of the image.
        point_coords: (N, 2) x, y clicks; point_labels: (N,) 1 foreground / 0 background.
        box: (4,) x0, y0, x1, y1.
        mask_input: (1, S, S) or (1, 1, S, S) low-res logits of an earlier prediction.
    """
    coords = np.zeros((0, 2), np.float32) if point_coords is None else np.asarray(point_coords, np.float32)
    labels = np.zeros(0, np.float32) if point_labels is None else np.asarray(point_labels, np.float32)
    padding = (np.zeros((1, 2), np.float32), np.float32([-1]))
    if isinstance(model, Sam2):
        # SAM 2's order: box corners, clicks, then always a padding point (its prompt encoder adds one
        # whenever no box goes through the box path, and SAM 2 sends boxes as points).
        corners = (np.zeros((0, 2), np.float32), np.zeros(0, np.float32)) if box is None else \
            (np.asarray(box, np.float32).reshape(2, 2), np.float32([2, 3]))
        coords = np.concatenate([corners[0], coords, padding[0]])
        labels = np.concatenate([corners[1], labels, padding[1]])
    elif box is None:
        coords = np.concatenate([coords, padding[0]])
        labels = np.concatenate([labels, padding[1]])
    else:
        coords = np.concatenate([coords, np.asarray(box, np.float32).reshape(2, 2)])
        labels = np.concatenate([labels, np.float32([2, 3])])
    coords = model.transform.apply_coords(coords, tuple(original_size)).astype(np.float32)
    side = model.mask_input_size
    if isinstance(model, Sam2):
        names = dict(zip((model.embedding_key, *HIGH_RES_KEYS), (ENCODER_OUTPUT, *HIGH_RES_INPUTS)))
        features = {names.get(name, name): _as_array(value) for name, value in dict(embedding).items()}
    else:
        features = {ENCODER_OUTPUT: _as_array(embedding)}
    return {
        **features,
        "point_coords": coords[None],
        "point_labels": labels[None],
        "mask_input": (np.zeros((1, 1, side, side), np.float32) if mask_input is None
                       else np.asarray(mask_input, np.float32).reshape(1, 1, side, side)),
        "has_mask_input": np.float32([0 if mask_input is None else 1]),
        "orig_im_size": np.float32(original_size),
    }


def _as_array(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    return np.ascontiguousarray(values, np.float32)


def _as_model(model: Sam | Sam2 | str | os.PathLike) -> Sam | Sam2:
    if not isinstance(model, nn.Module):
        model = load_sam(model, device="cpu", dtype=torch.float32)
    family = getattr(model, "family", "?")
    if not isinstance(model, (Sam, Sam2)) or family == "sam_hq":
        # SAM-HQ's decoder also reads an early encoder feature, which Meta's inputs cannot carry either.
        raise ValueError(f"ONNX export supports SAM (vit_*), MobileSAM, EdgeSAM, EfficientViT-SAM (decoder) and "
                         f"SAM 2 models; got a {type(model).__name__} (family {family!r})")
    return model.float().cpu().eval()


def _decoder_example(model: Sam | Sam2) -> tuple[torch.Tensor, ...]:
    features = [torch.randn(1, *shape) for shape in model.feature_shapes.values()]  # embedding first
    side = model.mask_input_size
    return (*features, torch.tensor([[[10.0, 20.0], [0.0, 0.0]]]), torch.tensor([[1.0, -1.0]]),
            torch.zeros(1, 1, side, side), torch.tensor([1.0]), torch.tensor([300.0, 200.0]))


def _export(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path, input_names: tuple[str, ...],
            output_names: tuple[str, ...], opset: int, dynamic_axes: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with fast_paths(False), torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python int it records; the sizes it records are computed in the graph.
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example, str(path), input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
