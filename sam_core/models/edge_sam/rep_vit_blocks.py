"""RepViT's building blocks: a RepVGG-style depthwise token mixer, squeeze-excite, and a residual channel mixer.

Module and parameter names are EdgeSAM's (``token_mixer.0.conv.c``, ``channel_mixer.m.0.bn``...), so its
checkpoints load as they are. In eval mode with the fast paths on (``sam_core.fast_paths``), every BatchNorm is
folded into its convolution, the RepVGG branches (3x3, 1x1 and identity) into one 3x3 convolution, and the
blocks run on channels-last (B, H, W, C) tensors (``forward_channels_last``): 1x1 convolutions are then matrix
products over the channels, and depthwise convolutions run on the same memory viewed as NCHW (oneDNN's
channels-last kernels, several times faster than on NCHW tensors on CPU). The plain path runs the layers as
written, on NCHW tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths_enabled
from sam_core.layers.activations import activate_in_place
from sam_core.layers.derived_weights import DerivedWeights, HoldsDerivedWeights, records_gradient
from sam_core.models.tiny_vit.conv_bn import ConvBN


def squeeze_channels(channels: int) -> int:
    """Hidden width of a block's squeeze-excite: a quarter of the channels rounded to a multiple of 8, at
    least 8 (timm's ``make_divisible`` without its 90% floor, which RepViT's reference uses)."""
    return max(8, int(channels / 4 + 4) // 8 * 8)


def _fast(module: nn.Module) -> bool:
    return fast_paths_enabled() and not module.training


def pointwise(x: torch.Tensor, conv: ConvBN) -> torch.Tensor:
    """A 1x1 conv-BN (BatchNorm folded) on channels-last (B, H, W, C_in) -> (B, H, W, C_out): a matrix product."""
    weight, bias = conv.folded_weights()
    return F.linear(x, weight.flatten(1), bias)


def depthwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """A 3x3 depthwise convolution of channels-last (B, H, W, C) -> (B, H', W', C), run on the NCHW view of the
    same memory (oneDNN keeps the channels-last layout, so the result's NHWC view is contiguous)."""
    out = F.conv2d(x.permute(0, 3, 1, 2), weight, bias, stride=stride, padding=1, groups=weight.shape[0])
    return out.permute(0, 2, 3, 1)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> contiguous (B, H, W, C) (no copy for a channels-last tensor)."""
    return x.permute(0, 2, 3, 1).contiguous()


def channels_last_copy(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> a new contiguous (B, H, W, C) tensor, for fast paths that work in place."""
    return x.permute(0, 2, 3, 1).clone(memory_format=torch.contiguous_format)


def from_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> (B, C, H, W) in the channels-last memory format (a view)."""
    return x.permute(0, 3, 1, 2)


class SqueezeExcite(nn.Module):
    """``x * sigmoid(fc2(relu(fc1(mean(x)))))``, a per-channel gate from the global average.

    Args:
        channels: input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = squeeze_channels(channels)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        if not _fast(self):
            gate = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))
            return x * torch.sigmoid(gate)
        # A copy: the channels-last path works in place, and x belongs to the caller.
        return from_channels_last(self.forward_channels_last(channels_last_copy(x)))

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """Fast path on (B, H, W, C). The 1x1 convolutions on a 1x1 map are matrix products on (B, C); the gate
        scales ``x`` in place when nothing records gradients (the blocks pass fresh activations)."""
        pooled = x.mean((1, 2))
        hidden = F.relu(F.linear(pooled, self.fc1.weight.flatten(1), self.fc1.bias))
        gate = torch.sigmoid(F.linear(hidden, self.fc2.weight.flatten(1), self.fc2.bias))[:, None, None, :]
        return x * gate if records_gradient(x, gate) else x.mul_(gate)


class RepVGGDW(HoldsDerivedWeights):
    """``conv(x) + conv1(x) + x``: depthwise 3x3 and 1x1 convolutions, each with BatchNorm, and the identity.

    Fast path: one depthwise 3x3 convolution whose kernel is the sum of the three branches' (BatchNorms folded,
    the 1x1 kernel and the identity at the centre tap) and whose bias is the sum of the folded biases.

    Args:
        channels: input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = ConvBN(channels, channels, 3, groups=channels)
        self.conv1 = ConvBN(channels, channels, 1, groups=channels)
        self._merged = DerivedWeights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        if not _fast(self):
            return self.conv(x) + self.conv1(x) + x
        weight, bias = self.merged_weights()
        return F.conv2d(x, weight, bias, padding=1, groups=weight.shape[0])

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """Fast path on (B, H, W, C)."""
        return depthwise(x, *self.merged_weights())

    def merged_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel (C, 1, 3, 3) and bias (C,) of the single convolution equal to the three branches."""
        def merge() -> tuple[torch.Tensor, torch.Tensor]:
            weight3, bias3 = self.conv.folded_weights()
            weight1, bias1 = self.conv1.folded_weights()
            weight = weight3.clone()
            weight[:, :, 1, 1] += weight1[:, :, 0, 0] + 1.0  # the 1x1 branch and the identity: centre taps
            return weight, bias3 + bias1

        return self._merged.get([*self.conv.fold_sources(), *self.conv1.fold_sources()], merge,
                                constants=(self.conv.bn.eps, self.conv1.bn.eps))


