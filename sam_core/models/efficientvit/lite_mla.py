"""LiteMLA: EfficientViT's lightweight multi-scale linear attention (ReLU kernel), and the EfficientViT block that
pairs it with an MBConv."""

from __future__ import annotations

import torch
from torch import nn

from sam_core.models.efficientvit.blocks import MBConv, Residual
from sam_core.models.efficientvit.conv_norm import ConvNormAct

# Added to the attention's normaliser: a query whose kernel features are all zero gets a zero output.
_DENOMINATOR_EPS = 1e-15


class LiteMLA(nn.Module):
    """Multi-scale ReLU linear attention over the pixels of a feature map.

    A 1x1 convolution makes q, k, v for ``heads = channels / head_dim`` heads; each aggregation scale K derives
    another set of heads from them by a KxK depthwise convolution followed by a grouped 1x1 convolution (one
    group per head and q/k/v), which lets attention see local neighbourhoods. Every head then computes

        out_i = sum_j (relu(q_i) . relu(k_j)) v_j / sum_j (relu(q_i) . relu(k_j))

    in linear time as ``relu(q_i) @ (sum_j relu(k_j) v_j^T)``, and a 1x1 convolution with BatchNorm projects the
    concatenated heads back. On maps of at most ``head_dim`` pixels the quadratic form (the full pixel-by-pixel
    attention matrix) is cheaper, and is used there, as in the reference.
    """

    def __init__(self, channels: int, head_dim: int, scales: tuple[int, ...], norm_eps: float) -> None:
        """
        Args:
            channels: input and output channels.
            head_dim: channels per head.
            scales: kernel sizes of the multi-scale aggregations (the released SAM models use one: 5 or 3).
            norm_eps: the projection's BatchNorm eps.
        """
        super().__init__()
        heads = channels // head_dim
        inner = heads * head_dim
        self.head_dim = head_dim
        self.qkv = ConvNormAct(channels, 3 * inner, 1, norm=False)
        self.aggreg = nn.ModuleList(
            nn.Sequential(nn.Conv2d(3 * inner, 3 * inner, scale, padding=scale // 2, groups=3 * inner, bias=False),
                          nn.Conv2d(3 * inner, 3 * inner, 1, groups=3 * heads, bias=False))
            for scale in scales)
        self.proj = ConvNormAct(inner * (1 + len(scales)), channels, 1, norm_eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)
        qkv = torch.cat([qkv, *(aggregate(qkv) for aggregate in self.aggreg)], dim=1)
        batch, _, height, width = qkv.shape
        # (B, heads, 3 * head_dim, pixels): each head's q, k and v channels are consecutive.
        qkv = qkv.reshape(batch, -1, 3 * self.head_dim, height * width)
        q, k, v = qkv.split(self.head_dim, dim=2)
        q, k = torch.relu(q), torch.relu(k)
        if height * width > self.head_dim:
            out = linear_attention(q, k, v).to(qkv.dtype)
        else:
            out = quadratic_attention(q, k, v)
        return self.proj(out.reshape(batch, -1, height, width))


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """ReLU linear attention of (B, heads, d, N) kernel features q, k and values v: (B, heads, d, N)."""
    q, k, v = q.float(), k.float(), v.float()  # sums over every pixel: kept in float32 in any model dtype
    values_by_keys = v @ k.transpose(-1, -2)  # (B, heads, d_v, d_k)
    numerator = values_by_keys @ q
    denominator = k.sum(dim=-1, keepdim=True).transpose(-1, -2) @ q  # (B, heads, 1, N)
    return numerator / (denominator + _DENOMINATOR_EPS)


def quadratic_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The same attention through the (N, N) matrix of kernel similarities, normalised over the keys."""
    similarity = k.transpose(-1, -2) @ q  # (B, heads, keys, queries)
    weights = similarity / (similarity.sum(dim=2, keepdim=True) + _DENOMINATOR_EPS)
    return v @ weights


class EfficientViTBlock(nn.Module):
    """Global context then local detail: a residual LiteMLA, then a residual MBConv (BatchNorm on its
    projection only)."""

    def __init__(self, channels: int, head_dim: int, expand_ratio: float, scales: tuple[int, ...],
                 norm_eps: float) -> None:
        """
        Args:
            channels: width of the stage.
            head_dim: attention channels per head.
            expand_ratio: the MBConv's hidden width as a multiple of ``channels``.
            scales: kernel sizes of LiteMLA's multi-scale aggregations.
            norm_eps: the BatchNorms' eps.
        """
        super().__init__()
        self.context_module = Residual(LiteMLA(channels, head_dim, scales, norm_eps))
        self.local_module = Residual(MBConv(channels, channels, 1, expand_ratio, fewer_norm=True, norm_eps=norm_eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_module(self.context_module(x))
