"""Prompt encoder: random-Fourier positions for points and box corners, a small conv stack for masks."""

from __future__ import annotations

import math

import torch
from torch import nn

from sam_core.layers.norms import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Fourier features of normalised (x, y) coordinates through a fixed random Gaussian projection.

    Args:
        num_pos_feats: number of random frequencies; the encoding has twice as many channels (sin and cos).
        scale: standard deviation of the random frequencies.
    """

    def __init__(self, num_pos_feats: int, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """coords in [0, 1], shape (..., 2) -> (..., 2 * num_pos_feats)."""
        matrix = self.positional_encoding_gaussian_matrix
        projected = (2 * coords.to(matrix.dtype) - 1) @ matrix * (2 * math.pi)
        return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of the centre of every cell of an HxW grid, as (C, H, W)."""
        height, width = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
        return self._encode(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encode pixel coordinates (..., 2) given as x, y in an image of ``image_size`` (H, W)."""
        scale = coords.new_tensor([image_size[1], image_size[0]], dtype=torch.float32)
        return self._encode(coords.float() / scale)


class PromptEncoder(nn.Module):
    """Embeds points, boxes and masks into sparse tokens and a dense map for the mask decoder.

    Args:
        embed_dim: width of the prompt embeddings.
        image_embedding_size: (H, W) of the image embedding grid, and of the dense embedding.
        input_image_size: (H, W) of the padded encoder input, the frame of point and box coordinates.
        mask_in_chans: hidden channels of the mask downscaling convolutions.
    """

    point_label_count = 2
    """Point labels 0.. that clicks may carry (negative, positive), each with the offset ``point_embeddings[l]``;
    -1 is padding. Boxes take offsets 2 and 3 through ``boxes``."""

    def __init__(self, embed_dim: int, image_embedding_size: tuple[int, int],
                 input_image_size: tuple[int, int], mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # Learned offsets: negative point, positive point, box top-left, box bottom-right.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid, (1, C, H, W)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        points = points + 0.5  # pixel centres
        if pad:  # without a box, a padding token stands where the box would be
            points = torch.cat([points, points.new_zeros((points.shape[0], 1, 2))], dim=1)
            labels = torch.cat([labels, -labels.new_ones((labels.shape[0], 1))], dim=1)
        encoded = self.pe_layer.forward_with_coords(points, self.input_image_size)
        # Row l + 1 holds the offset of label l: padding (-1), negative (0), positive (1)[, the point labels beyond].
        point_offsets = (embed.weight for embed in self.point_embeddings[:self.point_label_count])
        offsets = torch.cat([self.not_a_point_embed.weight, *point_offsets])
        is_padding = (labels == -1).unsqueeze(-1)
        encoded = torch.where(is_padding, torch.zeros_like(encoded), encoded)
        return encoded + offsets[(labels + 1).long()]

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        encoded = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        offsets = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return encoded + offsets

    def forward(self, points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None,
                masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return sparse (B, N, C) and dense (B, C, H, W) embeddings; B comes from whichever prompt is given."""
        if points is not None:
            batch = points[0].shape[0]
        elif boxes is not None:
            batch = boxes.shape[0]
        elif masks is not None:
            batch = masks.shape[0]
        else:
            batch = 1
        weight = self.no_mask_embed.weight
        sparse = [weight.new_empty((batch, 0, self.embed_dim))]
        if points is not None:
            sparse.append(self._embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            sparse.append(self._embed_boxes(boxes))
        if masks is not None:
            dense = self.mask_downscaling(masks.to(weight.dtype))
        else:
            dense = weight.reshape(1, -1, 1, 1).expand(batch, -1, *self.image_embedding_size)
        return torch.cat(sparse, dim=1).to(weight.dtype), dense
