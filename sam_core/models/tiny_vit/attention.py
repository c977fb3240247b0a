"""TinyViT's window attention: multi-head attention over the tokens of one window, plus a learned bias per
head for each (|dy|, |dx|) offset between two tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths_enabled


def offset_index(window: int) -> torch.Tensor:
    """(N, N) index into a bias table of ``window**2`` entries, N = window**2: the entry of the offset
    (|dy|, |dx|) between tokens i and j of a window (row-major) is ``|dy| * window + |dx|``."""
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    return (rows[:, None] - rows[None]).abs() * window + (cols[:, None] - cols[None]).abs()


class WindowAttention(nn.Module):
    """Pre-norm attention within windows of ``window`` x ``window`` tokens.

    ``qkv`` produces, for each head in turn, its query, key and value (TinyViT's layout), so the weight
    rows are grouped by head rather than by q / k / v.

    Args:
        dim: token width.
        num_heads: attention heads; the head width is ``dim // num_heads``.
        window: side of the square window.
    """

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        self.register_buffer("attention_bias_idxs", offset_index(window), persistent=False)

    def bias(self) -> torch.Tensor:
        """(heads, N, N) additive attention bias of a window."""
        return self.attention_biases[:, self.attention_bias_idxs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(windows, N, C) tokens -> (windows, N, C)."""
        batch, tokens, channels = x.shape
        qkv = self.qkv(self.norm(x)).view(batch, tokens, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.transpose(1, 2).split(self.head_dim, dim=-1)  # (windows, heads, N, head_dim) each
        if fast_paths_enabled():
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias().to(q.dtype), scale=self.scale)
        else:
            scores = (q @ k.transpose(-2, -1)) * self.scale + self.bias()
            out = scores.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, channels))
