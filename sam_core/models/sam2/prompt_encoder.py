"""SAM 2's prompt encoder: SAM's, with box corners also accepted as labelled points (labels 2 and 3)."""

from __future__ import annotations

from sam_core.models.sam.prompt_encoder import PromptEncoder


class Sam2PromptEncoder(PromptEncoder):
    """Point labels: -1 padding, 0 negative, 1 positive, 2 box top-left, 3 box bottom-right.

    SAM 2 feeds boxes as two labelled points ahead of the clicks rather than through ``boxes``; the learned
    corner offsets are the same ``point_embeddings[2]`` and ``[3]`` that SAM's box path adds.
    """

    point_label_count = 4
