"""BatchNorm folded into the convolution before it, for inference: one convolution instead of a convolution and
a pass over its output. Shared by every family whose encoder is made of conv + BatchNorm units (TinyViT,
EfficientViT, ...): subclass :class:`FoldsBatchNorm` and say which convolution and BatchNorm it folds."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths_enabled
from sam_core.layers.derived_weights import DerivedWeights, HoldsDerivedWeights


def fold_batch_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of the one convolution equal to ``norm(conv(x))`` with the running statistics:
    ``w * g / sqrt(var + eps)`` and ``(b - mean) * g / sqrt(var + eps) + beta`` (``b`` the convolution's bias,
    if any). Differentiable in every tensor it reads."""
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    return conv.weight * scale[:, None, None, None], shift


class FoldsBatchNorm(HoldsDerivedWeights):
    """Base of a module that runs a ``Conv2d`` then a ``BatchNorm2d`` and, in eval mode on the fast paths,
    runs them as one convolution (:meth:`folded_conv`).

    The folded weights are computed once and reused until any of the tensors they come from changes
    (:class:`~sam_core.layers.derived_weights.DerivedWeights`): an in-place update (``load_state_dict`` copies
    into the tensors) bumps its version, a move or a cast makes a new tensor, and ``.to()`` / ``.half()`` drop
    the cache so that it does not hold on to the old device's memory. So loading a model folds it. When autograd
    records (a source requires grad), the folded weights are computed afresh each call, differentiably. In
    training mode BatchNorm normalises with batch statistics, so there is nothing to fold (:meth:`folds` is
    false).

    Subclasses call ``super().__init__()`` and implement :meth:`conv_and_norm`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._folded = DerivedWeights()

    def conv_and_norm(self) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
        """The convolution and the BatchNorm that follows it."""
        raise NotImplementedError

    def folds(self) -> bool:
        """Whether ``forward`` should run :meth:`folded_conv`: eval mode with the fast paths on."""
        return not self.training and fast_paths_enabled()

    def fold_sources(self) -> list[torch.Tensor]:
        """The tensors the folded weights are computed from (besides the BatchNorm's eps)."""
        conv, norm = self.conv_and_norm()
        return [t for t in (conv.weight, conv.bias, norm.weight, norm.bias, norm.running_mean, norm.running_var)
                if t is not None]

    def folded_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the single convolution equal to the convolution then the BatchNorm."""
        conv, norm = self.conv_and_norm()
        return self._folded.get(self.fold_sources(), lambda: fold_batch_norm(conv, norm), constants=(norm.eps,))

    def folded_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution and the BatchNorm applied to ``x`` as one convolution."""
        conv, _ = self.conv_and_norm()
        weight, bias = self.folded_weights()
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
