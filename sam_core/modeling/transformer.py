"""Two-way transformer: prompt tokens and image embeddings attend to each other in turn."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.modeling.common import MLPBlock


class Attention(nn.Module):
    """Multi-head attention whose inner width may be reduced by ``downsample_rate`` (for cross-attention)."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        internal_dim = embedding_dim // downsample_rate
        if internal_dim % num_heads:
            raise ValueError(f"num_heads {num_heads} must divide the attention width {internal_dim}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embedding_dim, internal_dim)
        self.k_proj = nn.Linear(embedding_dim, internal_dim)
        self.v_proj = nn.Linear(embedding_dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, embedding_dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        return x.reshape(batch, tokens, self.num_heads, width // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q: (Bq, Nq, C), k and v: (Bk, Nk, C); a batch of 1 on either side is shared by the other's batch."""
        q = self._split_heads(self.q_proj(q))
        k = self._split_heads(self.k_proj(k))
        v = self._split_heads(self.v_proj(v))
        batch = max(q.shape[0], k.shape[0])
        out = F.scaled_dot_product_attention(q.expand(batch, -1, -1, -1), k.expand(batch, -1, -1, -1),
                                             v.expand(batch, -1, -1, -1))
        batch, _, tokens, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, -1))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image cross-attention, token MLP, then image->token cross-attention."""

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int, activation: type[nn.Module] = nn.ReLU,
                 attention_downsample_rate: int = 2, skip_first_layer_pe: bool = False) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The first layer's queries are the prompt embeddings themselves, so adding their PE again is skipped
        # and the attention output replaces them instead of being a residual.
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        keys_with_pe = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, keys_with_pe, keys))
        queries = self.norm3(queries + self.mlp(queries))
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys_with_pe, queries + query_pe, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Stack of TwoWayAttentionBlocks and a final token->image attention."""

    def __init__(self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int,
                 activation: type[nn.Module] = nn.ReLU, attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, activation, attention_downsample_rate,
                                 skip_first_layer_pe=i == 0)
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: torch.Tensor, image_pe: torch.Tensor,
                point_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embedding, image_pe: (B or 1, C, H, W); point_embedding: (B, N, C) -> (tokens, image tokens).

        A single image embedding is shared by all B prompt sets: the first layer's image-side projections then
        run once, not B times, since the image tokens only become prompt-dependent after that layer.
        """
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        attended = self.final_attn_token_to_image(queries + point_embedding, keys + key_pe, keys)
        return self.norm_final_attn(queries + attended), keys
