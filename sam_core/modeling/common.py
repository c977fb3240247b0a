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
        hidden = self.lin1(x)
        if isinstance(self.act, nn.GELU) and not (torch.is_grad_enabled() and hidden.requires_grad):
            # In place when no gradient is needed: ViT-B's hidden activation is 48 MB, and a second one
            # would be written (and, on a cold allocator, page-faulted) for nothing.
            hidden = torch.ops.aten.gelu_(hidden, approximate=self.act.approximate)
        else:
            hidden = self.act(hidden)
        return self.lin2(hidden)


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
