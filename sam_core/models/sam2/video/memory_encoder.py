"""Memory encoder: a frame's image features fused with its (downsampled) mask into a compact memory.

Module and parameter names are Meta's (``memory_encoder.mask_downsampler.encoder.N``, ``fuser.layers.N``...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.layers.norms import LayerNorm2d
from sam_core.models.sam2.position_encoding import PositionEmbeddingSine


class MaskDownSampler(nn.Module):
    """Strided convolutions (each followed by LayerNorm2d and GELU) taking a (B, 1, S, S) mask down by
    ``total_stride``, multiplying the channels by ``stride**2`` at each step, then a 1x1 projection.

    Args:
        embed_dim: Output channels.
        kernel_size: Kernel of the strided convolutions.
        stride: Stride of each of them.
        padding: Their padding.
        total_stride: Overall downsampling (a power of ``stride``).
        mask_size: Side the masks are first resized to (antialiased bilinear) when theirs differs: SAM 3's
            1008-pixel masks go onto 16 x 72 = 1152 pixels. None: as they come (SAM 2's 1024 = 16 x 64).
    """

    def __init__(self, embed_dim: int, kernel_size: int = 3, stride: int = 2, padding: int = 1,
                 total_stride: int = 16, mask_size: int | None = None) -> None:
        super().__init__()
        self.mask_size = mask_size
        layers: list[nn.Module] = []
        channels = 1
        while total_stride > 1:
            if total_stride % stride:
                raise ValueError(f"total_stride must be a power of stride {stride}")
            total_stride //= stride
            layers += [nn.Conv2d(channels, channels * stride**2, kernel_size, stride, padding),
                       LayerNorm2d(channels * stride**2), nn.GELU()]
            channels *= stride**2
        layers.append(nn.Conv2d(channels, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        size = self.mask_size
        if size is not None and tuple(masks.shape[-2:]) != (size, size):
            masks = F.interpolate(masks.float(), (size, size), mode="bilinear", align_corners=False, antialias=True)
        return self.encoder(masks)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 convolution, LayerNorm, pointwise MLP (4x, GELU), layer scale, residual.

    Args:
        dim: Channels.
        kernel_size: Depthwise kernel.
    """

    def __init__(self, dim: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)  # channels last for the pointwise layers
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """A stack of ConvNeXt blocks over the sum of image features and mask embedding.

    Args:
        dim: Channels.
        num_layers: Blocks.
    """

    def __init__(self, dim: int, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ConvNeXtBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """(image features (B, d_model, H, W), mask probabilities (B, 1, 16H, 16W)) -> memory (B, mem_dim, H, W)
    and its sine position encoding.

    Args:
        d_model: Channels of the image features.
        mem_dim: Channels of the memory; a 1x1 projection reduces to it when smaller than ``d_model``.
        mask_size: The side masks are resized to before downsampling, if theirs differs (see MaskDownSampler).
    """

    def __init__(self, d_model: int, mem_dim: int, mask_size: int | None = None) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(d_model, mask_size=mask_size)
        self.pix_feat_proj = nn.Conv2d(d_model, d_model, kernel_size=1)
        self.fuser = Fuser(d_model)
        self.out_proj = nn.Conv2d(d_model, mem_dim, kernel_size=1) if mem_dim != d_model else nn.Identity()
        self.position_encoding = PositionEmbeddingSine(mem_dim)

    def forward(self, pix_feat: torch.Tensor, mask_for_mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mask_for_mem`` is already squashed (sigmoid or binarised) and scaled as the model wants it."""
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(mask_for_mem)
        x = self.out_proj(self.fuser(x))
        return x, self.position_encoding(x)
