"""A bias-free convolution followed by BatchNorm, foldable into one convolution for inference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths_enabled


class ConvBN(nn.Module):
    """``bn(c(x))``: TinyViT's convolution unit, under its parameter names (``c``, ``bn``).

    In eval mode with the fast paths on, the BatchNorm is folded into the convolution: one convolution with
    weight ``w * g / sqrt(var + eps)`` and bias ``b - mean * g / sqrt(var + eps)``. The folded weights are
    computed once and reused until any of the tensors they come from changes (a checkpoint is loaded, the
    model is moved or cast), so loading a model folds it. In training mode BatchNorm normalises with batch
    statistics, so there is nothing to fold; with the fast paths off the two layers run as they are.

    Args:
        in_chans: input channels.
        out_chans: output channels.
        kernel_size: side of the square kernel.
        stride: stride of the convolution.
        groups: convolution groups (``in_chans`` for a depthwise convolution).
    """

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.c = nn.Conv2d(in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)
        self._folded: tuple[tuple[object, ...], torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not fast_paths_enabled():
            return self.bn(self.c(x))
        weight, bias = self.folded_weights()
        return F.conv2d(x, weight, bias, self.c.stride, self.c.padding, self.c.dilation, self.c.groups)

    def folded_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the single convolution equal to ``bn(c(x))`` with the running statistics."""
        sources = (self.c.weight, self.bn.weight, self.bn.bias, self.bn.running_mean, self.bn.running_var)
        tracks_gradient = torch.is_grad_enabled() and any(t.requires_grad for t in sources)
        # In-place updates (load_state_dict copies into the tensors) bump _version; moves and casts make
        # new tensors.
        key = tuple((id(t), t._version, t.device, t.dtype) for t in sources) + (self.bn.eps,)
        if not tracks_gradient and self._folded is not None and self._folded[0] == key:
            return self._folded[1], self._folded[2]
        with torch.set_grad_enabled(tracks_gradient):
            scale = self.bn.weight * torch.rsqrt(self.bn.running_var + self.bn.eps)
            weight = self.c.weight * scale[:, None, None, None]
            bias = self.bn.bias - self.bn.running_mean * scale
        if not tracks_gradient:
            self._folded = (key, weight, bias)
        return weight, bias

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 (nn.Module's signature)
        self._folded = None  # the cached tensors would stay on the old device / dtype
        return super()._apply(fn, recurse)
