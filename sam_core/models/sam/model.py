"""Sam: the image encoder, prompt encoder and mask decoder wired together behind the model interface, its
builder, and the builders of SAM's prompt encoder and mask decoder that the families built on them share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.interface import (
    GeneratorDefaults,
    ImageFeatures,
    PreparedImage,
    Prompts,
)
from sam_core.models.base import NormalizingSegmenter
from sam_core.models.configs import DecoderFields
from sam_core.models.sam.config import SamConfig, get_config
from sam_core.models.sam.image_encoder import ImageEncoderViT
from sam_core.models.sam.mask_decoder import DecodedTokens, MaskDecoder
from sam_core.models.sam.prompt_encoder import PromptEncoder
from sam_core.models.sam.transformer import ImageTokens, TwoWayTransformer
from sam_core.transforms import ImageTransform, ResizeLongestSide

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
EMBEDDING_KEY = "image_embeddings"


@dataclass
class SamPreparedImage(PreparedImage):
    """One image for the SAM decoder: its embedding, the grid's positional encoding, and the decoder's input
    for prompts without a mask input (tokens with the "no mask" embedding added and the first layer's
    image-side projections), which every such prompt on the image shares."""

    dense_pe: torch.Tensor  # (1, C, H, W)
    no_mask_input: ImageTokens


@dataclass
class SamScoredPrompts:
    """Transformer outputs of B prompt sets and which mask tokens the caller asked for."""

    decoded: DecodedTokens
    outputs: slice  # token 0 is the single-mask output, 1: the multimask ones

    @property
    def iou_predictions(self) -> torch.Tensor:
        return self.decoded.iou_pred[:, self.outputs]

    def take(self, index: torch.Tensor) -> SamScoredPrompts:
        return SamScoredPrompts(self.decoded.take(index), self.outputs)


class Sam(NormalizingSegmenter):
    """Segment Anything: embed an image once, then decode masks for any number of prompts."""

    family = "sam"
    embedding_key = EMBEDDING_KEY
    generator_defaults = GeneratorDefaults(pred_iou_thresh=0.88, stability_score_thresh=0.95)
    mask_threshold: float = 0.0
    image_format: str = "RGB"
    parameter_roles = {"image_encoder": ("image_encoder.",), "prompt_encoder": ("prompt_encoder.",),
                       "mask_decoder": ("mask_decoder.",)}

    def __init__(self, image_encoder: nn.Module, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder,
                 config: Any = None, transform: ImageTransform | None = None) -> None:
        """
        Args:
            image_encoder: the backbone and neck, image -> (B, C, H, W) embedding (SAM: ``ImageEncoderViT``;
                MobileSAM, SAM-HQ and EfficientViT-SAM have their own).
            prompt_encoder: points, boxes and mask inputs -> sparse tokens and a dense map.
            mask_decoder: two-way transformer and heads -> low-res mask logits and IoU predictions.
            config: the shapes the modules were built with (the family's builder sets it; checkpoints store it).
            transform: images and prompts into the model's input frame; by default SAM's resize of the long
                side to the encoder's input size.
        """
        super().__init__(PIXEL_MEAN, PIXEL_STD)
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.config = config
        self.transform = ResizeLongestSide(image_encoder.img_size) if transform is None else transform

    @property
    def mask_input_size(self) -> int:
        return self.prompt_encoder.mask_input_size[0]

    @property
    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        return {EMBEDDING_KEY: (self.prompt_encoder.embed_dim, *self.prompt_encoder.image_embedding_size)}

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a (B, 3, H, W) or (3, H, W) 0-255 image and zero-pad it to the square input size."""
        x = (x - self.pixel_mean) / self.pixel_std
        size = self.image_encoder.img_size
        return F.pad(x, (0, size - x.shape[-1], 0, size - x.shape[-2])).to(self.dtype)

    def encode(self, images: torch.Tensor) -> ImageFeatures:
        return {EMBEDDING_KEY: self.image_encoder(images)}

    def prepare_image(self, features: ImageFeatures) -> SamPreparedImage:
        dense_pe = self.prompt_encoder.get_dense_pe()
        _, no_mask = self.prompt_encoder(points=None, boxes=None, masks=None)
        no_mask_input = self.mask_decoder.prepare_image(features[EMBEDDING_KEY], dense_pe, no_mask)
        return SamPreparedImage(features, dense_pe, no_mask_input)

    def score_prompts(self, image: SamPreparedImage, prompts: Prompts, multimask_output: bool) -> SamScoredPrompts:
        points = None if prompts.point_coords is None else (prompts.point_coords, prompts.point_labels)
        sparse, dense = self.prompt_encoder(points=points, boxes=prompts.boxes, masks=prompts.mask_input)
        if prompts.mask_input is None:
            decoder_input = image.no_mask_input
        else:
            decoder_input = ImageTokens.from_maps(image.features[EMBEDDING_KEY] + dense, image.dense_pe)
        decoded = self.mask_decoder.decode_tokens(decoder_input, sparse)
        return SamScoredPrompts(decoded, slice(1, None) if multimask_output else slice(0, 1))

    def draw_masks(self, scored: SamScoredPrompts) -> torch.Tensor:
        return self.mask_decoder.masks_from_tokens(scored.decoded, scored.outputs)

    def draw_mask_corners(self, scored: SamScoredPrompts, extent: tuple[int, int]) -> torch.Tensor:
        return self.mask_decoder.masks_from_tokens(scored.decoded, scored.outputs, extent)

    @torch.no_grad()
    def forward(self, batched_input: list[dict[str, Any]], multimask_output: bool) -> list[dict[str, torch.Tensor]]:
        """Reference-compatible batch API.

        Each input dict holds ``image`` (3xHxW, already resized so the long side is ``img_size``),
        ``original_size`` (H, W) and optionally ``point_coords`` (BxNx2) with ``point_labels`` (BxN),
        ``boxes`` (Bx4) and ``mask_inputs`` (Bx1xSxS), all in the resized frame. Each output dict holds
        ``masks`` (bool, BxMxHxW at the original size), ``iou_predictions`` (BxM) and ``low_res_logits``.
        """
        images = torch.stack([self.preprocess(record["image"]) for record in batched_input])
        embeddings = self.image_encoder(images)
        dense_pe = self.prompt_encoder.get_dense_pe()
        outputs = []
        for record, embedding in zip(batched_input, embeddings):
            points = (record["point_coords"], record["point_labels"]) if "point_coords" in record else None
            sparse, dense = self.prompt_encoder(points=points, boxes=record.get("boxes"),
                                                masks=record.get("mask_inputs"))
            low_res, iou = self.mask_decoder(embedding.unsqueeze(0), dense_pe, sparse, dense, multimask_output)
            masks = self.postprocess_masks(low_res, tuple(record["image"].shape[-2:]), record["original_size"])
            outputs.append({"masks": masks > self.mask_threshold, "iou_predictions": iou,
                            "low_res_logits": low_res})
        return outputs


def build_sam1(name_or_config: str | SamConfig = "vit_h") -> Sam:
    """A SAM 1 model (``sam_core.build_sam`` builds a model of any family).

    Args:
        name_or_config: a registry name of ``SAM_CONFIGS`` ("vit_b"...) or a SamConfig.

    Returns:
        The Sam, randomly initialised, in eval mode.
    """
    config = get_config(name_or_config)
    image_encoder = ImageEncoderViT(
        img_size=config.image_size, patch_size=config.patch_size, embed_dim=config.encoder_embed_dim,
        depth=config.encoder_depth, num_heads=config.encoder_num_heads,
        global_attn_indexes=config.encoder_global_attn_indexes, window_size=config.window_size,
        mlp_ratio=config.encoder_mlp_ratio, out_chans=config.prompt_embed_dim,
    )
    return Sam(image_encoder, build_prompt_encoder(config), build_mask_decoder(config), config).eval()


def build_prompt_encoder(config: DecoderFields, encoder_type: type[PromptEncoder] = PromptEncoder,
                         width: int | None = None, image_size: int | None = None) -> PromptEncoder:
    """SAM's prompt encoder, shared by the families built on SAM's decoder.

    Args:
        config: a config with the decoder fields and ``embedding_size`` (side of the embedding grid).
        encoder_type: ``PromptEncoder`` or a subclass (SAM 2's).
        width: the token width; by default ``config.prompt_embed_dim``.
        image_size: side of the square frame prompts are given in; by default ``config.image_size``.

    Returns:
        The prompt encoder, randomly initialised.
    """
    grid = config.embedding_size  # type: ignore[attr-defined]
    width = config.prompt_embed_dim if width is None else width  # type: ignore[attr-defined]
    image_size = config.image_size if image_size is None else image_size  # type: ignore[attr-defined]
    return encoder_type(embed_dim=width, image_embedding_size=(grid, grid), input_image_size=(image_size, image_size),
                        mask_in_chans=config.mask_in_chans)


def build_mask_decoder(config: DecoderFields, decoder_type: type[MaskDecoder] = MaskDecoder,
                       transformer_type: type[TwoWayTransformer] = TwoWayTransformer, width: int | None = None,
                       **extra: Any) -> MaskDecoder:
    """SAM's mask decoder and its two-way transformer, shared by the families built on SAM's decoder.

    Args:
        config: a config with the decoder fields.
        decoder_type: ``MaskDecoder`` or a subclass (SAM-HQ's, SAM 2's), given ``extra`` as well.
        transformer_type: ``TwoWayTransformer`` or a subclass (SAM 2's).
        width: the token width; by default ``config.prompt_embed_dim``.
        **extra: further arguments of ``decoder_type``.

    Returns:
        The mask decoder, randomly initialised.
    """
    width = config.prompt_embed_dim if width is None else width  # type: ignore[attr-defined]
    transformer = transformer_type(depth=config.decoder_depth, embedding_dim=width, num_heads=config.decoder_num_heads,
                                   mlp_dim=config.decoder_mlp_dim)
    return decoder_type(transformer_dim=width, transformer=transformer,
                        num_multimask_outputs=config.num_multimask_outputs, iou_head_depth=config.iou_head_depth,
                        iou_head_hidden_dim=config.iou_head_hidden_dim, **extra)
