"""The multi-layer perceptrons of every family: ``MLP`` (``layers.i``: decoder heads, SAM 2's blocks and
pointers) and ``MLPBlock`` (``lin1`` / ``lin2``: SAM's transformer feed-forward). The two differ in their
parameter names only, which the checkpoints fix."""

from __future__ import annotations

import torch
from torch import nn

from sam_core.fast_paths import fast_paths_enabled
from sam_core.layers.activations import activate_in_place


class MLP(nn.Module):
    """Linear layers with an activation between them (none after the last), optionally a final sigmoid.

    Args:
        input_dim: width of the input.
        hidden_dim: width of every hidden layer.
        output_dim: width of the output.
        num_layers: number of linear layers.
        activation: activation module class between layers, instantiated without arguments (SAM's heads: ReLU).
        sigmoid_output: whether to squash the output with a sigmoid.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 activation: type[nn.Module] = nn.ReLU, sigmoid_output: bool = False) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(d_in, d_out) for d_in, d_out in zip(dims[:-1], dims[1:]))
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = activate_in_place(self.act, layer(x))
        x = self.layers[-1](x)
        return torch.sigmoid(x) if self.sigmoid_output else x


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
