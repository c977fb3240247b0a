"""Object pointers: one vector per object and frame, from the mask decoder's output token, that later frames
attend to beside the spatial memories, tagged with how far (in frames) they lie from the frame being tracked."""

from __future__ import annotations

import torch


def sine_encoding_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Transformer sine encoding of scalar positions (P,) -> (P, dim): dim / 2 sines, then dim / 2 cosines,
    of the positions over geometrically spaced frequencies (channel pairs share one)."""
    half = dim // 2
    exponent = 2 * (torch.arange(half, dtype=torch.float32, device=positions.device) // 2) / half
    angles = positions.unsqueeze(-1) / temperature**exponent
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def pointer_tokens(pointers: torch.Tensor, pointer_pos: torch.Tensor, mem_dim: int,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pointers (B, P, C) and their position encoding (B, P, mem_dim) as memory tokens of width mem_dim: each
    pointer is cut into C / mem_dim consecutive tokens, which share its position encoding."""
    batch, count, channels = pointers.shape
    pieces = channels // mem_dim
    tokens = pointers.reshape(batch, count * pieces, mem_dim)
    return tokens, pointer_pos.repeat_interleave(pieces, dim=1)
