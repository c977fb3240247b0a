"""Two-way transformer: prompt tokens and image embeddings attend to each other in turn.

The cross-attentions have two implementations (see ``sam_core.fast_paths``): the plain one, ``Attention``
called as a module (project queries, keys and values, attend, project out), and the default fast one,
``Attention.tokens_to_image`` / ``Attention.image_to_tokens``, which moves the image-side projections onto
the few prompt tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sam_core.fast_paths import fast_paths_enabled
from sam_core.layers.mlp import MLPBlock


@dataclass
class ImageProjections:
    """A layer's image-side projections for the fast path, each (1 or B, N, C / downsample_rate).

    They depend on the image tokens alone; for the first layer that means on the image alone, so an image
    decoded with many prompts computes them once (``TwoWayTransformer.project_first_layer``).
    """

    token_to_image_keys: torch.Tensor  # cross_attn_token_to_image.k_proj(tokens + pe)
    token_to_image_values: torch.Tensor  # cross_attn_token_to_image.v_proj(tokens)
    image_to_token_queries: torch.Tensor  # cross_attn_image_to_token.q_proj(tokens + pe)


@dataclass
class ImageTokens:
    """An image embedding in token-major layout, (1 or B, H*W, C), with its positional encoding added once.

    Built once per image and shared by every prompt decoded on it: the (C, H, W) maps are transposed to
    contiguous tokens here, rather than read through a transposed view by every operation that follows.
    """

    tokens: torch.Tensor  # (1 or B, N, C)
    pe: torch.Tensor  # (1, N, C)
    tokens_with_pe: torch.Tensor  # tokens + pe
    grid: tuple[int, int]  # (H, W)
    # Set by TwoWayTransformer.project_first_layer for an image shared by many prompts; read by the fast path.
    first_layer: ImageProjections | None = None

    @classmethod
    def from_maps(cls, image_embedding: torch.Tensor, image_pe: torch.Tensor) -> ImageTokens:
        """From (1 or B, C, H, W) embeddings and a (1, C, H, W) positional encoding."""
        tokens = image_embedding.flatten(2).transpose(1, 2).contiguous()
        pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        return cls(tokens, pe, tokens + pe, tuple(image_embedding.shape[-2:]))

    def with_tokens(self, tokens: torch.Tensor) -> ImageTokens:
        """The same grid and positional encoding with new tokens."""
        return ImageTokens(tokens, self.pe, tokens + self.pe, self.grid)


class Attention(nn.Module):
    """Multi-head attention whose inner width may be reduced by ``downsample_rate`` (for cross-attention).

    ``forward`` is the attention of the paper. On the fast path, the decoder's cross-attentions, between a
    handful of prompt tokens and thousands of image tokens, use ``tokens_to_image`` and ``image_to_tokens``
    instead: the same attention with the image-side projections moved onto the few tokens (see there).

    Args:
        embedding_dim: width of the queries, keys, values and output.
        num_heads: number of attention heads; must divide the inner width.
        downsample_rate: the projections map to ``embedding_dim // downsample_rate`` channels.
    """

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
        """q: (B, Nq, C), k and v: (B, Nk, C) -> (B, Nq, C). A batch of 1 on either side is broadcast."""
        q = self._split_heads(self.q_proj(q))  # (B, heads, Nq, head_dim)
        k = self._split_heads(self.k_proj(k))  # (B, heads, Nk, head_dim)
        v = self._split_heads(self.v_proj(v))  # (B, heads, Nk, head_dim)
        if fast_paths_enabled():
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, heads, Nq, Nk)
            out = attn.softmax(dim=-1) @ v  # (B, heads, Nq, head_dim)
        return self.out_proj(out.transpose(1, 2).flatten(2))  # heads side by side again: (B, Nq, C)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, heads * head_dim) -> (B, heads, N, head_dim)."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    # Both cross-attentions below rewrite products with the image side so that every projection lands on
    # the few tokens. Head h's score between query a and key b is (a Wq_h + bq_h) . (b Wk_h + bk_h); with
    # (a Wq_h) Wk_h^T precomputed per token, one product against the raw image tokens gives it, with no
    # (N, inner width) projection of the image. The per-head rows are laid out as a block-diagonal matrix,
    # (heads * tokens, width), whose row for head h holds only head h's channels, so a single matrix product
    # serves all heads. Same attention in exact arithmetic; the rounding differs by float reassociation.

    def tokens_to_image(self, queries: torch.Tensor, image: ImageTokens, projected_keys: torch.Tensor | None = None,
                        projected_values: torch.Tensor | None = None) -> torch.Tensor:
        """Fast path of ``self(queries, image.tokens_with_pe, image.tokens)``: few queries (B, T, C) attending
        over the image tokens -> (B, T, C). ``projected_keys``/``projected_values``: the image's keys and
        values through this attention's projections (``ImageProjections``), when computed once beforehand."""
        batch, num_tokens, _ = queries.shape
        heads = self.num_heads
        q = _block_diagonal(self.q_proj(queries) * (self.q_proj.out_features // heads) ** -0.5, heads)
        if projected_keys is None or projected_values is None:
            # Row (h, t): query t of head h mapped back through Wk_h. The key bias adds q . bk_h to every
            # score of a row, which the softmax over the image removes, so it is left out.
            probs = _dot_image_tokens(q @ self.k_proj.weight, image.tokens_with_pe).softmax(dim=-1)
            # Each row's weights sum to one: projecting the averaged tokens equals averaging projected values.
            values = F.linear(_average_image_tokens(probs, image.tokens), self.v_proj.weight, self.v_proj.bias)
        else:
            probs = _dot_image_tokens(q, projected_keys).softmax(dim=-1)
            values = _average_image_tokens(probs, projected_values)
        # Row (h, t) holds every head's channels; head h's are the ones wanted.
        values = values.view(batch, heads, num_tokens, heads, -1).diagonal(dim1=1, dim2=3)  # (B, T, hd, heads)
        return self.out_proj(values.permute(0, 1, 3, 2).reshape(batch, num_tokens, -1))

    def image_to_tokens(self, image: ImageTokens, keys: torch.Tensor, values: torch.Tensor,
                        projected_queries: torch.Tensor | None = None,
                        residual: torch.Tensor | None = None) -> torch.Tensor:
        """Fast path of ``self(image.tokens_with_pe, keys, values)``: the image tokens attending over few
        prompt-token keys and values (B, T, C) -> (B, N, C), plus ``residual`` (1 or B, N, C) when given
        (added by the last matrix product). ``projected_queries``: the image's queries through this
        attention's projection (``ImageProjections``), when computed once beforehand."""
        batch, num_tokens, _ = keys.shape
        heads = self.num_heads
        k = _block_diagonal(self.k_proj(keys) * (self.k_proj.out_features // heads) ** -0.5, heads)
        if projected_queries is None:
            # Row (h, t): key t of head h mapped back through Wq_h, plus the query bias's share of its scores.
            scores = _dot_image_tokens(k @ self.q_proj.weight, image.tokens_with_pe)
            scores += (k @ self.q_proj.bias)[..., None]
        else:
            scores = _dot_image_tokens(k, projected_queries)
        # Keys-first layout: the softmax over a head's few keys runs along a non-innermost axis, vectorised
        # over the image tokens; along an innermost axis of a handful of keys it would vectorise poorly.
        probs = scores.view(batch, heads, num_tokens, -1).softmax(dim=2).view(batch, heads * num_tokens, -1)
        # Row (h, t): value t of head h through head h's slice of the output projection. Head 0's weights sum
        # to one over its tokens, so adding the output bias to its rows adds it once to every output.
        value_rows = _block_diagonal(self.v_proj(values), heads) @ self.out_proj.weight.T  # (B, heads * T, C)
        value_rows[:, :num_tokens] += self.out_proj.bias
        if residual is None:
            return probs.transpose(1, 2) @ value_rows
        return torch.baddbmm(residual, probs.transpose(1, 2), value_rows)


def _dot_image_tokens(rows: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """rows (B, R, X) dotted with every image token (1 or B, N, X) -> (B, R, N). One image shared by the
    whole batch takes one large matrix product instead of B small ones."""
    if image.shape[0] == 1:
        return (rows.reshape(-1, rows.shape[-1]) @ image[0].T).view(rows.shape[0], rows.shape[1], -1)
    return rows @ image.transpose(1, 2)


def _average_image_tokens(weights: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Weighted sums of the image tokens: attention weights (B, R, N) times tokens (1 or B, N, X) -> (B, R, X)."""
    if image.shape[0] == 1:
        return (weights.reshape(-1, weights.shape[-1]) @ image[0]).view(weights.shape[0], weights.shape[1], -1)
    return weights @ image


def _block_diagonal(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, T, C) -> (B, heads * T, C) where row h * T + i keeps only head h's channels of token i."""
    batch, tokens, width = x.shape
    head_mask = _head_mask(num_heads, width, x.dtype, x.device)  # (heads, 1, C)
    return (x[:, None] * head_mask).view(batch, num_heads * tokens, width)


@functools.lru_cache(maxsize=32)
def _head_mask(num_heads: int, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(heads, 1, width): row h is one on head h's channels, zero elsewhere. Cached: it depends on the shapes
    alone and every fast cross-attention call uses it, on a few tokens where building it would be a
    noticeable share of the work.

    Built outside inference mode even when first asked for inside it (``Predictor.predict``): the cache
    outlives the call, and an inference tensor in it would make every later backward pass through the
    decoder (fine-tuning the model in the same process) fail."""
    with torch.inference_mode(False):
        return torch.eye(num_heads, dtype=dtype, device=device).repeat_interleave(width // num_heads, dim=1)[:, None]


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image cross-attention, token MLP, then image->token cross-attention.

    Args:
        embedding_dim: width of the tokens and image tokens.
        num_heads: attention heads in every attention.
        mlp_dim: hidden width of the token MLP.
        activation: the MLP's activation module class.
        attention_downsample_rate: inner width reduction of the two cross-attentions.
        skip_first_layer_pe: for the first layer, whose queries are the prompt embeddings themselves: the
            self-attention then adds no positional encoding and replaces the queries instead of being a
            residual.
    """

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

    def forward(self, queries: torch.Tensor, image: ImageTokens, query_pe: torch.Tensor,
                image_projections: ImageProjections | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """queries: (B, T, C) tokens; image: the image tokens -> updated (queries, image tokens (B, N, C)).
        ``image_projections``: this layer's image-side projections (``project_image``), when computed
        beforehand; only the fast path reads them."""
        to_image, to_tokens = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        fast = fast_paths_enabled()
        projections = image_projections if fast else None

        # Token self-attention; the first layer's queries are the prompt embeddings themselves (Args).
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        # Tokens attend to the image.
        q = queries + query_pe
        if fast:
            keys, values = (None, None) if projections is None else (projections.token_to_image_keys,
                                                                     projections.token_to_image_values)
            attended = to_image.tokens_to_image(q, image, keys, values)
        else:
            attended = to_image(q, image.tokens_with_pe, image.tokens)
        queries = self.norm2(queries + attended)

        queries = self.norm3(queries + self.mlp(queries))

        # The image attends to the tokens.
        k = queries + query_pe
        if fast:
            # The residual image tokens are added by the attention's last matrix product, saving a pass.
            image_queries = None if projections is None else projections.image_to_token_queries
            image_tokens = to_tokens.image_to_tokens(image, k, queries, image_queries, residual=image.tokens)
        else:
            image_tokens = image.tokens + to_tokens(image.tokens_with_pe, k, queries)
        return queries, self.norm4(image_tokens)

    def project_image(self, image: ImageTokens) -> ImageProjections:
        """The image-side projections of both cross-attentions, for the fast path."""
        to_image, to_tokens = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        return ImageProjections(token_to_image_keys=to_image.k_proj(image.tokens_with_pe),
                                token_to_image_values=to_image.v_proj(image.tokens),
                                image_to_token_queries=to_tokens.q_proj(image.tokens_with_pe))


class TwoWayTransformer(nn.Module):
    """Stack of TwoWayAttentionBlocks and a final token->image attention.

    Args:
        depth: number of TwoWayAttentionBlocks.
        embedding_dim: width of the tokens and image tokens.
        num_heads: attention heads in every attention.
        mlp_dim: hidden width of the blocks' token MLPs.
        activation: the MLPs' activation module class.
        attention_downsample_rate: inner width reduction of the cross-attentions.
    """

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

    def forward(self, image_embedding: torch.Tensor | ImageTokens, image_pe: torch.Tensor | None,
                point_embedding: torch.Tensor,
                num_outputs: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embedding, image_pe: (1 or B, C, H, W) and (1, C, H, W), or ImageTokens already built (then
        image_pe is unused); point_embedding: (B, T, C) -> (tokens (B, T, C), image tokens (B, H*W, C)).
        With ``num_outputs``, only the first that many tokens are returned; the fast path runs the final
        attention for those alone, as the decoder reads its output tokens and never the prompt tokens after.

        A single image embedding is shared by all B prompt sets: the image tokens become prompt-dependent
        only after the first layer, so until then one copy serves the whole batch.
        """
        if isinstance(image_embedding, ImageTokens):
            image = image_embedding
        else:
            if image_pe is None:
                raise ValueError("image_pe is required with an image embedding tensor")
            image = ImageTokens.from_maps(image_embedding, image_pe)
        queries = point_embedding
        for index, layer in enumerate(self.layers):
            queries, image_tokens = layer(queries, image, point_embedding, image.first_layer if index == 0 else None)
            image = image.with_tokens(image_tokens)

        # Final attention of the tokens to the image.
        if fast_paths_enabled():
            queries, point_embedding = queries[:, :num_outputs], point_embedding[:, :num_outputs]
            attended = self.final_attn_token_to_image.tokens_to_image(queries + point_embedding, image)
        else:
            attended = self.final_attn_token_to_image(queries + point_embedding, image.tokens_with_pe, image.tokens)
        queries = self.norm_final_attn(queries + attended)
        return queries[:, :num_outputs], image.tokens

    def project_first_layer(self, image: ImageTokens) -> ImageTokens:
        """``image`` with the first layer's image-side projections attached. Until the first layer's output
        the image tokens depend on the image alone, so an image decoded with many prompts projects them once."""
        return dataclasses.replace(image, first_layer=self.layers[0].project_image(image))
