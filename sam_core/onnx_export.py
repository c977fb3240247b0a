"""ONNX export of SAM: the prompt encoder and mask decoder as one graph (Meta's interface), the image encoder
as an optional second graph, and an int8 quantised decoder.

The decoder graph has the inputs, outputs and coordinate conventions of Meta's ``scripts/export_onnx_model.py``,
so clients written for Meta's graph (its notebook, its web demo) work unchanged:

========================  ================  ===========================================================
name                      shape, dtype      meaning
========================  ================  ===========================================================
``image_embeddings``      (1, C, h, w) f32  the image encoder's output (``Predictor.get_image_embedding``)
``point_coords``          (1, N, 2) f32     x, y in the resized frame (``model.transform.apply_coords``)
``point_labels``          (1, N) f32        1 foreground, 0 background, 2 / 3 box top-left / bottom-right
                                            corner, -1 padding
``mask_input``            (1, 1, 4h, 4w)    low-res logits of an earlier prediction (zeros if none)
``has_mask_input``        (1,) f32          1 if ``mask_input`` is used, else 0
``orig_im_size``          (2,) f32          height, width of the original image
``masks``                 (1, 4, H, W) f32  mask logits at the original size (> 0 is the mask); output 0 is
                                            the single-mask output, 1-3 the multimask ones
``iou_predictions``       (1, 4) f32        the predicted IoU of each mask
``low_res_masks``         (1, 4, 4h, 4w)    low-res logits, to feed back as ``mask_input``
========================  ================  ===========================================================

``N`` (the number of points) is a dynamic axis; ``H`` and ``W`` of ``masks`` follow from the values of
``orig_im_size``. A box is two points labelled 2 and 3 after any clicked points; without a box, one padding
point (0, 0) labelled -1 is appended, as ``PromptEncoder`` does (``decoder_inputs`` builds all of this).

The graphs are traced with the plain formulas (``sam_core.fast_paths(False)``): the fast paths' algebra is
for PyTorch on a CPU, while ONNX Runtime fuses the plain attention itself.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths
from sam_core.modeling.sam import Sam

OPSET = 17
"""Meta's exporter's default opset; ONNX Runtime and onnxruntime-web run it."""
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
ENCODER_INPUT = "image"
ENCODER_OUTPUT = "image_embeddings"
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
        sparse = self._embed_points(point_coords, point_labels)
        has_mask = has_mask_input.reshape(-1, 1, 1, 1)
        no_mask = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = has_mask * prompt_encoder.mask_downscaling(mask_input) + (1 - has_mask) * no_mask
        low_res, iou = self.sam.mask_decoder.predict_masks(image_embeddings, prompt_encoder.get_dense_pe(), sparse,
                                                           dense)
        return self._upscale(low_res, orig_im_size), iou, low_res

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(1, N, 2) coordinates and (1, N) float labels -> (1, N, C) sparse prompt tokens."""
        prompt_encoder = self.sam.prompt_encoder
        encoded = prompt_encoder.pe_layer.forward_with_coords(coords + 0.5, prompt_encoder.input_image_size)
        encoded = encoded * (labels != -1).unsqueeze(-1).to(encoded.dtype)  # padding points carry no position
        # One offset row per entry of LABEL_VALUES; a label matching none gets no offset, as in Meta's graph.
        offsets = torch.cat([prompt_encoder.not_a_point_embed.weight]
                            + [embedding.weight for embedding in prompt_encoder.point_embeddings])
        one_hot = (labels.unsqueeze(-1) == self.label_values).to(encoded.dtype)  # (1, N, len(LABEL_VALUES))
        return encoded + one_hot @ offsets

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


@dataclass
class ExportedFiles:
    """The files ``export_onnx`` wrote."""

    decoder: Path
    encoder: Path | None = None
    quantized_decoder: Path | None = None


