"""Mask decoder: output tokens through the two-way transformer, then hypernetwork dot products with an
upscaled image embedding give the masks, and an MLP on the IoU token scores them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.modeling.common import LayerNorm2d


class MLP(nn.Module):
    """Linear layers with ReLU between them (none after the last)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(d_in, d_out) for d_in, d_out in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class MaskDecoder(nn.Module):
    """Predicts ``num_multimask_outputs`` + 1 masks and their IoU for each prompt set."""

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
        ``image_pe`` is (1, C, H, W).
        """
        masks, iou_pred = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                             dense_prompt_embeddings)
        selected = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, selected], iou_pred[:, selected]

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      sparse_prompt_embeddings: torch.Tensor,
                      dense_prompt_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All mask tokens' logits and IoU predictions."""
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight])
        tokens = torch.cat([output_tokens.expand(batch, -1, -1), sparse_prompt_embeddings], dim=1)

        if dense_prompt_embeddings.shape[0] > 1 and dense_prompt_embeddings.stride(0) == 0:
            # One dense embedding for every prompt (no mask input): the transformer then works on a single
            # copy of the image tokens until they first depend on the prompts, instead of on B copies.
            dense_prompt_embeddings = dense_prompt_embeddings[:1]
        src = image_embeddings + dense_prompt_embeddings
        _, channels, height, width = src.shape
        hs, src = self.transformer(src, image_pe, tokens)
        src = src.expand(batch, -1, -1)
        iou_token_out = hs[:, 0]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens]

        upscaled = self._upscale(src.reshape(batch, height, width, channels))
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        up_height, up_width = upscaled.shape[1:3]
        masks = (hyper_in @ upscaled.reshape(batch, up_height * up_width, -1).transpose(1, 2))
        masks = masks.reshape(batch, -1, up_height, up_width)
        return masks, self.iou_prediction_head(iou_token_out)

    def _upscale(self, x: torch.Tensor) -> torch.Tensor:
        """``output_upscaling`` on channels-last (B, H, W, C) tokens -> (B, 4H, 4W, C/8), channels-last.

        The transformer already yields channels-last tokens, and a 2x2 stride-2 transposed convolution is a
        per-pixel matrix product followed by a pixel shuffle; staying channels-last avoids layout copies and
        the slow transposed-convolution kernel (identical results).
        """
        conv1, norm, act1, conv2, act2 = self.output_upscaling
        x = act1(F.layer_norm(_conv_transpose_2x2(x, conv1), (norm.weight.shape[0],), norm.weight, norm.bias,
                              norm.eps))
        return act2(_conv_transpose_2x2(x, conv2))


def _conv_transpose_2x2(x: torch.Tensor, conv: nn.ConvTranspose2d) -> torch.Tensor:
    """ConvTranspose2d(kernel_size=2, stride=2) on a channels-last (B, H, W, C) tensor."""
    batch, height, width, _ = x.shape
    out_channels = conv.weight.shape[1]
    y = (x @ conv.weight.flatten(1)).view(batch, height, width, out_channels, 2, 2)
    y = y.permute(0, 1, 4, 2, 5, 3).reshape(batch, 2 * height, 2 * width, out_channels)
    return y + conv.bias
