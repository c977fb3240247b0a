"""Old path, kept as a re-export: the blocks are now one file each, ``sam_core.layers.mlp`` (``MLPBlock``,
``MLP``), ``sam_core.layers.norms`` (``LayerNorm2d``) and ``sam_core.layers.activations``
(``activate_in_place``)."""

from sam_core.layers.activations import activate_in_place
from sam_core.layers.mlp import MLPBlock
from sam_core.layers.norms import LayerNorm2d

__all__ = ["LayerNorm2d", "MLPBlock", "activate_in_place"]
