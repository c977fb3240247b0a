"""Hiera trunk: a hierarchical ViT whose stages halve the resolution by max-pooling their attention queries.

Most blocks attend within windows; a few attend over the whole grid. Positions are a background
embedding interpolated to the grid plus a window-sized embedding tiled over it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths_enabled
from sam_core.layers.mlp import MLP
from sam_core.models.sam.image_encoder import partition_windows, unpartition_windows


class PatchEmbed(nn.Module):
    """Overlapping 7x7 patches at stride 4 -> channels-last embeddings (B, H/4, W/4, C)."""

    def __init__(self, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Contiguous once here, so that the residual stream keeps a plain channels-last layout.
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


def max_pool(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Non-overlapping stride x stride max pooling of a channels-last grid (N, H, W, C) -> (N, H/s, W/s, C)."""
    # Seen as NCHW, a channels-last tensor takes max_pool2d's channels-last kernel (several times faster
    # than a strided amax) and comes back channels-last: no layout copies either way.
    return F.max_pool2d(x.permute(0, 3, 1, 2), stride).permute(0, 2, 3, 1)


def _partition_windows_plain(qkv: torch.Tensor, window: int, pad: torch.Tensor) -> torch.Tensor:
    """``partition_windows`` as padding and reshapes, without writes into views (which the ONNX tracer
    does not follow): (B, H, W, 3, heads, hd) -> (3, B * windows * heads, window * window, hd)."""
    batch, height, width, _, heads, head_dim = qkv.shape
    # (n + w - 1) // w, not -(-n // w): ONNX divides integers towards zero, torch's // towards -inf.
    down, across = (height + window - 1) // window, (width + window - 1) // window
    padded = F.pad(qkv, (0, 0, 0, 0, 0, 0, 0, across * window - width, 0, down * window - height))
    rows = torch.arange(down * window, device=qkv.device) < height
    cols = torch.arange(across * window, device=qkv.device) < width
    inside = (rows[:, None] & cols[None, :]).view(1, down * window, across * window, 1, 1, 1)
    padded = torch.where(inside, padded, pad.to(qkv.dtype))
    grid = padded.view(batch, down, window, across, window, 3, heads, head_dim)
    return grid.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(3, -1, window * window, head_dim)


