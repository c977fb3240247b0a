"""Two-way transformer: prompt tokens and image embeddings attend to each other in turn."""

from __future__ import annotations

import torch
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

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q: (Bq, Nq, C), k and v: (Bk, Nk, C); a batch of 1 on either side is shared by the other's batch."""
        q, k, v = self.q_proj(q), self.k_proj(k), self.v_proj(v)
        if q.shape[1] <= k.shape[1]:
            out = _attend_few_queries(q, k, v, self.num_heads)
        else:
            out = _attend_few_keys(q, k, v, self.num_heads)
        return self.out_proj(out)


# The decoder attends between a handful of prompt tokens and thousands of image tokens. Splitting heads
# the usual way copies the image side into (B, heads, N, head_dim) and runs many tiny attention problems.
# Instead the few tokens are spread into a block-diagonal matrix, (heads * few, width), whose row for head h
# holds only head h's channels; one matrix product against the image tokens in their natural layout then
# gives every head's scores. The zero blocks cost extra multiply-adds on the small side only.


def _block_diagonal(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads * N, C) where row h * N + i keeps only head h's channels of token i."""
    batch, tokens, width = x.shape
    head_dim = width // num_heads
    heads = torch.arange(num_heads, device=x.device)
    out = x.new_zeros((batch, num_heads, tokens, num_heads, head_dim))
    out[:, heads, :, heads] = x.view(batch, tokens, num_heads, head_dim).permute(2, 0, 1, 3)
    return out.view(batch, num_heads * tokens, width)


def _attend_few_queries(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Attention of a few queries (B, Nq, C) over many keys (B or 1, Nk, C) -> (B, Nq, C)."""
    batch, num_queries, width = q.shape
    head_dim = width // num_heads
    rows = num_heads * num_queries
    queries = _block_diagonal(q * head_dim**-0.5, num_heads)  # (B, heads * Nq, C)
    if k.shape[0] == 1:  # keys shared by the whole batch: one large product instead of B small ones
        probs = (queries.reshape(-1, width) @ k[0].T).softmax(dim=-1)
        out = (probs @ v[0]).view(batch, rows, width)
    else:
        out = torch.softmax(queries @ k.transpose(1, 2), dim=-1) @ v
    # Row (h, i) holds head h's output for query i in channel block h.
    out = out.view(batch, num_heads, num_queries, num_heads, head_dim).diagonal(dim1=1, dim2=3)
    return out.permute(0, 1, 3, 2).reshape(batch, num_queries, width)


def _attend_few_keys(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Attention of many queries (B or 1, Nq, C) over a few keys (B, Nk, C) -> (B, Nq, C).

    Scores are laid out keys-first, (B, heads, Nk, Nq), so the softmax runs along a non-innermost axis,
    vectorised over the queries; a softmax along an innermost axis of a handful of keys is very slow.
    """
    batch, num_keys, width = k.shape
    head_dim = width // num_heads
    keys = _block_diagonal(k * head_dim**-0.5, num_heads)  # (B, heads * Nk, C)
    values = _block_diagonal(v, num_heads)  # (B, heads * Nk, C)
    if q.shape[0] == 1:  # queries shared by the whole batch: one product over all prompts
        scores = keys.view(-1, width) @ q[0].T  # (B * heads * Nk, Nq)
    else:
        scores = keys @ q.transpose(1, 2)  # (B, heads * Nk, Nq)
    probs = scores.view(batch, num_heads, num_keys, -1).softmax(dim=2).view(batch, num_heads * num_keys, -1)
    return probs.transpose(1, 2) @ values


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
        # The attention output comes first: it has the full batch, while the keys may still be one shared copy.
        keys = self.norm4(self.cross_attn_image_to_token(keys_with_pe, queries + query_pe, queries) + keys)
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
