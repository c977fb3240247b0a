"""The multi-layer perceptron SAM 2 uses everywhere: Hiera blocks, the decoder transformer and the heads."""

from __future__ import annotations

import torch
from torch import nn

from sam_core.layers.common import activate_in_place


class MLP(nn.Module):
    """Linear layers with an activation between them (none after the last), optionally a final sigmoid.

    Args:
        input_dim: Width of the input.
        hidden_dim: Width of every hidden layer.
        output_dim: Width of the output.
        num_layers: Number of linear layers.
        activation: Activation between layers.
        sigmoid_output: Whether to squash the output with a sigmoid.
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
