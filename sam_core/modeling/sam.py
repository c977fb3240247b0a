"""Sam: the image encoder, prompt encoder and mask decoder wired together, with pre- and post-processing."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.config import SamConfig, get_config
from sam_core.modeling.image_encoder import ImageEncoderViT
from sam_core.modeling.mask_decoder import MaskDecoder
from sam_core.modeling.prompt_encoder import PromptEncoder
from sam_core.modeling.transformer import TwoWayTransformer
from sam_core.transforms import low_res_extent

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    """Segment Anything: embed an image once, then decode masks for any number of prompts."""

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(self, image_encoder: ImageEncoderViT, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder,
                 config: SamConfig | None = None) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.config = config
        # Not persistent: the official checkpoints do not store them.
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pixel_mean.dtype

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a (B, 3, H, W) or (3, H, W) 0-255 image and zero-pad it to the square input size."""
        x = (x - self.pixel_mean) / self.pixel_std
        size = self.image_encoder.img_size
        return F.pad(x, (0, size - x.shape[-1], 0, size - x.shape[-2])).to(self.dtype)

    def postprocess_masks(self, masks: torch.Tensor, input_size: tuple[int, ...],
                          original_size: tuple[int, ...]) -> torch.Tensor:
        """Low-res logits -> logits at the original image size (padding removed)."""
        size = self.image_encoder.img_size
        low_res = masks.shape[-1]
        if size % low_res == 0 and masks.shape[-2] == low_res:
            factor = size // low_res
            rows, cols = low_res_extent(low_res, factor, input_size)
            masks = F.interpolate(masks[..., :rows, :cols], (rows * factor, cols * factor), mode="bilinear",
                                  align_corners=False)
        else:
            masks = F.interpolate(masks, (size, size), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)

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
            masks = self.postprocess_masks(low_res, record["image"].shape[-2:], record["original_size"])
            outputs.append({"masks": masks > self.mask_threshold, "iou_predictions": iou,
                            "low_res_logits": low_res})
        return outputs


def build_sam(name_or_config: str | SamConfig = "vit_h") -> Sam:
    """A randomly initialised Sam of the given registry name or config (eval mode)."""
    config = get_config(name_or_config)
    grid = config.embedding_size
    image_encoder = ImageEncoderViT(
        img_size=config.image_size, patch_size=config.patch_size, embed_dim=config.encoder_embed_dim,
        depth=config.encoder_depth, num_heads=config.encoder_num_heads,
        global_attn_indexes=config.encoder_global_attn_indexes, window_size=config.window_size,
        mlp_ratio=config.encoder_mlp_ratio, out_chans=config.prompt_embed_dim,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=config.prompt_embed_dim, image_embedding_size=(grid, grid),
        input_image_size=(config.image_size, config.image_size), mask_in_chans=config.mask_in_chans,
    )
    transformer = TwoWayTransformer(depth=config.decoder_depth, embedding_dim=config.prompt_embed_dim,
                                    num_heads=config.decoder_num_heads, mlp_dim=config.decoder_mlp_dim)
    mask_decoder = MaskDecoder(
        transformer_dim=config.prompt_embed_dim, transformer=transformer,
        num_multimask_outputs=config.num_multimask_outputs, iou_head_depth=config.iou_head_depth,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
    )
    return Sam(image_encoder, prompt_encoder, mask_decoder, config).eval()
