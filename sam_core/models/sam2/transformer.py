"""SAM 2's two-way transformer: SAM's, with its MLPs stored as ``mlp.layers.{0,1}`` (Meta's SAM 2 names)."""

from __future__ import annotations

from torch import nn

from sam_core.layers.mlp import MLP
from sam_core.models.sam.transformer import TwoWayTransformer


class Sam2TwoWayTransformer(TwoWayTransformer):
    """The same computation as SAM's TwoWayTransformer; only the MLP module (and so its weight names) differs.

    Args:
        depth: Number of two-way blocks.
        embedding_dim: Token width.
        num_heads: Attention heads.
        mlp_dim: Hidden width of the token MLPs.
        activation: Activation of the token MLPs.
        attention_downsample_rate: Width reduction of the cross-attentions.
    """

    def __init__(self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int,
                 activation: type[nn.Module] = nn.ReLU, attention_downsample_rate: int = 2) -> None:
        super().__init__(depth, embedding_dim, num_heads, mlp_dim, activation, attention_downsample_rate)
        for layer in self.layers:
            layer.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2, activation=activation)
