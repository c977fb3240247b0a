"""EdgeSAM's prompt encoder: SAM's, plus point label -2 for a point that contributes nothing."""

from __future__ import annotations

import torch

from sam_core.models.sam.prompt_encoder import PromptEncoder

IGNORED_POINT = -2
"""A point label EdgeSAM's prompt encoder turns into an all-zero token (no position, no learned embedding):
a placeholder that keeps prompt sets of different sizes in one batch without the padding token's embedding."""


class EdgeSamPromptEncoder(PromptEncoder):
    """SAM's prompt encoder with EdgeSAM's extra point label: -2 gives a zero token. Labels 1, 0 and -1
    (padding) mean what they mean for SAM. Same arguments and parameters as ``PromptEncoder``."""

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        ignored = labels == IGNORED_POINT
        # Embedded as padding first (whose positional part is already zero), then zeroed entirely.
        embedded = super()._embed_points(points, torch.where(ignored, -1, labels), pad)
        if pad:  # the padding token SAM appends is not ignored
            ignored = torch.cat([ignored, ignored.new_zeros((ignored.shape[0], 1))], dim=1)
        return embedded.masked_fill(ignored.unsqueeze(-1), 0.0)
