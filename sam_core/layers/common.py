"""Small building blocks shared by the encoder and the decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths_enabled


class MLPBlock(nn.Module):
    """Two linear layers with an activation between them (the transformer feed-forward).

    Args:
        embedding_dim: input and output width.
        mlp_dim: hidden width.
        act: activation module class, instantiated without arguments.
    """

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.lin1(x)
        hidden = activate_in_place(self.act, hidden) if fast_paths_enabled() else self.act(hidden)
        return self.lin2(hidden)


def activate_in_place(activation: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``activation(x)``, overwriting ``x`` when that is safe: GELU with no gradient to record. Otherwise (other
    activations, or autograd needing ``x``) the usual out-of-place call.

    For a freshly computed ``x`` that nothing else reads: a second buffer (48 MB for ViT-B's MLP hidden
    state) would be allocated, and page-faulted, only to drop ``x`` right after. Same values either way.
    """
    if isinstance(activation, nn.GELU) and not (torch.is_grad_enabled() and x.requires_grad):
        return torch.ops.aten.gelu_(x, approximate=activation.approximate)
    return activation(x)


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
