"""Memory attention: a frame's image tokens attend to themselves, then to the memories of other frames (spatial
memories and object pointers), both with rotary position encoding."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.models.sam2.video.rotary import RotaryAttention


class MemoryAttentionLayer(nn.Module):
    """Pre-norm transformer layer: self-attention, cross-attention to the memory, ReLU feed-forward.

    As in every official config, the positional encoding of the image tokens enters only at the input of
    the stack (see :class:`MemoryAttention`) and the memory's is added to its keys.

    Args:
        d_model: Width of the image tokens.
        mem_dim: Width of the memory tokens.
        num_heads: Heads of both attentions.
        mlp_dim: Hidden width of the feed-forward.
        rope_theta: Base of the rotary frequencies.
        cross_attention: The cross-attention to the memory, if not SAM 2's :class:`RotaryAttention` (EdgeTAM's
            rotates its keys on a grid of their own); called as ``cross_attention(q, k, v, num_k_exclude_rope=...)``.
    """

    def __init__(self, d_model: int, mem_dim: int, num_heads: int, mlp_dim: int, rope_theta: float = 10000.0,
                 cross_attention: nn.Module | None = None) -> None:
        super().__init__()
        self.self_attn = RotaryAttention(d_model, num_heads, rope_theta=rope_theta)
        self.cross_attn_image = cross_attention or RotaryAttention(d_model, num_heads, kv_in_dim=mem_dim,
                                                                   rope_theta=rope_theta)
        self.linear1 = nn.Linear(d_model, mlp_dim)
        self.linear2 = nn.Linear(mlp_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                num_unrotated_memory: int = 0) -> torch.Tensor:
        """tokens (B, N, d_model), memory and memory_pos (B, M, mem_dim) -> (B, N, d_model)."""
        normed = self.norm1(tokens)
        tokens = tokens + self.self_attn(normed, normed, normed)
        normed = self.norm2(tokens)
        tokens = tokens + self.cross_attn_image(normed, memory + memory_pos, memory,
                                                num_k_exclude_rope=num_unrotated_memory)
        return tokens + self.linear2(F.relu(self.linear1(self.norm3(tokens))))


class MemoryAttention(nn.Module):
    """A stack of :class:`MemoryAttentionLayer` and a final LayerNorm.

    Args:
        d_model: Width of the image tokens.
        mem_dim: Width of the memory tokens.
        num_layers: Number of layers.
        num_heads: Heads of every attention.
        mlp_dim: Hidden width of the feed-forwards.
        rope_theta: Base of the rotary frequencies.
        cross_attention: Makes each layer's cross-attention (see :class:`MemoryAttentionLayer`); None: SAM 2's.
    """

    # The image tokens' sine position encoding is added at the input, scaled down.
    INPUT_POS_SCALE = 0.1

    def __init__(self, d_model: int, mem_dim: int, num_layers: int, num_heads: int, mlp_dim: int,
                 rope_theta: float = 10000.0, cross_attention: Callable[[], nn.Module] | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(d_model, mem_dim, num_heads, mlp_dim, rope_theta,
                                 cross_attention() if cross_attention else None)
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor, tokens_pos: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor, num_obj_ptr_tokens: int = 0) -> torch.Tensor:
        """Image tokens (B, N, d_model) of a square grid with their position encoding, memory tokens
        (B, M, mem_dim) with theirs; the last ``num_obj_ptr_tokens`` memory tokens are object pointers
        (not rotated). Returns the conditioned tokens (B, N, d_model)."""
        tokens = tokens + self.INPUT_POS_SCALE * tokens_pos
        for layer in self.layers:
            tokens = layer(tokens, memory, memory_pos, num_obj_ptr_tokens)
        return self.norm(tokens)
