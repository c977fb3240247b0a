"""SAM 2's mask decoder: SAM's, plus an object-score token, high-resolution image features added while
upscaling, an optional sigmoid on the IoU head, and a fallback to the best multimask output when a single
requested mask is unstable."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.layers.activations import activate_in_place
from sam_core.layers.mlp import MLP
from sam_core.models.sam.mask_decoder import DecodedTokens, MaskDecoder
from sam_core.models.sam.transformer import ImageTokens

# Object score logit reported when the model has no object-score head: "present" (sigmoid(10) ~ 1).
OBJECT_PRESENT_LOGIT = 10.0

HighRes = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Sam2ImageTokens(ImageTokens):
    """An image prepared for decoding: SAM's ImageTokens plus the high-resolution features, laid out
    per embedding pixel (see ``Sam2MaskDecoder.block_high_res``)."""

    high_res: HighRes | None = None


@dataclass
class Sam2DecodedTokens(DecodedTokens):
    """Transformer outputs for B prompt sets, with their object score logits and the image's skip features."""

    object_score_logits: torch.Tensor  # (B, 1)
    high_res: HighRes | None  # per-pixel blocks, batch 1 (shared) or B

    def take(self, index: torch.Tensor) -> Sam2DecodedTokens:
        high_res = self.high_res
        if high_res is not None and high_res[0].shape[0] > 1:
            high_res = (high_res[0][index], high_res[1][index])
        return Sam2DecodedTokens(self.mask_tokens[index], self.image_tokens[index], self.iou_pred[index],
                                 self.object_score_logits[index], high_res)


