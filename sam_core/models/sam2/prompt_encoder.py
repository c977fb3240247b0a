"""SAM 2's prompt encoder: SAM's, with box corners also accepted as labelled points (labels 2 and 3)."""

from __future__ import annotations

import torch

from sam_core.models.sam.prompt_encoder import PromptEncoder


class Sam2PromptEncoder(PromptEncoder):
    """Point labels: -1 padding, 0 negative, 1 positive, 2 box top-left, 3 box bottom-right.

    SAM 2 feeds boxes as two labelled points ahead of the clicks rather than through ``boxes``; the learned
    corner offsets are the same ``point_embeddings[2]`` and ``[3]`` that SAM's box path adds.
    """

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        points = points + 0.5  # pixel centres
        if pad:  # without a box, a padding token stands where the box would be
            points = torch.cat([points, points.new_zeros((points.shape[0], 1, 2))], dim=1)
            labels = torch.cat([labels, -labels.new_ones((labels.shape[0], 1))], dim=1)
        encoded = self.pe_layer.forward_with_coords(points, self.input_image_size)
        # Row l + 1 holds the offset of label l: padding, negative, positive, top-left, bottom-right.
        offsets = torch.cat([self.not_a_point_embed.weight, *(embed.weight for embed in self.point_embeddings)])
        encoded = torch.where((labels == -1).unsqueeze(-1), torch.zeros_like(encoded), encoded)
        return encoded + offsets[(labels + 1).long()]
