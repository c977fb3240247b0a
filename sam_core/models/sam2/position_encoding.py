"""Sine position encoding of a feature grid (the FPN neck's, in the style of DETR)."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """Fixed sin/cos encoding of normalised row and column indexes: half the channels encode the row,
    half the column, each as interleaved sin/cos pairs over geometrically spaced frequencies.

    Args:
        num_pos_feats: Channels of the encoding (even).
        temperature: Base of the frequency progression.
    """

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        # Encodings depend only on the grid size; computed once per size and device.
        self._cache: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def encode(self, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The (1, C, H, W) float32 encoding of an HxW grid."""
        device = torch.device(device)
        key = (height, width, device)
        if key not in self._cache:
            self._cache[key] = self._compute(height, width, device)
        return self._cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encoding for a (B, C, H, W) feature map, (B, num_pos_feats, H, W) in its dtype."""
        encoding = self.encode(x.shape[-2], x.shape[-1], x.device).to(x.dtype)
        return encoding.expand(x.shape[0], -1, -1, -1)

    def _compute(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        per_axis = self.num_pos_feats // 2
        # Indexes 1..N divided by N (+ eps, as in the reference) span (0, 2 pi].
        scale, eps = 2 * math.pi, 1e-6
        rows = torch.arange(1, height + 1, dtype=torch.float32, device=device) / (height + eps) * scale
        cols = torch.arange(1, width + 1, dtype=torch.float32, device=device) / (width + eps) * scale
        # Channel pairs (2k, 2k + 1) share the frequency temperature^(-2k / per_axis): sin then cos.
        exponent = 2 * (torch.arange(per_axis, dtype=torch.float32, device=device) // 2) / per_axis
        dim_t = self.temperature**exponent

        def sin_cos(positions: torch.Tensor) -> torch.Tensor:  # (N,) -> (N, per_axis)
            angles = positions[:, None] / dim_t
            return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

        pos_y = sin_cos(rows).T[:, :, None].expand(-1, height, width)  # (per_axis, H, W)
        pos_x = sin_cos(cols).T[:, None, :].expand(-1, height, width)
        return torch.cat([pos_y, pos_x], dim=0)[None]