def _unpartition_windows_plain(windows: torch.Tensor, window: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of ``_partition_windows_plain`` for one of q, k, v: (B * windows * heads, window * window,
    hd) -> ``shape`` (B, H, W, heads, hd), the padding dropped."""
    batch, height, width, heads, head_dim = shape
    down, across = (height + window - 1) // window, (width + window - 1) // window
    grid = windows.view(batch, down, across, heads, window, window, head_dim).permute(0, 1, 4, 2, 5, 3, 6)
    return grid.reshape(batch, down * window, across * window, heads, head_dim)[:, :height, :width]


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention within windows (or over the whole grid), optionally max-pooling the queries
    by ``q_stride`` within each window so that the output grid is ``q_stride`` times smaller.

    Args:
        dim: Input channels.
        dim_out: Output channels (and the attention width).
        num_heads: Attention heads.
        window_size: Side of the attention windows; 0 attends over the whole grid.
        q_stride: Query pooling stride (windowed attention only); 0 or 1 keeps the resolution.
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int, window_size: int = 0, q_stride: int = 0) -> None:
        super().__init__()
        if q_stride > 1 and not window_size:
            raise ValueError("query pooling is done within windows; a global block cannot pool")
        self.num_heads = num_heads
        self.window_size = window_size
        self.q_stride = max(q_stride, 1)
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim), already normalised -> (B, H / q_stride, W / q_stride, dim_out)."""
        batch, height, width, _ = x.shape
        heads, stride, window = self.num_heads, self.q_stride, self.window_size
        qkv = self.qkv(x).unflatten(-1, (3, heads, -1))  # (B, H, W, 3, heads, head_dim)
        if window:
            # The reference zero-pads the normalised grid up to whole windows; a zero token projects to the
            # qkv bias, so the padding is filled with it. Padding tokens take part as keys, as there.
            pad = self.qkv.bias.view(3, heads, -1) if self.qkv.bias is not None else qkv.new_zeros(())
            fast = fast_paths_enabled()
            partition = partition_windows if fast else _partition_windows_plain
            q, k, v = partition(qkv, window, pad).unbind(0)  # each (B * windows * heads, w * w, hd)
            if stride > 1:
                q = max_pool(q.unflatten(1, (window, window)), stride).flatten(1, 2)
            attended = F.scaled_dot_product_attention(q, k, v)  # (B * windows * heads, (w / s)^2, hd)
            out_shape = (batch, height // stride, width // stride, heads, qkv.shape[-1])
            if fast:
                out = unpartition_windows(attended, window // stride, x.new_empty(out_shape)).flatten(-2)
            else:
                out = _unpartition_windows_plain(attended, window // stride, out_shape).flatten(-2)
        else:
            q, k, v = qkv.flatten(1, 2).permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, H * W, hd)
            attended = F.scaled_dot_product_attention(q, k, v)
            out = attended.transpose(1, 2).reshape(batch, height, width, -1)
        return self.proj(out)


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block; the first block of a stage widens the channels and pools the queries
    (its shortcut is projected and pooled to match).

    Args:
        dim: Input channels.
        dim_out: Output channels.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden width relative to ``dim_out``.
        window_size: Attention window side; 0 for global attention.
        q_stride: Query pooling stride; 0 keeps the resolution.
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int, mlp_ratio: float = 4.0, window_size: int = 0,
                 q_stride: int = 0) -> None:
        super().__init__()
        self.dim, self.dim_out, self.q_stride = dim, dim_out, q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, window_size, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, num_layers=2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim) -> (B, H / q_stride, W / q_stride, dim_out)."""
        normed = self.norm1(x)
        shortcut = x
        if self.dim != self.dim_out:
            shortcut = self.proj(normed)  # the reference projects the normalised input here
            if self.q_stride > 1:
                shortcut = max_pool(shortcut, self.q_stride)
        x = shortcut + self.attn(normed)
        return x + self.mlp(self.norm2(x))


class Hiera(nn.Module):
    """Hierarchical trunk returning every stage's output, highest resolution first.

    Args:
        embed_dim: Channels of the first stage; each later stage doubles them.
        num_heads: Heads of the first stage; each later stage doubles them.
        stages: Blocks per stage.
        q_pool: How many stage transitions pool the queries (halve the resolution).
        q_stride: Pooling stride at those transitions.
        window_spec: Attention window per stage (a stage's first block still uses the previous stage's).
        global_att_blocks: Indexes of the blocks that attend over the whole grid.
        window_pos_embed_bkg_spatial_size: Size of the background position embedding, interpolated to the grid.
        mlp_ratio: MLP hidden width relative to the block width.
    """

    def __init__(self, embed_dim: int, num_heads: int, stages: tuple[int, ...], q_pool: int, q_stride: int,
                 window_spec: tuple[int, ...], global_att_blocks: tuple[int, ...],
                 window_pos_embed_bkg_spatial_size: tuple[int, int], mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        q_pool_blocks = {end + 1 for end in self.stage_ends[:-1][:q_pool]}
        self.patch_embed = PatchEmbed(embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, window_spec[0], window_spec[0]))
        self.blocks = nn.ModuleList()
        stage, dim = 0, embed_dim
        for index in range(sum(stages)):
            # The window lags the stage by one block: a stage's first block attends in windows of the
            # previous stage's size, which its query pooling shrinks to the size of this stage's.
            window_size = 0 if index in global_att_blocks else window_spec[stage]
            dim_out = dim
            if index - 1 in self.stage_ends:
                dim_out, num_heads, stage = 2 * dim, 2 * num_heads, stage + 1
            self.blocks.append(MultiScaleBlock(dim, dim_out, num_heads, mlp_ratio, window_size,
                                               q_stride if index in q_pool_blocks else 0))
            dim = dim_out
        self.channel_list = [self.blocks[end].dim_out for end in reversed(self.stage_ends)]

    def position_embedding(self, height: int, width: int) -> torch.Tensor:
        """(1, H, W, C): the background embedding resized to the grid plus the window embedding tiled over it."""
        background = F.interpolate(self.pos_embed, size=(height, width), mode="bicubic")
        window = self.pos_embed_window
        _, channels, window_height, window_width = window.shape
        # The window embedding tiled over the grid (expand + reshape: ONNX exports torch's tile wrongly).
        tiled = window.view(1, channels, 1, window_height, 1, window_width).expand(
            1, channels, height // window_height, window_height, width // window_width, window_width)
        tiled = tiled.reshape(1, channels, height, width)
        return (background + tiled).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) normalised images -> each stage's output (B, C_s, H / 4 / 2^s, W / 4 / 2^s), stage 0
        first; the tensors are channels-last in memory."""
        x = self.patch_embed(x)  # (B, H/4, W/4, C)
        x = x + self.position_embedding(int(x.shape[1]), int(x.shape[2]))  # ints: constants to the ONNX tracer
        outputs = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
