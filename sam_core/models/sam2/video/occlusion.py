"""Occlusion handling: what the video model does with a frame where its object-score head says the object
is absent (logit <= 0)."""

from __future__ import annotations

import torch

# Mask logit of a frame where the object is absent, and of an object with no output on a frame.
NO_OBJ_SCORE = -1024.0


def suppress_absent_masks(mask_logits: torch.Tensor, object_score_logits: torch.Tensor) -> torch.Tensor:
    """Mask logits (B, M, h, w) replaced by NO_OBJ_SCORE for the objects judged absent (scores (B, 1))."""
    present = (object_score_logits > 0)[:, :, None, None]
    return torch.where(present, mask_logits, NO_OBJ_SCORE)


def presence_weight(object_score_logits: torch.Tensor, soft: bool) -> torch.Tensor:
    """How present each object is, (B, 1): 0 or 1, or the score's sigmoid when ``soft``."""
    return object_score_logits.sigmoid() if soft else (object_score_logits > 0).float()


def mix_no_object_pointer(pointer: torch.Tensor, presence: torch.Tensor, no_obj_ptr: torch.Tensor,
                          fixed: bool) -> torch.Tensor:
    """The pointer (B, C) moved towards the learned no-object pointer (1, C) by 1 - presence; with ``fixed``
    an absent object's pointer becomes the no-object pointer itself, else it is added to the pointer."""
    if fixed:
        pointer = presence * pointer
    return pointer + (1 - presence) * no_obj_ptr


def add_no_object_embedding(memory: torch.Tensor, object_score_logits: torch.Tensor,
                            no_obj_embed: torch.Tensor) -> torch.Tensor:
    """Memory (B, mem_dim, H, W) plus the learned no-object embedding (1, mem_dim) where the object is absent."""
    absent = 1 - (object_score_logits > 0).float()
    return memory + absent[:, :, None, None] * no_obj_embed[:, :, None, None]
