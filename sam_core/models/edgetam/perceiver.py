"""EdgeTAM's 2D spatial perceiver: a frame's memory map (B, C, H, W) compressed into a few hundred latents.

Global latents attend to the whole map (its position encoding added to every head's keys and values); window
latents, one per cell of a square grid of windows, each attend to their window only, and carry their cell's
sine position encoding. Module and parameter names are Meta's (``spatial_perceiver.layers.0.attn.to_kv``...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.models.sam2.position_encoding import PositionEmbeddingSine


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    """Pre-norm feed-forward without biases: LayerNorm, Linear to ``dim * mult``, GELU, Linear back."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                         nn.Linear(dim * mult, dim, bias=False))


class LatentAttention(nn.Module):
    """Latents attend to inputs (``norm_x`` and ``norm_latents`` given: a cross-attention), or to themselves
    (``norm`` alone: the self-attention). No biases, no scaling beyond 1/sqrt(head width).

    Args:
        dim: width of latents and inputs.
        heads: attention heads.
        dim_head: width of each head.
        cross: whether the latents attend to separate inputs.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, cross: bool) -> None:
        super().__init__()
        self.heads = heads
        if cross:
            self.norm_x = nn.LayerNorm(dim)
            self.norm_latents = nn.LayerNorm(dim)
        else:
            self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim_head * heads, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim_head * heads, bias=False)
        self.to_out = nn.Linear(dim_head * heads, dim, bias=False)

    def forward(self, latents: torch.Tensor, x: torch.Tensor | None = None,
                pos: torch.Tensor | None = None) -> torch.Tensor:
        """latents (B, L, dim), x (B, N, dim) (None: self-attention), pos (B, N, dim) added to each head's keys
        and values -> (B, L, dim)."""
        if x is None:
            latents = x = self.norm(latents)
        else:
            latents, x = self.norm_latents(latents), self.norm_x(x)
        q = self._heads(self.to_q(latents))  # (B, heads, L, dim_head)
        k, v = (self._heads(t) for t in self.to_kv(x).chunk(2, dim=-1))
        if pos is not None:
            pos = self._heads(pos)
            k, v = k + pos, v + pos
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)


class PerceiverLayer(nn.Module):
    """Cross-attention and feed-forward, then self-attention and feed-forward, each residual."""

    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int) -> None:
        super().__init__()
        self.attn = LatentAttention(dim, heads, dim_head, cross=True)
        self.ff = feed_forward(dim, ff_mult)
        self.self_attn = LatentAttention(dim, heads, dim_head, cross=False)
        self.self_ff = feed_forward(dim, ff_mult)

    def forward(self, latents: torch.Tensor, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        latents = latents + self.attn(latents, x, pos)
        latents = latents + self.ff(latents)
        latents = latents + self.self_attn(latents)
        return latents + self.self_ff(latents)


class SpatialPerceiver(nn.Module):
    """Meta's ``PerceiverResampler`` as EdgeTAM configures it (self-attention on, position at keys and values).

    Args:
        dim: memory width (``mem_dim``).
        depth: layers, shared by global and window latents.
        num_latents: global latents (0: none).
        num_latents_2d: window latents, a square number (0: none).
        heads: attention heads.
        dim_head: width of each head.
        ff_mult: feed-forward expansion.
    """

    def __init__(self, dim: int, depth: int, num_latents: int, num_latents_2d: int, heads: int, dim_head: int,
                 ff_mult: int) -> None:
        super().__init__()
        self.num_latents, self.num_latents_2d = num_latents, num_latents_2d
        if num_latents:
            self.latents = nn.Parameter(torch.randn(num_latents, dim))
        if num_latents_2d:
            self.latents_2d = nn.Parameter(torch.randn(num_latents_2d, dim))
        self.position_encoding = PositionEmbeddingSine(dim)
        self.layers = nn.ModuleList(PerceiverLayer(dim, heads, dim_head, ff_mult) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.grid = round(num_latents_2d**0.5)

    def forward(self, memory: torch.Tensor, memory_pos: torch.Tensor) -> torch.Tensor:
        """memory and its position encoding (B, C, H, W) -> latents (B, num_latents + num_latents_2d, C): global
        latents first, then window latents in row-major order of their windows (see :meth:`positions`)."""
        latents = []
        if self.num_latents:
            latents.append(self._run(self.latents.expand(memory.shape[0], -1, -1), memory.flatten(2).transpose(1, 2),
                                     memory_pos.flatten(2).transpose(1, 2)))
        if self.num_latents_2d:
            latents.append(self._windows(memory))
        return torch.cat(latents, dim=1)

    def positions(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The latents' position encoding (1, num_latents + num_latents_2d, C), float32: zero for the global
        latents, the sine encoding of their window's cell for the window latents."""
        dim = self.norm.normalized_shape[0]
        parts = [torch.zeros(1, self.num_latents, dim, device=device)]
        if self.num_latents_2d:
            parts.append(self.position_encoding.encode(self.grid, self.grid, device).flatten(2).transpose(1, 2))
        return torch.cat(parts, dim=1)

    def _windows(self, memory: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = memory.shape
        grid, size = self.grid, height // self.grid
        windows = memory.reshape(batch, channels, grid, size, grid, size).permute(0, 2, 4, 3, 5, 1)
        windows = windows.reshape(batch * grid * grid, size * size, channels)  # (B * windows, tokens, C)
        latents = self.latents_2d.reshape(1, -1, 1, channels).expand(batch, -1, -1, -1).reshape(-1, 1, channels)
        for layer in self.layers:
            latents = layer(latents, windows)
        return self.norm(latents.reshape(batch, grid * grid, channels))

    def _run(self, latents: torch.Tensor, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            latents = layer(latents, x, pos)
        return self.norm(latents)
