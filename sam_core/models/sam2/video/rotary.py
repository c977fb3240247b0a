"""Two-dimensional rotary position encoding (RoPE) and the attention that applies it (SAM 2's memory attention).

Each head's channels are taken as pairs (2i, 2i + 1), i.e. complex numbers; the first half of the pairs is
rotated by angles proportional to the token's column, the second half by angles proportional to its row.
The dot product of a rotated query and a rotated key then depends on their relative position only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def axial_rotation_angles(head_dim: int, width: int, height: int, theta: float = 10000.0,
                          scale: float = 1.0) -> torch.Tensor:
    """Rotation angle of every channel pair at every token of a (height, width) grid, row-major:
    (height * width, head_dim / 2); pairs [0, head_dim / 4) turn with the column, the rest with the row.
    ``scale`` multiplies the positions (SAM 3's ViT: a grid larger than the one it was trained at is
    interpolated onto it)."""
    exponents = torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim
    frequencies = 1.0 / theta**exponents
    index = torch.arange(width * height, dtype=torch.float32)
    columns, rows = index % width, torch.div(index, width, rounding_mode="floor")
    if scale != 1.0:
        columns, rows = columns * scale, rows * scale
    return torch.cat([torch.outer(columns, frequencies), torch.outer(rows, frequencies)], dim=-1)


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of x (..., N, head_dim) by angles given as cos, sin (N, head_dim / 2), in float32
    (the result in x's dtype)."""
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)


class RotaryAttention(nn.Module):
    """Multi-head attention whose queries and keys are rotated by their 2-D grid position.

    The queries are a square grid of tokens. The keys are whole grids of the same size, one after the other
    (memories of several frames: each rotated like the queries), optionally followed by tokens that carry no
    position (object pointers), which are not rotated.

    Args:
        embedding_dim: Width of the queries and of the output.
        num_heads: Attention heads; the head width must be a multiple of 4.
        kv_in_dim: Width of the keys and values (default ``embedding_dim``).
        rope_theta: Base of the rotation frequencies.
    """

    def __init__(self, embedding_dim: int, num_heads: int, kv_in_dim: int | None = None,
                 rope_theta: float = 10000.0) -> None:
        super().__init__()
        kv_in_dim = embedding_dim if kv_in_dim is None else kv_in_dim
        if embedding_dim % num_heads or (embedding_dim // num_heads) % 4:
            raise ValueError(f"embedding_dim {embedding_dim} / num_heads {num_heads} must be a multiple of 4")
        self.num_heads = num_heads
        self.rope_theta = rope_theta
        self.q_proj = nn.Linear(embedding_dim, embedding_dim)
        self.k_proj = nn.Linear(kv_in_dim, embedding_dim)
        self.v_proj = nn.Linear(kv_in_dim, embedding_dim)
        self.out_proj = nn.Linear(embedding_dim, embedding_dim)
        # cos and sin of the rotation angles per (grid side, device); they depend on nothing else.
        self._rotations: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def rotations(self, num_tokens: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) of the angles for a square grid of ``num_tokens`` tokens, each (num_tokens, head_dim / 2)."""
        side = math.isqrt(num_tokens)
        if side * side != num_tokens:
            raise ValueError(f"rotary attention needs a square grid of queries, got {num_tokens} tokens")
        key = (side, device)
        if key not in self._rotations:
            head_dim = self.q_proj.out_features // self.num_heads
            angles = axial_rotation_angles(head_dim, side, side, self.rope_theta).to(device)
            self._rotations[key] = (angles.cos(), angles.sin())
        return self._rotations[key]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0,
                ) -> torch.Tensor:
        """q (B, N, C), k and v (B, M, kv_in_dim) -> (B, N, C). The first M - ``num_k_exclude_rope`` keys are
        whole grids of N tokens; the last ``num_k_exclude_rope`` are not rotated."""
        q = self._split_heads(self.q_proj(q))  # (B, heads, N, head_dim)
        k = self._split_heads(self.k_proj(k))
        v = self._split_heads(self.v_proj(v))
        num_rotated = k.shape[-2] - num_k_exclude_rope
        cos, sin = self.rotations(q.shape[-2], q.device)
        q = rotate_pairs(q, cos, sin)
        if num_rotated:
            k = torch.cat([self.rotate_keys(k[..., :num_rotated, :], cos, sin), k[..., num_rotated:, :]], dim=-2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).flatten(2))

    def rotate_keys(self, keys: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """The keys that carry a position (B, heads, M, head_dim), rotated: whole grids of the queries' size, each
        by the queries' angles (``cos``, ``sin``: (N, head_dim / 2))."""
        num_rotated, num_queries = keys.shape[-2], cos.shape[0]
        if num_rotated % num_queries:
            raise ValueError(f"{num_rotated} positional keys are not whole grids of {num_queries} tokens")
        repeats = num_rotated // num_queries
        return rotate_pairs(keys, cos.repeat(repeats, 1), sin.repeat(repeats, 1))

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
