"""ViT image encoder: patch embedding, windowed/global attention with decomposed relative positions, neck.

The attention has two implementations (see ``sam_core.fast_paths``): the plain one, written as in the papers
(``Attention._attention_plain``, ``relative_position_bias``, ``partition_token_windows``), and the default fast one
(``Attention._forward_fast``), which computes the same function without materialising the bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths_enabled
from sam_core.layers.mlp import MLPBlock
from sam_core.layers.norms import LayerNorm2d


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> channels-last embeddings (B, H/p, W/p, C).

    Args:
        patch_size: side of the square patches, in pixels (the convolution's kernel size and stride).
        in_chans: number of image channels.
        embed_dim: embedding width of each patch.
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Made contiguous once here: elementwise ops keep their input's layout, so a permuted view would carry
        # a transposed memory layout through every residual add and force a copy before every LayerNorm.
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


def _check_tables(rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, height: int, width: int) -> None:
    # The reference interpolates tables of other lengths; no SAM checkpoint needs that, so it is an error here.
    for table, size in ((rel_pos_h, height), (rel_pos_w, width)):
        if table.shape[0] != 2 * size - 1:
            raise ValueError(f"relative position table has {table.shape[0]} rows, expected {2 * size - 1}")


def relative_position_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                           height: int, width: int) -> torch.Tensor:
    """The decomposed relative position bias (MViTv2, as SAM uses it) as a full (N, H*W, H*W) matrix.

    q: (N, H*W, head_dim) unscaled queries on an HxW grid; rel_pos_h: (2H - 1, head_dim), one row per row
    offset qh - kh from -(H - 1) to H - 1 (likewise rel_pos_w for columns). The bias of query (qh, qw) for
    key (kh, kw) is q . R_h[qh, kh] + q . R_w[qw, kw], where R_h[qh, kh] = rel_pos_h[qh - kh + H - 1].
    """
    _check_tables(rel_pos_h, rel_pos_w, height, width)
    rows, cols = torch.arange(height, device=q.device), torch.arange(width, device=q.device)
    r_h = rel_pos_h[rows[:, None] - rows[None, :] + height - 1]  # (H, H, head_dim)
    r_w = rel_pos_w[cols[:, None] - cols[None, :] + width - 1]  # (W, W, head_dim)
    grid_q = q.unflatten(1, (height, width))  # (N, H, W, head_dim)
    bias_h = torch.einsum("nhwc,hkc->nhwk", grid_q, r_h)  # (N, H, W, H): query (h, w), key row k
    bias_w = torch.einsum("nhwc,wkc->nhwk", grid_q, r_w)  # (N, H, W, W): query (h, w), key column k
    bias = bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]  # (N, H, W, H, W)
    return bias.reshape(q.shape[0], height * width, height * width)


def skewed_relative_position_terms(grid_q: torch.Tensor, rel_pos_h: torch.Tensor,
                                   rel_pos_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fast path: the two factors of ``relative_position_bias`` for queries on an HxW grid, (N, H, W, H) and
    (N, H, W, W), which that bias adds as bias_h[..., kh] + bias_w[..., kw].

    The term for query (qh, qw) and key row kh is q . rel_pos_h[qh - kh + H - 1] (likewise for columns). One
    matrix product against the flipped table gives q . rel_pos_h[j] for every offset j; the per-query
    selection of H consecutive offsets is then a strided view ("skewing") rather than a gather or copy.
    """
    batch, height, width, _ = grid_q.shape
    _check_tables(rel_pos_h, rel_pos_w, height, width)
    proj_h = grid_q @ rel_pos_h.flip(0).T  # [..., j] = q . rel_pos_h[2H - 2 - j]
    proj_w = grid_q @ rel_pos_w.flip(0).T
    s_n, s_h, s_w, _ = proj_h.stride()
    bias_h = proj_h.as_strided((batch, height, width, height), (s_n, s_h - 1, s_w, 1),
                               proj_h.storage_offset() + height - 1)
    s_n, s_h, s_w, _ = proj_w.stride()
    bias_w = proj_w.as_strided((batch, height, width, width), (s_n, s_h, s_w - 1, 1),
                               proj_w.storage_offset() + width - 1)
    return bias_h, bias_w


