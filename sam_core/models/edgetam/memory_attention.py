"""EdgeTAM's cross-attention to the memory: SAM 2's rotary attention whose positional keys are the perceiver's
latents, rotated on the window latents' own grid."""

from __future__ import annotations

import torch

from sam_core.models.sam2.video.rotary import RotaryAttention, rotate_pairs


class LatentGridAttention(RotaryAttention):
    """Rotary attention of image tokens (a square grid, rotated as in SAM 2) to memories of ``frame_tokens``
    latents each: the first ``frame_tokens - key_grid**2`` of a memory (global latents) are not rotated, the rest
    (window latents, row-major on a ``key_grid`` x ``key_grid`` grid) are rotated by their cell. Object pointers
    after the memories are not rotated (``num_k_exclude_rope``). Meta's ``RoPEAttentionv2``.

    Args:
        embedding_dim: Width of the queries and of the output.
        num_heads: Attention heads.
        kv_in_dim: Width of the memory tokens.
        rope_theta: Base of the rotation frequencies.
        key_grid: Side of the window latents' grid.
        frame_tokens: Latents per memory.
    """

    def __init__(self, embedding_dim: int, num_heads: int, kv_in_dim: int, rope_theta: float, key_grid: int,
                 frame_tokens: int) -> None:
        super().__init__(embedding_dim, num_heads, kv_in_dim=kv_in_dim, rope_theta=rope_theta)
        self.key_grid, self.frame_tokens = key_grid, frame_tokens

    def rotate_keys(self, keys: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """(B, heads, frames * frame_tokens, head_dim) -> the same with each memory's window latents rotated; the
        queries' angles (``cos``, ``sin``) are not used."""
        if keys.shape[-2] % self.frame_tokens:
            raise ValueError(f"{keys.shape[-2]} memory keys are not whole memories of {self.frame_tokens} latents")
        frames = keys.unflatten(-2, (-1, self.frame_tokens))  # (B, heads, frames, frame_tokens, head_dim)
        unrotated = self.frame_tokens - self.key_grid**2
        grid_cos, grid_sin = self.rotations(self.key_grid**2, keys.device)
        rotated = rotate_pairs(frames[..., unrotated:, :], grid_cos, grid_sin)
        return torch.cat([frames[..., :unrotated, :], rotated], dim=-2).flatten(2, 3)
