"""The TinyViT block: window attention, a depthwise convolution between the tokens, then an MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.models.tiny_vit.attention import WindowAttention
from sam_core.models.tiny_vit.conv_bn import ConvBN


class TokenMLP(nn.Module):
    """Pre-norm MLP: LayerNorm, linear, GELU, linear.

    Args:
        dim: token width.
        hidden_dim: hidden width.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """``x + attention(x)`` within windows, a depthwise ConvBN over the token grid, then ``x + mlp(x)``.

    A grid that is not a multiple of the window is zero-padded at the bottom and right before the
    attention's LayerNorm, so padded tokens take part as keys (as in TinyViT), then cropped away.

    Args:
        dim: token width.
        resolution: side of the square token grid.
        num_heads: attention heads.
        window_size: side of the attention windows.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        local_conv_size: kernel side of the depthwise convolution.
    """

    def __init__(self, dim: int, resolution: int, num_heads: int, window_size: int, mlp_ratio: float,
                 local_conv_size: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.window_size = window_size
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.local_conv = ConvBN(dim, dim, local_conv_size, groups=dim)
        self.mlp = TokenMLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, H*W, C) in row-major order -> the same shape."""
        batch, tokens, channels = x.shape
        side = self.resolution
        x = x + self._windowed_attention(x.view(batch, side, side, channels)).reshape(batch, tokens, channels)
        x = self.local_conv(x.transpose(1, 2).reshape(batch, channels, side, side))
        x = x.flatten(2).transpose(1, 2)
        return x + self.mlp(x)

    def _windowed_attention(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> attention output (B, H, W, C)."""
        batch, height, width, channels = grid.shape
        window = self.window_size
        pad_h, pad_w = -height % window, -width % window
        if pad_h or pad_w:
            grid = F.pad(grid, (0, 0, 0, pad_w, 0, pad_h))
        down, across = grid.shape[1] // window, grid.shape[2] // window
        windows = grid.view(batch, down, window, across, window, channels).transpose(2, 3)
        out = self.attn(windows.reshape(-1, window * window, channels))
        out = out.view(batch, down, across, window, window, channels).transpose(2, 3)
        return out.reshape(batch, down * window, across * window, channels)[:, :height, :width]