# Working-set size (elements) of one attention chunk: 8 MB of fp32 scores, which stay in the last-level
# cache while the chunk is long enough (512 query rows of a 64x64 grid) for efficient matrix products.
_CHUNK_ELEMENTS = 1 << 21


class Attention(nn.Module):
    """Multi-head self-attention over a 2-D grid with a decomposed relative position bias.

    The bias of query (qh, qw) for key (kh, kw) is q . R_h[qh - kh] + q . R_w[qw - kw]. The plain path
    materialises it: for a 64x64 global block that is (heads, 4096, 4096) floats, 800 MB for ViT-B, and as
    much again for the scores. The fast path computes the scores in query chunks whose bias, scores and
    softmax fit in cache (see ``decomposed_attention``), and partitions windows in one copy.

    Args:
        dim: token width.
        num_heads: number of attention heads; must divide ``dim``.
        grid_size: side of the token grid attended over when ``window_size`` is 0 (sizes the relative
            position tables).
        window_size: side of the windows attended within, or 0 for global attention over the whole grid.
    """

    def __init__(self, dim: int, num_heads: int, grid_size: int, window_size: int = 0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        attended_size = window_size or grid_size
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * attended_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * attended_size - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C), attending within windows when ``window_size`` > 0."""
        if fast_paths_enabled():
            return self._forward_fast(x)
        if self.window_size:
            height, width = x.shape[1:3]
            windows = partition_token_windows(x, self.window_size)  # (B * windows, window, window, C)
            return unpartition_token_windows(self._attention_plain(windows), self.window_size, (height, width))
        return self._attention_plain(x)

    def _attention_plain(self, x: torch.Tensor) -> torch.Tensor:
        """Attention over every (H, W) grid of x: softmax(scale * q k^T + relative position bias) v."""
        batch, height, width, channels = x.shape
        tokens, heads = height * width, self.num_heads
        qkv = self.qkv(x).reshape(batch, tokens, 3, heads, -1)  # (B, H*W, 3, heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).reshape(3, batch * heads, tokens, -1).unbind(0)  # (B*heads, H*W, hd)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B*heads, H*W, H*W)
        attn = attn + relative_position_bias(q, self.rel_pos_h, self.rel_pos_w, height, width)
        attn = attn.softmax(dim=-1)
        out = attn @ v  # (B*heads, H*W, head_dim)
        out = out.view(batch, heads, height, width, -1).permute(0, 2, 3, 1, 4)  # (B, H, W, heads, head_dim)
        return self.proj(out.reshape(batch, height, width, channels))

    def _forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` without materialising the bias, and with windows partitioned after the projection."""
        batch, height, width, channels = x.shape
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, -1))  # (B, H, W, 3, heads, head_dim)
        out = x.new_empty((batch, height, width, self.num_heads, channels // self.num_heads))
        if self.window_size:
            # Windows are zero-padded; every padding token projects to the projection of one zero token (the
            # qkv bias), so the padding is filled with it instead of being projected like real tokens.
            pad = self.qkv(x.new_zeros((1, channels)))[0].view(3, self.num_heads, -1)
            windows = partition_windows(qkv, self.window_size, pad)  # (3, B * windows * heads, w * w, hd)
            attended = self._attend(*windows.unbind(0), self.window_size, self.window_size)
            unpartition_windows(attended, self.window_size, out)
        else:
            # Heads are read in place from the projection and written in place to the output: strided
            # matrices that the batched matrix products take as they are, with no head-splitting copies.
            for index in range(batch):
                q, k, v = qkv[index].flatten(0, 1).permute(1, 2, 0, 3).unbind(0)  # each (heads, H*W, hd)
                self._attend(q, k, v, height, width, out=out[index].flatten(0, 1).transpose(0, 1))
        return self.proj(out.flatten(-2))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, height: int, width: int,
                out: torch.Tensor | None = None) -> torch.Tensor:
        """Attention within (height, width) grids of tokens: q, k, v (N, height*width, head_dim) -> ``out``."""
        bias_h, bias_w = skewed_relative_position_terms(q.unflatten(1, (height, width)), self.rel_pos_h,
                                                        self.rel_pos_w)
        if torch.is_grad_enabled() and q.requires_grad:
            attended = self._attention_autograd(q, k, v, bias_h, bias_w)
            return attended if out is None else out.copy_(attended)
        return decomposed_attention(q, k, v, bias_h, bias_w, self.scale, out)

    @staticmethod
    def _attention_autograd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias_h: torch.Tensor,
                            bias_w: torch.Tensor) -> torch.Tensor:
        """Differentiable path for training: the full bias as an attention mask."""
        tokens = q.shape[1]
        bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(-1, tokens, tokens)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def decomposed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias_h: torch.Tensor,
                         bias_w: torch.Tensor, scale: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(scale * q k^T + bias_h[.., kh] + bias_w[.., kw]) v without materialising the full bias.

    q, k, v: (N, H*W, C), possibly strided; bias_h: (N, H, W, H); bias_w: (N, H, W, W). Work proceeds in
    chunks of query rows (global attention) or of whole windows (windowed attention), reusing one
    preallocated score buffer. The result goes to ``out`` (any (N, H*W, C) view) when given.
    """
    batch, height, width, _ = bias_h.shape
    tokens = height * width
    rows = max(1, min(height, _CHUNK_ELEMENTS // (width * tokens)))
    group = max(1, _CHUNK_ELEMENTS // (rows * width * tokens)) if rows == height else 1
    out = torch.empty_like(q) if out is None else out
    keys_t = k.transpose(1, 2)
    scores_buffer = q.new_empty((min(group, batch), rows * width, tokens))
    for b0 in range(0, batch, group):
        b1 = min(batch, b0 + group)
        for r0 in range(0, height, rows):
            r1 = min(height, r0 + rows)
            scores = scores_buffer[: b1 - b0, : (r1 - r0) * width]
            torch.add(bias_h[b0:b1, r0:r1, :, :, None], bias_w[b0:b1, r0:r1, :, None, :],
                      out=scores.view(b1 - b0, r1 - r0, width, height, width))
            scores.baddbmm_(q[b0:b1, r0 * width : r1 * width], keys_t[b0:b1], alpha=scale)
            torch.bmm(torch.softmax(scores, dim=-1), v[b0:b1], out=out[b0:b1, r0 * width : r1 * width])
    return out


def partition_token_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """Plain path: (B, H, W, C) tokens -> (B * windows, window, window, C), the grid zero-padded at the bottom
    and right up to whole windows; windows are ordered row by row (Meta's ``window_partition``)."""
    batch, height, width, channels = x.shape
    pad_h, pad_w = -height % window, -width % window
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # (B, Hp, Wp, C)
    down, across = (height + pad_h) // window, (width + pad_w) // window
    x = x.view(batch, down, window, across, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, channels)  # (B * down * across, w, w, C)


def unpartition_token_windows(windows: torch.Tensor, window: int, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``partition_token_windows``: (B * windows, window, window, C) -> (B, H, W, C) for a grid of
    ``size`` (H, W), dropping the padding (Meta's ``window_unpartition``)."""
    height, width = size
    # Ceiling division written with positive operands: ONNX's integer division truncates toward zero.
    down, across = (height + window - 1) // window, (width + window - 1) // window
    channels = windows.shape[-1]
    x = windows.view(-1, down, across, window, window, channels)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, down * window, across * window, channels)  # (B, Hp, Wp, C)
    return x[:, :height, :width]


# Meta's names of the plain partition, kept for existing callers.
window_partition = partition_token_windows
window_unpartition = unpartition_token_windows


def _window_pieces(size: int, window: int) -> list[tuple[slice, slice, slice]]:
    """Cover positions 0..size of a grid axis cut into windows: (positions, window indices, offsets within
    the window) for the run of whole windows, then for the partial last window."""
    whole = size // window * window
    pieces = []
    if whole:
        pieces.append((slice(0, whole), slice(0, whole // window), slice(None)))
    if whole < size:
        last = whole // window
        pieces.append((slice(whole, size), slice(last, last + 1), slice(0, size - whole)))
    return pieces


def partition_windows(qkv: torch.Tensor, window: int, pad: torch.Tensor | float) -> torch.Tensor:
    """Fast path: (B, H, W, 3, heads, hd) -> (3, B * windows * heads, window * window, hd): projected tokens
    grouped into window-major, head-split matrices in one copy, the grid padded up to whole windows with
    ``pad``. ``partition_token_windows`` followed by the projection and head split, with ``pad`` the projection of
    a zero token.

    The destination seen as a grid, (B, windows down, row in window, windows across, column in window, ...),
    receives the real tokens in at most four rectangular copies; only the padding strips are filled.
    """
    batch, height, width, _, heads, head_dim = qkv.shape
    across, down = -(-width // window), -(-height // window)
    windows = qkv.new_empty((3, batch, down, across, heads, window, window, head_dim))
    grid = windows.permute(1, 2, 5, 3, 6, 0, 4, 7)  # (B, down, wrow, across, wcol, 3, heads, hd)
    for rows, row_windows, row_offsets in _window_pieces(height, window):
        for cols, col_windows, col_offsets in _window_pieces(width, window):
            target = grid[:, row_windows, row_offsets, col_windows, col_offsets]
            source = qkv[:, rows, cols].unflatten(1, (target.shape[1], -1)).unflatten(3, (target.shape[3], -1))
            target.copy_(source)
    if height % window:
        grid[:, -1, height % window :] = pad
    if width % window:
        grid[:, :, :, -1, width % window :] = pad
    return windows.view(3, -1, window * window, head_dim)


def unpartition_windows(windows: torch.Tensor, window: int, out: torch.Tensor) -> torch.Tensor:
    """Inverse of partition_windows for one of q, k, v: (B * windows * heads, window * window, hd) into
    ``out`` (B, H, W, heads, hd), dropping the padding."""
    batch, height, width, heads, head_dim = out.shape
    across, down = -(-width // window), -(-height // window)
    grid = windows.view(batch, down, across, heads, window, window, head_dim).permute(0, 1, 4, 2, 5, 3, 6)
    for rows, row_windows, row_offsets in _window_pieces(height, window):
        for cols, col_windows, col_offsets in _window_pieces(width, window):
            source = grid[:, row_windows, row_offsets, col_windows, col_offsets]
            out[:, rows, cols].unflatten(1, (source.shape[1], -1)).unflatten(3, (source.shape[3], -1)).copy_(source)
    return out


def mlp_width(dim: int, mlp_ratio: float) -> int:
    """``int(dim * mlp_ratio)``, Meta's hidden width, except that a product within rounding of an integer is
    that integer: a ratio read back from a checkpoint's widths (``width / dim``, e.g. SlimSAM's pruned 696 / 168)
    then rebuilds exactly that width."""
    width = dim * mlp_ratio
    return round(width) if abs(width - round(width)) < 1e-6 * width else int(width)


class Block(nn.Module):
    """Pre-norm transformer block; attends within windows when window_size > 0, else over the whole grid.

    Args:
        dim: token width.
        num_heads: number of attention heads.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        window_size: side of the attention windows, or 0 for global attention.
        grid_size: side of the token grid (for global attention's relative position tables).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window_size: int, grid_size: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, grid_size, window_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, mlp_width(dim, mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """ViT backbone with absolute + relative positions and a conv neck to ``out_chans`` channels.

    Args:
        img_size: side of the square input image, in pixels.
        patch_size: side of the square patches; the token grid is ``img_size // patch_size`` on a side.
        embed_dim: token width of the transformer.
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        global_attn_indexes: indexes of the blocks that attend over the whole grid; the others attend within
            windows.
        window_size: side of the attention windows of the windowed blocks.
        mlp_ratio: MLP hidden width as a multiple of ``embed_dim``.
        out_chans: channels of the output embedding (the neck's width).
        in_chans: number of image channels.
    """

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 global_attn_indexes: tuple[int, ...], window_size: int, mlp_ratio: float = 4.0,
                 out_chans: int = 256, in_chans: int = 3) -> None:
        super().__init__()
        self.img_size = img_size
        grid_size = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid_size, grid_size, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, 0 if i in global_attn_indexes else window_size, grid_size)
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_intermediate(x, None)[0]

    def forward_with_intermediate(self, x: torch.Tensor,
                                  block: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The embedding and the tokens (B, h, w, C) after block ``block`` (None: no tokens kept)."""
        x = self.patch_embed(x) + self.pos_embed
        kept = None
        for index, layer in enumerate(self.blocks):
            x = layer(x)
            if index == block:
                kept = x
        return self.neck(x.permute(0, 3, 1, 2)), kept
