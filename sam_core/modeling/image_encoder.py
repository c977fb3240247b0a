"""ViT image encoder: patch embedding, windowed/global attention with decomposed relative positions, neck."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.modeling.common import LayerNorm2d, MLPBlock


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> channels-last embeddings (B, H/p, W/p, C)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


def relative_position_bias(grid_q: torch.Tensor, rel_pos_h: torch.Tensor,
                           rel_pos_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decomposed relative position terms for queries on an HxW grid: (N, H, W, H) and (N, H, W, W).

    The term for query (qh, qw) and key row kh is q . rel_pos_h[qh - kh + H - 1] (likewise for columns). One
    matrix product against the flipped table gives q . rel_pos_h[j] for every offset j; the per-query
    selection of H consecutive offsets is then a strided view ("skewing") rather than a gather or copy.
    """
    batch, height, width, _ = grid_q.shape
    for table, size in ((rel_pos_h, height), (rel_pos_w, width)):
        if table.shape[0] != 2 * size - 1:
            raise ValueError(f"relative position table has {table.shape[0]} rows, expected {2 * size - 1}")
    proj_h = grid_q @ rel_pos_h.flip(0).T  # [..., j] = q . rel_pos_h[2H - 2 - j]
    proj_w = grid_q @ rel_pos_w.flip(0).T
    s_n, s_h, s_w, _ = proj_h.stride()
    bias_h = proj_h.as_strided((batch, height, width, height), (s_n, s_h - 1, s_w, 1),
                               proj_h.storage_offset() + height - 1)
    s_n, s_h, s_w, _ = proj_w.stride()
    bias_w = proj_w.as_strided((batch, height, width, width), (s_n, s_h, s_w - 1, 1),
                               proj_w.storage_offset() + width - 1)
    return bias_h, bias_w


# Working-set size (elements) of one attention chunk: ~2 MB in fp32, so scores stay in cache.
_CHUNK_ELEMENTS = 1 << 19


class Attention(nn.Module):
    """Multi-head self-attention over a 2-D grid with a decomposed relative position bias.

    The bias of query (qh, qw) for key (kh, kw) is q . R_h[qh - kh] + q . R_w[qw - kw]. Materialising it for a
    64x64 global block takes (heads, 4096, 4096) floats, 800 MB for ViT-B; instead the scores are computed in
    query chunks whose bias, scores and softmax fit in cache (see ``decomposed_attention``).
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
        qkv = self.qkv(x)
        if not self.window_size:
            return self.proj(self._attend(qkv))
        # Windows are zero-padded; every padding token projects to the projection of a zero token (the qkv
        # bias), so padding the projected tokens with it skips projecting (and back-projecting) the padding.
        zero_token = self.qkv(x.new_zeros((1, x.shape[-1])))[0]
        windows, padded_hw = window_partition(qkv, self.window_size, pad_value=zero_token)
        out = window_unpartition(self._attend(windows), self.window_size, padded_hw, x.shape[1:3])
        return self.proj(out)

    def _attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """Attention over each (H, W) grid of projected tokens: (N, H, W, 3C) -> (N, H, W, C)."""
        batch, height, width, _ = qkv.shape
        qkv = qkv.reshape(batch, height * width, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, batch * self.num_heads, height * width, -1).unbind(0)
        grid_q = q.view(batch * self.num_heads, height, width, -1)
        bias_h, bias_w = relative_position_bias(grid_q, self.rel_pos_h, self.rel_pos_w)
        if torch.is_grad_enabled() and q.requires_grad:
            out = self._attention_autograd(q, k, v, bias_h, bias_w)
        else:
            out = decomposed_attention(q, k, v, bias_h, bias_w, self.scale)
        out = out.view(batch, self.num_heads, height, width, -1).permute(0, 2, 3, 1, 4)
        return out.reshape(batch, height, width, -1)

    @staticmethod
    def _attention_autograd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias_h: torch.Tensor,
                            bias_w: torch.Tensor) -> torch.Tensor:
        """Differentiable path for training: the full bias as an attention mask."""
        tokens = q.shape[1]
        bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(-1, tokens, tokens)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def decomposed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias_h: torch.Tensor,
                         bias_w: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(scale * q k^T + bias_h[.., kh] + bias_w[.., kw]) v without materialising the full bias.

    q, k, v: (N, H*W, C); bias_h: (N, H, W, H); bias_w: (N, H, W, W). Work proceeds in chunks of query rows
    (global attention) or of whole windows (windowed attention), reusing one preallocated score buffer.
    """
    batch, height, width, _ = bias_h.shape
    tokens = height * width
    rows = max(1, min(height, _CHUNK_ELEMENTS // (width * tokens)))
    group = max(1, _CHUNK_ELEMENTS // (rows * width * tokens)) if rows == height else 1
    out = torch.empty_like(q)
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


def window_partition(x: torch.Tensor, window: int,
                     pad_value: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * windows, window, window, C), padding H and W up to multiples of window with
    ``pad_value`` (a C-vector; zeros when None)."""
    batch, height, width, channels = x.shape
    padded_h, padded_w = height + (-height) % window, width + (-width) % window
    if (padded_h, padded_w) != (height, width):
        padded = x.new_empty((batch, padded_h, padded_w, channels))
        padded[:, :height, :width] = x
        fill = 0.0 if pad_value is None else pad_value
        padded[:, height:] = fill
        padded[:, :height, width:] = fill
        x = padded
    x = x.view(batch, padded_h // window, window, padded_w // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, channels), (padded_h, padded_w)


def window_unpartition(windows: torch.Tensor, window: int, padded_hw: tuple[int, int],
                       hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of window_partition, dropping the padding."""
    padded_h, padded_w = padded_hw
    batch = windows.shape[0] // ((padded_h // window) * (padded_w // window))
    x = windows.view(batch, padded_h // window, padded_w // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(batch, padded_h, padded_w, -1)
    return x[:, : hw[0], : hw[1], :]  # a view: the residual add that follows reads it in place


class Block(nn.Module):
    """Pre-norm transformer block; attends within windows when window_size > 0, else over the whole grid."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window_size: int, grid_size: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, grid_size, window_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """ViT backbone with absolute + relative positions and a conv neck to ``out_chans`` channels."""

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
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
