"""Mask decoder: output tokens through the two-way transformer, then hypernetwork dot products with an
upscaled image embedding give the masks, and an MLP on the IoU token scores them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths_enabled
from sam_core.layers.activations import activate_in_place
from sam_core.layers.mlp import MLP
from sam_core.layers.norms import LayerNorm2d
from sam_core.models.sam.transformer import ImageTokens


@dataclass
class DecodedTokens:
    """Transformer outputs for B prompt sets: enough to score them now and draw their masks later."""

    mask_tokens: torch.Tensor  # (B, num_mask_tokens, C)
    image_tokens: torch.Tensor  # (B, H, W, C), channels-last
    iou_pred: torch.Tensor  # (B, num_mask_tokens)

    def take(self, index: torch.Tensor) -> DecodedTokens:
        """The prompt sets selected by ``index`` (any index of the batch axis)."""
        return DecodedTokens(self.mask_tokens[index], self.image_tokens[index], self.iou_pred[index])


class MaskDecoder(nn.Module):
    """Predicts ``num_multimask_outputs`` + 1 masks and their IoU for each prompt set.

    Args:
        transformer_dim: width of the transformer's tokens and of the image embedding.
        transformer: the two-way transformer run on the output and prompt tokens and the image.
        num_multimask_outputs: masks predicted for an ambiguous prompt; one more token gives the single mask.
        iou_head_depth: linear layers of the IoU prediction MLP.
        iou_head_hidden_dim: hidden width of the IoU prediction MLP.
    """

    def __init__(self, transformer_dim: int, transformer: nn.Module, num_multimask_outputs: int = 3,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1  # token 0 is the single-mask output
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Return low-res mask logits (B, M, 4H, 4W) and IoU predictions (B, M), M = 3 or 1.

        ``image_embeddings`` is (1, C, H, W), shared by all B prompt sets, or (B, C, H, W).
        ``image_pe`` is (1, C, H, W); ``dense_prompt_embeddings`` (1 or B, C, H, W) is added to the image.
        Many prompts without a mask input on one image are decoded faster through ``prepare_image``.
        """
        image = ImageTokens.from_maps(image_embeddings + dense_prompt_embeddings, image_pe)
        return self.decode(image, sparse_prompt_embeddings, multimask_output)

    def decode(self, image: ImageTokens, sparse_prompt_embeddings: torch.Tensor,
               multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` on an image input from ``prepare_image``: masks and IoU of the selected outputs."""
        decoded = self.decode_tokens(image, sparse_prompt_embeddings)
        outputs = slice(1, None) if multimask_output else slice(0, 1)
        return self.masks_from_tokens(decoded, outputs), decoded.iou_pred[:, outputs]

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      sparse_prompt_embeddings: torch.Tensor,
                      dense_prompt_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All mask tokens' logits and IoU predictions (arguments as ``forward``)."""
        image = ImageTokens.from_maps(image_embeddings + dense_prompt_embeddings, image_pe)
        decoded = self.decode_tokens(image, sparse_prompt_embeddings)
        return self.masks_from_tokens(decoded), decoded.iou_pred

    def prepare_image(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      no_mask_embedding: torch.Tensor) -> ImageTokens:
        """One image input shared by any number of prompts without a mask input, for ``decode`` or
        ``decode_tokens``: the same results as ``forward`` with that dense embedding, computed once per image.

        Args:
            image_embeddings: (1, C, H, W), the image's embedding.
            image_pe: (1, C, H, W), ``PromptEncoder.get_dense_pe()``.
            no_mask_embedding: the prompt encoder's dense embedding without a mask input, (1, C, H, W). It is
                the same map for every prompt, so of a batch of it (B, C, H, W) the first is used.

        The transformer then works on a single copy of the image tokens until they first depend on the
        prompts, and the first layer's image-side projections are computed here once (fast path).
        """
        if image_embeddings.shape[0] != 1:
            raise ValueError(f"prepare_image takes one image embedding, got {image_embeddings.shape[0]}")
        image = ImageTokens.from_maps(image_embeddings + no_mask_embedding[:1], image_pe)
        return self.transformer.project_first_layer(image)

    def output_token_weights(self) -> torch.Tensor:
        """The learned output tokens the prompts' tokens are appended to: the IoU token, then the mask tokens."""
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight])

    def decode_tokens(self, image: ImageTokens, sparse_prompt_embeddings: torch.Tensor) -> DecodedTokens:
        """Run the transformer and the IoU head; masks follow from ``masks_from_tokens``.

        Split in two so that callers filtering on predicted IoU (the automatic mask generator) upscale only
        the prompts they keep: the IoU depends on the transformer alone.
        """
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = self.output_token_weights()
        tokens = torch.cat([output_tokens.expand(batch, -1, -1), sparse_prompt_embeddings], dim=1)
        # Output tokens first: the transformer returns those alone (the fast path skips the rest's final step).
        output_tokens, image_tokens = self.transformer(image, None, tokens, num_outputs=output_tokens.shape[0])
        return DecodedTokens(
            mask_tokens=output_tokens[:, 1:],
            image_tokens=image_tokens.expand(batch, -1, -1).reshape(batch, *image.grid, -1),
            iou_pred=self.iou_prediction_head(output_tokens[:, 0]),
        )

    def masks_from_tokens(self, decoded: DecodedTokens, outputs: slice = slice(None),
                          extent: tuple[int, int] | None = None) -> torch.Tensor:
        """Low-res logits (B, M, 4H, 4W) of decoded prompts, for the mask tokens ``outputs`` selects.

        With ``extent`` (rows, cols), only the image tokens above the leading ``rows`` x ``cols`` logits are
        upscaled (each logit depends on the one token it lies in): (B, M, 4h, 4w) with 4h >= rows, 4w >= cols.
        """
        hyper_in = torch.stack([self.output_hypernetworks_mlps[i](decoded.mask_tokens[:, i])
                                for i in range(self.num_mask_tokens)[outputs]], dim=1)
        tokens = decoded.image_tokens
        if extent is not None:
            tokens = tokens[:, : -(-extent[0] // 4), : -(-extent[1] // 4)]
        if fast_paths_enabled():
            return self._upscaled_masks_fast(tokens, hyper_in)
        return self._upscaled_masks(tokens, hyper_in)

    def _upscaled_masks(self, tokens: torch.Tensor, hyper_in: torch.Tensor) -> torch.Tensor:
        """``output_upscaling`` of channels-last image tokens (B, H, W, C), dotted with the hypernetwork
        outputs (B, M, C/8): mask logits (B, M, 4H, 4W)."""
        image = tokens.permute(0, 3, 1, 2)  # (B, C, H, W)
        upscaled = self.output_upscaling(image)  # (B, C/8, 4H, 4W)
        batch, channels, height, width = upscaled.shape
        masks = hyper_in @ upscaled.reshape(batch, channels, height * width)  # (B, M, 4H * 4W)
        return masks.view(batch, -1, height, width)

    def _upscaled_masks_fast(self, tokens: torch.Tensor, hyper_in: torch.Tensor) -> torch.Tensor:
        """Fast path of ``_upscaled_masks``.

        A 2x2 stride-2 transposed convolution is one matrix product per input pixel, each producing a 2x2
        block of output pixels. Keeping those blocks as separate axes, (B, H, W, 2, 2, 2, 2, C/8), instead
        of interleaving them into an image after each layer avoids two large layout copies; only the final
        M-channel masks are interleaved. Same products and sums as the convolutions.
        """
        conv1, norm, act1, conv2, act2 = self.output_upscaling
        batch, height, width, _ = tokens.shape
        x = F.linear(tokens, *_as_linear(conv1))  # (B, H, W, 2*2*C1)
        x = x.view(batch, height, width, 2, 2, norm.weight.shape[0])
        x = activate_in_place(act1, F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps))
        x = activate_in_place(act2, F.linear(x, *_as_linear(conv2)))  # (B, H, W, 2, 2, 2*2*C2)
        num_masks, channels = hyper_in.shape[1:]
        masks = x.view(batch, height * width * 16, channels) @ hyper_in.transpose(1, 2)  # (B, H*W*16, M)
        masks = masks.view(batch, height, width, 2, 2, 2, 2, num_masks)  # b, i, j, di1, dj1, di2, dj2, m
        # Output pixel (4i + 2*di1 + di2, 4j + 2*dj1 + dj2).
        return masks.permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(batch, num_masks, 4 * height, 4 * width)


def _as_linear(conv: nn.ConvTranspose2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a 2x2 stride-2 ConvTranspose2d as a linear map C_in -> (2, 2, C_out) per pixel."""
    weight = conv.weight.permute(2, 3, 1, 0).reshape(-1, conv.weight.shape[0])  # ((di, dj, o), c)
    return weight, conv.bias.repeat(4)

