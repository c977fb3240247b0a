"""ConvNormAct: a convolution, an optional BatchNorm and an optional activation, the unit every EfficientViT
block is made of; with BatchNorm folded into the convolution on the fast path."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths_enabled


def tanh_gelu() -> nn.Module:
    """EfficientViT's "gelu": the tanh approximation (the released weights were trained with it)."""
    return nn.GELU(approximate="tanh")


class ConvNormAct(nn.Module):
    """Conv2d with "same" padding, then BatchNorm (optional), then tanh-GELU (optional).

    In eval mode the fast path runs one convolution whose weights and bias have the BatchNorm folded in
    (``w * gamma / sqrt(var + eps)``, ``(b - mean) * gamma / sqrt(var + eps) + beta``): the same affine map,
    without a pass over the activations. The folded tensors are computed once and reused until a weight or
    running statistic changes (loading, training, ``.to()``). Training mode always runs the plain path, as
    BatchNorm then normalises with batch statistics.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, bias: bool = False, norm: bool = True, act: bool = False,
                 norm_eps: float = 1e-6) -> None:
        """
        Args:
            in_channels, out_channels: channels in and out.
            kernel_size: odd square kernel, padded to keep the size (at stride 1).
            stride: convolution stride.
            groups: convolution groups (``in_channels`` for a depthwise convolution).
            bias: whether the convolution has a bias.
            norm: whether a BatchNorm follows.
            act: whether a tanh-GELU ends the unit.
            norm_eps: the BatchNorm's eps.
        """
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups,
                              bias=bias)
        self.norm = nn.BatchNorm2d(out_channels, eps=norm_eps) if norm else None
        self.act = tanh_gelu() if act else None
        self._folded: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None and not self.training and fast_paths_enabled():
            weight, bias = self.folded_weights()
            x = F.conv2d(x, weight, bias, self.conv.stride, self.conv.padding, self.conv.dilation, self.conv.groups)
        else:
            x = self.conv(x)
            if self.norm is not None:
                x = self.norm(x)
        return x if self.act is None else self.act(x)

    def folded_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The convolution's weight and bias with the BatchNorm (running statistics) folded in."""
        sources = [t for t in (self.conv.weight, self.conv.bias, self.norm.weight, self.norm.bias,
                               self.norm.running_mean, self.norm.running_var) if t is not None]
        if torch.is_grad_enabled() and any(t.requires_grad for t in sources):
            return self._fold()  # differentiable, so not cached
        # A tensor changed in place bumps its version; a moved or reloaded one has new storage.
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in sources) + (self.norm.eps,)
        if self._folded is None or self._folded[0] != key:
            with torch.no_grad():
                self._folded = (key, *self._fold())
        return self._folded[1], self._folded[2]

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        norm = self.norm
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        shift = norm.bias - norm.running_mean * scale
        if self.conv.bias is not None:
            shift = shift + self.conv.bias * scale
        return self.conv.weight * scale[:, None, None, None], shift
