"""SAM 3's image backbone: a plain ViT (ViTDet style) with 2-D axial rotary position encoding, windowed blocks
and a few global ones, and an absolute position embedding trained at a smaller size and tiled.

Module and parameter names are Meta's (``patch_embed.proj``, ``pos_embed``, ``ln_pre``, ``blocks.i.attn.qkv``...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.models.sam.image_encoder import partition_token_windows, unpartition_token_windows
from sam_core.models.sam2.video.rotary import axial_rotation_angles, rotate_pairs

ROPE_THETA = 10000.0


class RotaryViTAttention(nn.Module):
    """Multi-head self-attention over a square grid of tokens, queries and keys rotated by their position.

    Args:
        dim: Token width.
        num_heads: Attention heads; the head width must be a multiple of 4.
        grid: Side of the token grid attended over (a window's or the whole image's).
        position_scale: Multiplies the positions before rotation (a global block's grid is interpolated onto
            the window size the rotations were trained at).
    """

    def __init__(self, dim: int, num_heads: int, grid: int, position_scale: float = 1.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        angles = axial_rotation_angles(dim // num_heads, grid, grid, ROPE_THETA, position_scale)
        # Computed, not learned: not in the state dict.
        self.register_buffer("rope_cos", angles.cos(), persistent=False)
        self.register_buffer("rope_sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) tokens, H = W = the attention's grid -> (B, H, W, C)."""
        batch, height, width, _ = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, N, head_dim) each
        q = rotate_pairs(q, self.rope_cos, self.rope_sin)
        k = rotate_pairs(k, self.rope_cos, self.rope_sin)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, head_dim)
        return self.proj(out.transpose(1, 2).reshape(batch, height, width, -1))


class Mlp(nn.Module):
    """Two linear layers with a GELU between them (timm's ``Mlp``: ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    """Pre-norm transformer block; with ``window_size`` > 0 the attention runs within non-overlapping windows
    of the zero-padded grid.

    Args:
        dim: Token width.
        num_heads: Attention heads.
        mlp_hidden: Hidden width of the MLP.
        grid: Side of the image's token grid.
        window_size: Side of the attention windows; 0 for global attention.
        trained_window: Side of the windows the rotary positions were trained on: a global block's positions
            are scaled by trained_window / grid, onto one window's extent.
        eps: The layer norms' epsilon.
    """

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, grid: int, window_size: int,
                 trained_window: int, eps: float) -> None:
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        if window_size:
            self.attn = RotaryViTAttention(dim, num_heads, window_size)
        else:
            self.attn = RotaryViTAttention(dim, num_heads, grid, trained_window / grid)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        shortcut = x
        x = self.norm1(x)
        if self.window_size:
            size = (x.shape[1], x.shape[2])
            x = unpartition_token_windows(self.attn(partition_token_windows(x, self.window_size)), self.window_size,
                                          size)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """SAM 3's backbone: patches -> tokens + tiled absolute positions -> layer norm -> blocks.

    Args:
        image_size: Side of the square input.
        patch_size: Side of a patch (the stride of the output grid).
        embed_dim: Token width.
        depth: Number of blocks.
        num_heads: Attention heads of every block.
        mlp_ratio: MLP hidden width / embed_dim.
        window_size: Side of the windows of the windowed blocks (also the grid the rotary positions of the
            global blocks are scaled to).
        global_att_blocks: Indices of the global blocks; the last one's output is the backbone's.
        pretrain_image_size: Input size the absolute position embedding was trained at (its grid is tiled).
        eps: The layer norms' epsilon.
    """

    def __init__(self, image_size: int = 1008, patch_size: int = 14, embed_dim: int = 1024, depth: int = 32,
                 num_heads: int = 16, mlp_ratio: float = 4.625, window_size: int = 24,
                 global_att_blocks: tuple[int, ...] = (7, 15, 23, 31), pretrain_image_size: int = 336,
                 eps: float = 1e-5) -> None:
        super().__init__()
        grid = image_size // patch_size
        pretrain_grid = pretrain_image_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        # Meta's pretraining had a class token: its position (row 0) is stored and unused.
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pretrain_grid * pretrain_grid, embed_dim))
        self.ln_pre = nn.LayerNorm(embed_dim, eps=eps)
        mlp_hidden = int(embed_dim * mlp_ratio)
        self.blocks = nn.ModuleList(
            ViTBlock(embed_dim, num_heads, mlp_hidden, grid, 0 if i in global_att_blocks else window_size,
                     window_size, eps)
            for i in range(depth)
        )
        self.channel_list = (embed_dim,)
        self.output_block = max(global_att_blocks)

    def tiled_position_embedding(self, height: int, width: int) -> torch.Tensor:
        """The (1, H, W, C) absolute positions of an HxW grid: the trained grid repeated, cut at H and W."""
        table = self.pos_embed[:, 1:]
        side = int(table.shape[1] ** 0.5)
        table = table.reshape(1, side, side, -1)
        if (side, side) == (height, width):
            return table
        repeats = (1, height // side + 1, width // side + 1, 1)
        return table.repeat(*repeats)[:, :height, :width]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) normalised images -> [(B, C, S / patch, S / patch)], the last global block's output."""
        x = self.patch_embed(images)  # (B, H, W, C)
        x = x + self.tiled_position_embedding(x.shape[1], x.shape[2])
        x = self.ln_pre(x)
        for block in self.blocks[: self.output_block + 1]:
            x = block(x)
        return [x.permute(0, 3, 1, 2)]


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens (a strided convolution without bias), channels last."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, S / patch, S / patch, C)."""
        return self.proj(images).permute(0, 2, 3, 1)
