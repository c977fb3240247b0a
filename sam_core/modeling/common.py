"""Small building blocks shared by the encoder and the decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLPBlock(nn.Module):
    """Two linear layers with an activation between them (the transformer feed-forward)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(activate(self.act, self.lin1(x)))


def activate(activation: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``activation(x)`` for a freshly computed ``x``: in place for GELU when no gradient is needed, since
    a second copy (48 MB for ViT-B's MLP hidden state) would be written, and page-faulted, for nothing."""
    if isinstance(activation, nn.GELU) and not (torch.is_grad_enabled() and x.requires_grad):
        return torch.ops.aten.gelu_(x, approximate=activation.approximate)
    return activation(x)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a BxCxHxW tensor."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last view lets the fused layer_norm kernel do the work.
        normed = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return normed.permute(0, 3, 1, 2)