class Sam2MaskDecoder(MaskDecoder):
    """Predicts ``num_multimask_outputs`` + 1 masks, their IoU and an object score for each prompt set.

    Args:
        transformer_dim: Token and image embedding width.
        transformer: The two-way transformer.
        num_multimask_outputs: Masks output for an ambiguous prompt.
        iou_head_depth: Layers of the IoU head.
        iou_head_hidden_dim: Hidden width of the IoU head.
        use_high_res_features: Add the stride-8 and stride-4 image features (through ``conv_s1`` and
            ``conv_s0``) to the two upscaling stages.
        iou_prediction_use_sigmoid: Squash the IoU predictions into (0, 1).
        pred_obj_scores: Predict whether the object is present, from an extra output token.
        pred_obj_scores_mlp: Use a 3-layer MLP rather than a linear layer for the object score.
        use_multimask_token_for_obj_ptr: With multimask output, return the multimask tokens as the
            object tokens (the video model's object pointers), else the single-mask token.
        dynamic_multimask_via_stability: In eval mode, when one mask is asked for and the single-mask
            output's stability score is below the threshold, return the best multimask output instead.
        dynamic_multimask_stability_delta: Logit offset of the stability score.
        dynamic_multimask_stability_thresh: Minimum stability score of a kept single-mask output.
    """

    def __init__(self, transformer_dim: int, transformer: nn.Module, num_multimask_outputs: int = 3,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256, use_high_res_features: bool = False,
                 iou_prediction_use_sigmoid: bool = False, pred_obj_scores: bool = False,
                 pred_obj_scores_mlp: bool = False, use_multimask_token_for_obj_ptr: bool = False,
                 dynamic_multimask_via_stability: bool = False, dynamic_multimask_stability_delta: float = 0.05,
                 dynamic_multimask_stability_thresh: float = 0.98) -> None:
        super().__init__(transformer_dim, transformer, num_multimask_outputs, iou_head_depth, iou_head_hidden_dim)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, transformer_dim)
            self.pred_obj_score_head = (MLP(transformer_dim, transformer_dim, 1, 3) if pred_obj_scores_mlp
                                        else nn.Linear(transformer_dim, 1))
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth,
                                       sigmoid_output=iou_prediction_use_sigmoid)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor, multimask_output: bool,
                high_res_features: list[torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Low-res mask logits (B, M, 4H, 4W), IoU predictions (B, M), object tokens (B, M or 1, C) and
        object score logits (B, 1); M = num_multimask_outputs or 1.

        ``image_embeddings`` (1 or B, C, H, W) is shared by all B prompt sets when its batch is 1, and so
        are ``high_res_features``: [(1 or B, C/8, 4H, 4W), (1 or B, C/4, 2H, 2W)], already through
        ``conv_s0`` and ``conv_s1`` (as ``Sam2.encode_image`` returns them).
        """
        image = ImageTokens.from_maps(image_embeddings + dense_prompt_embeddings, image_pe)
        return self.decode(self.with_high_res(image, high_res_features), sparse_prompt_embeddings, multimask_output)

    def prepare_image(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      no_mask_embedding: torch.Tensor,
                      high_res_features: list[torch.Tensor] | None = None) -> Sam2ImageTokens:
        """The image side of decoding, computed once for many prompts sharing it (see SAM's decoder)."""
        image = super().prepare_image(image_embeddings, image_pe, no_mask_embedding)
        return self.with_high_res(image, high_res_features)

    def with_high_res(self, image: ImageTokens, high_res_features: list[torch.Tensor] | None) -> Sam2ImageTokens:
        """``image`` with the high-resolution features the upscaling adds (see ``block_high_res``)."""
        fields = {field.name: getattr(image, field.name) for field in dataclasses.fields(image)}
        return Sam2ImageTokens(**fields, high_res=self.block_high_res(high_res_features))

    def block_high_res(self, high_res_features: list[torch.Tensor] | None) -> HighRes | None:
        """[(b, C0, 4H, 4W), (b, C1, 2H, 2W)] -> per embedding pixel blocks (b, H, W, 2, 2, 4 * C0) and
        (b, H, W, 2, 2, C1), the layout in which the upscaling computes (see ``_upscaled_masks``)."""
        if not self.use_high_res_features:
            return None
        if high_res_features is None:
            raise ValueError("this decoder adds high-resolution features: pass high_res_features")
        feat_s0, feat_s1 = high_res_features
        batch, c0, height, width = feat_s0.shape[0], feat_s0.shape[1], feat_s0.shape[2] // 4, feat_s0.shape[3] // 4
        # Pixel (4i + 2a + c, 4j + 2b + d) of s0 -> block (i, j), sub-block (a, b), entry (c, d).
        s0 = feat_s0.view(batch, c0, height, 2, 2, width, 2, 2).permute(0, 2, 5, 3, 6, 4, 7, 1)
        s1 = feat_s1.view(batch, -1, height, 2, width, 2).permute(0, 2, 4, 3, 5, 1)
        return s0.reshape(batch, height, width, 2, 2, -1), s1.contiguous()

    def decode(self, image: ImageTokens, sparse_prompt_embeddings: torch.Tensor, multimask_output: bool,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``forward`` on an image from ``prepare_image``."""
        decoded = self.decode_tokens(image, sparse_prompt_embeddings)
        if multimask_output:
            masks, iou_pred = self.masks_from_tokens(decoded, slice(1, None)), decoded.iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self._stable_single_mask(decoded)
        else:
            masks, iou_pred = self.masks_from_tokens(decoded, slice(0, 1)), decoded.iou_pred[:, :1]
        # The single-mask token is the object token unless the multimask ones are asked for and allowed.
        use_multimask_tokens = multimask_output and self.use_multimask_token_for_obj_ptr
        object_tokens = decoded.mask_tokens[:, 1:] if use_multimask_tokens else decoded.mask_tokens[:, :1]
        return masks, iou_pred, object_tokens, decoded.object_score_logits

    def decode_tokens(self, image: ImageTokens, sparse_prompt_embeddings: torch.Tensor) -> Sam2DecodedTokens:
        """Run the transformer, the IoU head and the object score head; masks follow from ``masks_from_tokens``."""
        batch = sparse_prompt_embeddings.shape[0]
        heads = [self.obj_score_token.weight] if self.pred_obj_scores else []
        output_tokens = torch.cat([*heads, self.iou_token.weight, self.mask_tokens.weight])
        tokens = torch.cat([output_tokens.expand(batch, -1, -1), sparse_prompt_embeddings], dim=1)
        hs, src = self.transformer(image, None, tokens, num_outputs=output_tokens.shape[0])
        first = len(heads)  # index of the IoU token
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0])
        else:
            object_score_logits = hs.new_full((batch, 1), OBJECT_PRESENT_LOGIT)
        return Sam2DecodedTokens(
            mask_tokens=hs[:, first + 1 : first + 1 + self.num_mask_tokens],
            image_tokens=src.expand(batch, -1, -1).reshape(batch, *image.grid, -1),
            iou_pred=self.iou_prediction_head(hs[:, first]),
            object_score_logits=object_score_logits,
            high_res=getattr(image, "high_res", None),
        )

    def masks_from_tokens(self, decoded: DecodedTokens, outputs: slice = slice(None)) -> torch.Tensor:
        """Low-res logits (B, M, 4H, 4W) of decoded prompts, for the mask tokens ``outputs`` selects."""
        hyper_in = torch.stack([self.output_hypernetworks_mlps[i](decoded.mask_tokens[:, i])
                                for i in range(self.num_mask_tokens)[outputs]], dim=1)
        return self._upscaled_masks(decoded.image_tokens, hyper_in, getattr(decoded, "high_res", None))

    def _upscaled_masks(self, tokens: torch.Tensor, hyper_in: torch.Tensor,
                        high_res: HighRes | None = None) -> torch.Tensor:
        """``output_upscaling`` of channels-last image tokens (B, H, W, C), dotted with the hypernetwork
        outputs (B, M, C/8): mask logits (B, M, 4H, 4W); the skip features, if any, are added before the
        first normalisation and before the second activation.

        Each 2x2 stride-2 transposed convolution is one matrix product per input pixel giving a 2x2 block of
        output pixels; the blocks stay separate axes, (B, H, W, 2, 2, 2, 2, C/8), and only the final masks are
        interleaved into an image. Same products and sums as the convolutions.
        """
        conv1, norm, act1, conv2, act2 = self.output_upscaling
        batch, height, width, _ = tokens.shape
        x = F.linear(tokens, *_as_linear(conv1)).view(batch, height, width, 2, 2, -1)
        if high_res is not None:
            x = x + high_res[1]
        # A Python int: the ONNX tracer records it as a constant, which layer_norm's shape argument must be.
        channels_1 = int(x.shape[-1])
        x = activate_in_place(act1, F.layer_norm(x, (channels_1,), norm.weight, norm.bias, norm.eps))
        x = F.linear(x, *_as_linear(conv2))  # (B, H, W, 2, 2, 2*2*C2)
        if high_res is not None:
            x = x + high_res[0]
        x = activate_in_place(act2, x)
        num_masks, channels = hyper_in.shape[1:]
        masks = x.view(batch, height * width * 16, channels) @ hyper_in.transpose(1, 2)  # (B, H*W*16, M)
        masks = masks.view(batch, height, width, 2, 2, 2, 2, num_masks)
        # Output pixel (4i + 2*di1 + di2, 4j + 2*dj1 + dj2).
        return masks.permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(batch, num_masks, 4 * height, 4 * width)

    def _stable_single_mask(self, decoded: Sam2DecodedTokens) -> tuple[torch.Tensor, torch.Tensor]:
        """The single-mask output where it is stable, else the multimask output of highest predicted IoU."""
        masks = self.masks_from_tokens(decoded)  # (B, 1 + multimask outputs, h, w)
        rows = torch.arange(masks.shape[0], device=masks.device)
        best = decoded.iou_pred[:, 1:].argmax(dim=-1) + 1
        stable = stability_scores(masks[:, 0], self.dynamic_multimask_stability_delta)
        stable = stable >= self.dynamic_multimask_stability_thresh  # (B,)
        chosen = torch.where(stable, torch.zeros_like(best), best)
        return masks[rows, chosen].unsqueeze(1), decoded.iou_pred[rows, chosen].unsqueeze(1)


def _as_linear(conv: nn.ConvTranspose2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a 2x2 stride-2 ConvTranspose2d as a linear map C_in -> (2, 2, C_out) per pixel."""
    weight = conv.weight.permute(2, 3, 1, 0).reshape(-1, conv.weight.shape[0])  # ((di, dj, o), c)
    return weight, conv.bias.repeat(4)


def stability_scores(mask_logits: torch.Tensor, delta: float) -> torch.Tensor:
    """IoU of the masks thresholded at +delta and at -delta, (...,) for logits (..., H, W); 1 for empty masks."""
    flat = mask_logits.flatten(-2)
    inner = (flat > delta).sum(dim=-1).float()
    outer = (flat > -delta).sum(dim=-1).float()
    return torch.where(outer > 0, inner / outer.clamp(min=1), torch.ones_like(outer))