def export_onnx(model: Sam | str | os.PathLike, output: str | os.PathLike, encoder: str | os.PathLike | None = None,
                quantize: bool = False, opset: int = OPSET) -> ExportedFiles:
    """Write the decoder graph (prompt encoder + mask decoder + upscaling) of a SAM model to ``output``.

    Args:
        model: a ``Sam``, or anything ``sam_core.load_sam`` reads (registry name, checkpoint, Hugging Face id).
        output: the decoder's ``.onnx`` file.
        encoder: if given, the image encoder's ``.onnx`` file (see ``SamOnnxEncoder``).
        quantize: also write the decoder with int8 weights (ONNX Runtime's dynamic quantisation) beside
            ``output``, as ``<stem>.int8.onnx``.
        opset: the ONNX opset of the graphs.
    """
    sam = _as_sam(model)
    output = Path(output)
    files = ExportedFiles(decoder=output)
    _export(SamOnnxDecoder(sam), _decoder_example(sam), output, DECODER_INPUTS, DECODER_OUTPUTS, opset,
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}})
    if encoder is not None:
        files.encoder = Path(encoder)
        side = sam.image_encoder.img_size
        _export(SamOnnxEncoder(sam), (torch.zeros(1, 3, side, side * 3 // 4),), files.encoder, (ENCODER_INPUT,),
                (ENCODER_OUTPUT,), opset, dynamic_axes={ENCODER_INPUT: {2: "height", 3: "width"}})
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        files.quantized_decoder = output.with_suffix(".int8.onnx")
        quantize_dynamic(output, files.quantized_decoder, weight_type=QuantType.QInt8)
    return files


def decoder_inputs(model: Sam, embedding: np.ndarray | torch.Tensor, original_size: tuple[int, int],
                   point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                   box: np.ndarray | None = None, mask_input: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The decoder graph's inputs for prompts in original image pixels, as Meta's notebook builds them.

    Args:
        model: the exported model (for its coordinate transform and mask input size).
        embedding: (1, C, h, w) image embedding.
        original_size: (height, width) of the image.
        point_coords: (N, 2) x, y clicks; point_labels: (N,) 1 foreground / 0 background.
        box: (4,) x0, y0, x1, y1.
        mask_input: (1, S, S) or (1, 1, S, S) low-res logits of an earlier prediction.
    """
    coords = np.zeros((0, 2), np.float32) if point_coords is None else np.asarray(point_coords, np.float32)
    labels = np.zeros(0, np.float32) if point_labels is None else np.asarray(point_labels, np.float32)
    if box is None:
        coords = np.concatenate([coords, np.zeros((1, 2), np.float32)])
        labels = np.concatenate([labels, np.float32([-1])])
    else:
        coords = np.concatenate([coords, np.asarray(box, np.float32).reshape(2, 2)])
        labels = np.concatenate([labels, np.float32([2, 3])])
    coords = model.transform.apply_coords(coords, tuple(original_size)).astype(np.float32)
    side = model.mask_input_size
    if isinstance(embedding, torch.Tensor):
        embedding = embedding.detach().float().cpu().numpy()
    return {
        "image_embeddings": np.ascontiguousarray(embedding, np.float32),
        "point_coords": coords[None],
        "point_labels": labels[None],
        "mask_input": (np.zeros((1, 1, side, side), np.float32) if mask_input is None
                       else np.asarray(mask_input, np.float32).reshape(1, 1, side, side)),
        "has_mask_input": np.float32([0 if mask_input is None else 1]),
        "orig_im_size": np.float32(original_size),
    }


def _as_sam(model: Sam | str | os.PathLike) -> Sam:
    if not isinstance(model, nn.Module):
        from sam_core.checkpoint import load_sam

        model = load_sam(model, device="cpu", dtype=torch.float32)
    if not isinstance(model, Sam):
        # SAM 2's decoder also reads the encoder's high-resolution features, so Meta's six inputs cannot
        # describe it; there is no reference graph for it to be compatible with.
        raise ValueError(f"ONNX export supports SAM (vit_*) models; got a {type(model).__name__} "
                         f"(family {getattr(model, 'family', '?')!r})")
    return model.float().cpu().eval()


def _decoder_example(sam: Sam) -> tuple[torch.Tensor, ...]:
    grid = sam.prompt_encoder.image_embedding_size
    side = sam.mask_input_size
    return (torch.randn(1, sam.prompt_encoder.embed_dim, *grid), torch.tensor([[[10.0, 20.0], [0.0, 0.0]]]),
            torch.tensor([[1.0, -1.0]]), torch.zeros(1, 1, side, side), torch.tensor([1.0]),
            torch.tensor([300.0, 200.0]))


def _export(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path, input_names: tuple[str, ...],
            output_names: tuple[str, ...], opset: int, dynamic_axes: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with fast_paths(False), torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python int it records; the sizes it records are computed in the graph.
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example, str(path), input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
