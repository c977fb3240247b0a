"""SAM-HQ's mask decoder: SAM's, plus a high-quality output token whose mask is drawn from the decoder's
upscaled features fused with an early feature of the image encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths_enabled
from sam_core.layers.mlp import MLP
from sam_core.layers.norms import LayerNorm2d
from sam_core.models.sam.mask_decoder import DecodedTokens, MaskDecoder


def _upscaling(in_chans: int, mid_chans: int, out_chans: int) -> nn.Sequential:
    """Two 2x2 stride-2 transposed convolutions, with a LayerNorm2d and a GELU between them (x4)."""
    return nn.Sequential(nn.ConvTranspose2d(in_chans, mid_chans, kernel_size=2, stride=2), LayerNorm2d(mid_chans),
                         nn.GELU(), nn.ConvTranspose2d(mid_chans, out_chans, kernel_size=2, stride=2))


class MaskDecoderHQ(MaskDecoder):
    """SAM's mask decoder with SAM-HQ's HQ output token (appended after the mask tokens) and fusion layers.

    The HQ mask is the HQ token's hypernetwork output dotted with
    ``embedding_maskfeature(upscaled decoder features) + hq_features``, where the image-only
    ``hq_features = embedding_encoder(image embedding) + compress_vit_feat(early encoder feature)``
    (``hq_features``, once per image).

    Args:
        transformer_dim, transformer, num_multimask_outputs, iou_head_depth, iou_head_hidden_dim: as
            :class:`MaskDecoder`.
        vit_dim: channels of the early encoder feature.
    """

    def __init__(self, transformer_dim: int, transformer: nn.Module, num_multimask_outputs: int = 3,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256, vit_dim: int = 1024) -> None:
        super().__init__(transformer_dim, transformer, num_multimask_outputs, iou_head_depth, iou_head_hidden_dim)
        self.hf_token = nn.Embedding(1, transformer_dim)
        self.hf_mlp = MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
        self.compress_vit_feat = _upscaling(vit_dim, transformer_dim, transformer_dim // 8)
        self.embedding_encoder = _upscaling(transformer_dim, transformer_dim // 4, transformer_dim // 8)
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(transformer_dim // 8, transformer_dim // 4, 3, 1, 1), LayerNorm2d(transformer_dim // 4),
            nn.GELU(), nn.Conv2d(transformer_dim // 4, transformer_dim // 8, 3, 1, 1))

    def output_token_weights(self) -> torch.Tensor:
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight, self.hf_token.weight])

    def hq_features(self, image_embeddings: torch.Tensor, early_features: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) embeddings and (B, h, w, C_vit) early features -> (B, C/8, 4H, 4W)."""
        return self.embedding_encoder(image_embeddings) + self.compress_vit_feat(early_features.permute(0, 3, 1, 2))

    def hq_masks(self, decoded: DecodedTokens, sam_tokens: torch.Tensor, hq_features: torch.Tensor,
                 hq_token_only: bool) -> torch.Tensor:
        """One low-res mask per prompt set, (B, 1, 4H, 4W): the HQ token's mask, plus (unless
        ``hq_token_only``) the mask of SAM's token ``sam_tokens[b]`` for each prompt set b.

        ``decoded.mask_tokens`` holds SAM's mask tokens then the HQ token; ``hq_features`` is (1, C/8, 4H, 4W).
        """
        upscaled = self.output_upscaling(decoded.image_tokens.permute(0, 3, 1, 2))  # (B, C/8, 4H, 4W)
        batch, channels, height, width = upscaled.shape
        hq_hyper = self.hf_mlp(decoded.mask_tokens[:, -1])[:, None]  # (B, 1, C/8)
        if fast_paths_enabled():
            masks = self._hq_token_masks_fast(upscaled, hq_hyper, hq_features)
        else:
            hq_map = self.embedding_maskfeature(upscaled) + hq_features
            masks = hq_hyper @ hq_map.reshape(batch, channels, height * width)
        if not hq_token_only:
            hyper = torch.stack([mlp(decoded.mask_tokens[:, i])
                                 for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)  # (B, M, C/8)
            chosen = hyper[torch.arange(batch, device=hyper.device), sam_tokens][:, None]
            masks = chosen @ upscaled.reshape(batch, channels, height * width) + masks
        return masks.view(batch, 1, height, width)

    def _hq_token_masks_fast(self, upscaled: torch.Tensor, hq_hyper: torch.Tensor,
                             hq_features: torch.Tensor) -> torch.Tensor:
        """Fast path of the HQ token's masks, (B, 1, 4H * 4W).

        The dot product of the hypernetwork output with the last 3x3 convolution's C/8 output channels is
        itself a convolution with one output channel, whose weights are the hypernetwork-weighted sum of the
        convolution's: the fused C/8-channel map is never computed. The same sums in another order.
        """
        conv1, norm, act, conv2 = self.embedding_maskfeature
        hidden = act(norm(conv1(upscaled)))  # (B, C/4, 4H, 4W)
        batch, _, height, width = hidden.shape
        hyper = hq_hyper[:, 0]  # (B, C/8)
        weight = torch.einsum("bo,oikl->bikl", hyper, conv2.weight)  # (B, C/4, 3, 3): one filter per prompt set
        # One convolution per prompt set: on CPU a loop beats a grouped convolution of the batch.
        masks = torch.cat([F.conv2d(hidden[index:index + 1], weight[index:index + 1], padding=conv2.padding)
                           for index in range(batch)]).view(batch, 1, height * width)
        image_term = hq_hyper @ hq_features.reshape(hq_features.shape[0], hq_features.shape[1], height * width)
        return masks + (hyper @ conv2.bias)[:, None, None] + image_term
