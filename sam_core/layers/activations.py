"""Activation helpers shared by the blocks of every family."""

from __future__ import annotations

import torch
from torch import nn


def activate_in_place(activation: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``activation(x)``, overwriting ``x`` when that is safe: GELU with no gradient to record. Otherwise (other
    activations, or autograd needing ``x``) the usual out-of-place call.

    For a freshly computed ``x`` that nothing else reads: a second buffer (48 MB for ViT-B's MLP hidden
    state) would be allocated, and page-faulted, only to drop ``x`` right after. Same values either way.
    """
    if isinstance(activation, nn.GELU) and not (torch.is_grad_enabled() and x.requires_grad):
        return torch.ops.aten.gelu_(x, approximate=activation.approximate)
    return activation(x)
