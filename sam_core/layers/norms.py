"""Normalisation layers not in torch: LayerNorm over the channels of an image-shaped tensor."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a BxCxHxW tensor, at every pixel.

    Args:
        num_channels: number of channels C.
        eps: added to the variance for numerical stability.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps
        self.normalized_shape = (num_channels,)  # a constant, not x.shape[1]: ONNX tracing keeps it static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A channels-last view turns it into the usual LayerNorm over the last axis.
        normed = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return normed.permute(0, 3, 1, 2)
