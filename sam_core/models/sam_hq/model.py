"""SamHQ: SAM or MobileSAM with SAM-HQ's mask decoder behind the model interface, and its builder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sam_core.interface import ImageFeatures, Prompts
from sam_core.models.mobile_sam.model import build_mobile_sam
from sam_core.models.sam.mask_decoder import DecodedTokens
from sam_core.models.sam.model import (
    EMBEDDING_KEY,
    Sam,
    SamPreparedImage,
    build_mask_decoder,
    build_prompt_encoder,
    build_sam1,
)
from sam_core.models.sam_hq.config import SamHQConfig, get_sam_hq_config
from sam_core.models.sam_hq.mask_decoder import MaskDecoderHQ

EARLY_FEATURES_KEY = "early_features"


@dataclass
class SamHQPreparedImage(SamPreparedImage):
    """SAM's prepared image plus the HQ features, which depend on the image alone."""

    hq_features: torch.Tensor  # (1, C/8, 4H, 4W)


@dataclass
class SamHQScoredPrompts:
    """Transformer outputs of B prompt sets, and which of SAM's mask tokens each one's mask adds to the HQ
    token's: token 0 for a single mask; with ``multimask_output`` the one of tokens 1.. with the highest
    predicted IoU, whose IoU is then the prompt set's score."""

    decoded: DecodedTokens
    sam_tokens: torch.Tensor  # (B,) long
    hq_features: torch.Tensor
    hq_token_only: bool

    @property
    def iou_predictions(self) -> torch.Tensor:
        return self.decoded.iou_pred.gather(1, self.sam_tokens[:, None])

    def take(self, index: torch.Tensor) -> SamHQScoredPrompts:
        return SamHQScoredPrompts(self.decoded.take(index), self.sam_tokens[index], self.hq_features,
                                  self.hq_token_only)


class SamHQ(Sam):
    """SAM-HQ: one mask per prompt set, the HQ token's mask added to SAM's best mask (or alone, with
    ``hq_token_only``), as segment-anything-hq's predictor returns it."""

    family = "sam_hq"
    decode_options = frozenset({"hq_token_only"})

    def __init__(self, image_encoder: torch.nn.Module, prompt_encoder: torch.nn.Module, mask_decoder: MaskDecoderHQ,
                 config: SamHQConfig) -> None:
        """
        Args:
            image_encoder: ViT or TinyViT, with ``forward_with_intermediate`` giving the early feature.
            prompt_encoder: SAM's prompt encoder.
            mask_decoder: the HQ mask decoder.
            config: the shapes the modules were built with.
        """
        super().__init__(image_encoder, prompt_encoder, mask_decoder, config)  # type: ignore[arg-type]
        self.early_layer = config.early_layer

    @property
    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        grid = self.config.early_grid
        return {**super().feature_shapes, EARLY_FEATURES_KEY: (grid, grid, self.config.vit_dim)}

    def encode(self, images: torch.Tensor) -> ImageFeatures:
        embedding, early = self.image_encoder.forward_with_intermediate(images, self.early_layer)
        return {EMBEDDING_KEY: embedding, EARLY_FEATURES_KEY: early}

    def prepare_image(self, features: ImageFeatures) -> SamHQPreparedImage:
        prepared = super().prepare_image(features)
        hq_features = self.mask_decoder.hq_features(features[EMBEDDING_KEY], features[EARLY_FEATURES_KEY])
        return SamHQPreparedImage(prepared.features, prepared.dense_pe, prepared.no_mask_input, hq_features)

    def score_prompts(self, image: SamHQPreparedImage, prompts: Prompts, multimask_output: bool,
                      hq_token_only: bool = False) -> SamHQScoredPrompts:
        decoded = super().score_prompts(image, prompts, multimask_output).decoded
        if multimask_output:
            sam_tokens = decoded.iou_pred[:, 1:].argmax(dim=1) + 1
        else:
            sam_tokens = torch.zeros(decoded.iou_pred.shape[0], dtype=torch.long, device=decoded.iou_pred.device)
        return SamHQScoredPrompts(decoded, sam_tokens, image.hq_features, hq_token_only)

    def draw_masks(self, scored: SamHQScoredPrompts) -> torch.Tensor:
        return self.mask_decoder.hq_masks(scored.decoded, scored.sam_tokens, scored.hq_features, scored.hq_token_only)

    def draw_mask_corners(self, scored: SamHQScoredPrompts, extent: tuple[int, int]) -> torch.Tensor:
        # The HQ path's 3x3 convolutions mix neighbouring pixels: draw whole masks.
        return self.draw_masks(scored)

    @torch.no_grad()
    def forward(self, batched_input: list[dict[str, Any]], multimask_output: bool,
                hq_token_only: bool = False) -> list[dict[str, torch.Tensor]]:
        """Reference-compatible batch API (``Sam.forward``'s records), one mask per prompt set."""
        images = torch.stack([self.preprocess(record["image"]) for record in batched_input])
        features = self.encode(images)
        outputs = []
        for index, record in enumerate(batched_input):
            prepared = self.prepare_image({name: f[index:index + 1] for name, f in features.items()})
            points = record.get("point_coords")
            prompts = Prompts(points, record.get("point_labels") if points is not None else None,
                              record.get("boxes"), record.get("mask_inputs"))
            prediction = self.decode(prepared, prompts, multimask_output, hq_token_only=hq_token_only)
            masks = self.postprocess_masks(prediction.low_res_logits, tuple(record["image"].shape[-2:]),
                                           record["original_size"])
            outputs.append({"masks": masks > self.mask_threshold, "iou_predictions": prediction.iou_predictions,
                            "low_res_logits": prediction.low_res_logits})
        return outputs


def build_sam_hq(name_or_config: str | SamHQConfig = "sam_hq_vit_l") -> SamHQ:
    """A randomly initialised SamHQ of a registry name or config (eval mode)."""
    config = get_sam_hq_config(name_or_config)
    base = config.base
    image_encoder = (build_mobile_sam(base) if config.uses_tiny_vit else build_sam1(base)).image_encoder
    mask_decoder = build_mask_decoder(base, MaskDecoderHQ, vit_dim=config.vit_dim)
    return SamHQ(image_encoder, build_prompt_encoder(base), mask_decoder, config).eval()