class ChannelMixer(nn.Module):
    """``x + m(x)``, m = 1x1 conv-BN to ``hidden`` channels, GELU, 1x1 conv-BN back (an inverted bottleneck).

    Args:
        channels: input and output channels.
        hidden: channels of the expansion (twice ``channels`` in RepViT).
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.m = nn.Sequential(ConvBN(channels, hidden), nn.GELU(), ConvBN(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        if not _fast(self):
            return x + self.m(x)
        # A copy: the channels-last path accumulates into its input, and x belongs to the caller.
        return from_channels_last(self.forward_channels_last(channels_last_copy(x)))

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """Fast path on (B, H, W, C): two matrix products over the channels, GELU in place between them.

        Without autograd, the second product accumulates straight into ``x`` (the token mixer's fresh output),
        which saves the pass that copies the bias into a new output and the pass that adds the residual.
        """
        expand, act, project = self.m
        hidden = activate_in_place(act, pointwise(x, expand))
        if records_gradient(x, hidden):
            return pointwise(hidden, project) + x
        weight, bias = project.folded_weights()
        x = x.contiguous()  # a no-op for the blocks' own activations; the view below must alias x
        x.view(-1, x.shape[-1]).addmm_(hidden.view(-1, hidden.shape[-1]), weight.flatten(1).t())
        return x.add_(bias)


class RepViTBlock(nn.Module):
    """One RepViT block: a token mixer (spatial, depthwise) then a residual channel mixer.

    With ``in_chans == out_chans`` the token mixer is a RepVGG depthwise block at stride 1 (plus squeeze-excite);
    otherwise the block downsamples: a depthwise 3x3 stride-2 conv-BN (plus squeeze-excite) and a 1x1 conv-BN
    to ``out_chans``. The channel mixer expands to twice ``out_chans``.

    Args:
        in_chans: input channels.
        out_chans: output channels.
        use_se: whether the token mixer ends with squeeze-excite.
    """

    def __init__(self, in_chans: int, out_chans: int, use_se: bool) -> None:
        super().__init__()
        gate = SqueezeExcite(in_chans) if use_se else nn.Identity()
        self.downsamples = in_chans != out_chans
        if self.downsamples:
            self.token_mixer = nn.Sequential(ConvBN(in_chans, in_chans, 3, stride=2, groups=in_chans), gate,
                                             ConvBN(in_chans, out_chans))
        else:
            self.token_mixer = nn.Sequential(RepVGGDW(in_chans), gate)
        self.channel_mixer = ChannelMixer(out_chans, 2 * out_chans)

    def forward(self, x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, out_chans, H, W), or H/2 x W/2 when the block downsamples; with
        ``channels_last`` (the encoder's fast path) (B, H, W, C) in and out. The encoder calls the block as a
        module either way, so that forward hooks (sam-serve's progress) see every block."""
        if channels_last:
            return self.forward_channels_last(x)
        if not _fast(self):
            return self.channel_mixer(self.token_mixer(x))
        return from_channels_last(self.forward_channels_last(to_channels_last(x)))

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """Fast path on channels-last tensors: (B, H, W, in_chans) -> (B, H', W', out_chans). ``x`` is left as it
        is (the token mixer's first convolution makes a new tensor; the rest works in place on new tensors)."""
        if self.downsamples:
            spatial, gate, project = self.token_mixer
            x = depthwise(x, *spatial.folded_weights(), stride=2)
            if isinstance(gate, SqueezeExcite):
                x = gate.forward_channels_last(x)
            x = pointwise(x, project)
        else:
            repvgg, gate = self.token_mixer
            x = repvgg.forward_channels_last(x)
            if isinstance(gate, SqueezeExcite):
                x = gate.forward_channels_last(x)
        return self.channel_mixer.forward_channels_last(x)
