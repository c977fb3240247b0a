"""Which earlier frames a frame being tracked attends to: the memory bank of SAM 2's video model.

A frame attends to the spatial memories of the conditioning frames (those with prompts; all of them, or
the ``max_cond`` closest) and of ``num_maskmem - 1`` recent tracked frames (the previous one, then every
``stride``-th before it), and to the object pointers of the conditioning frames (optionally only those
not ahead of it) and of up to ``max_obj_ptrs - 1`` previous tracked frames. "Previous" is in the tracking
direction: frame t + 1, t + 2... when tracking in reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def closest_conditioning_frames(frame_idx: int, cond_outputs: Mapping[int, T],
                                max_cond: int) -> tuple[dict[int, T], dict[int, T]]:
    """(selected, unselected) conditioning frames: all of them when ``max_cond`` is -1 or not exceeded,
    else the closest one before ``frame_idx``, the closest one at or after it, then the nearest others."""
    if max_cond == -1 or len(cond_outputs) <= max_cond:
        return dict(cond_outputs), {}
    selected: dict[int, T] = {}
    before = max((t for t in cond_outputs if t < frame_idx), default=None)
    after = min((t for t in cond_outputs if t >= frame_idx), default=None)
    for t in (before, after):
        if t is not None:
            selected[t] = cond_outputs[t]
    others = sorted((t for t in cond_outputs if t not in selected), key=lambda t: abs(t - frame_idx))
    selected.update((t, cond_outputs[t]) for t in others[: max_cond - len(selected)])
    return selected, {t: out for t, out in cond_outputs.items() if t not in selected}


def recent_memory_frames(frame_idx: int, num_maskmem: int, stride: int, reverse: bool) -> list[tuple[int, int]]:
    """(temporal position, frame) of the non-conditioning memories, oldest first: position 1 is the farthest
    (``num_maskmem - 2`` strides before the nearest multiple of ``stride`` two frames back), position
    ``num_maskmem - 1`` the previous frame. Frames may lie outside the video (the caller skips those)."""
    frames = []
    for position in range(1, num_maskmem):
        distance = num_maskmem - position  # in memory slots
        if distance == 1:
            frame = frame_idx + 1 if reverse else frame_idx - 1
        elif reverse:
            nearest = -(-(frame_idx + 2) // stride) * stride  # first multiple of stride at or after t + 2
            frame = nearest + (distance - 2) * stride
        else:
            nearest = (frame_idx - 2) // stride * stride  # last multiple of stride at or before t - 2
            frame = nearest - (distance - 2) * stride
        frames.append((position, frame))
    return frames


def pointer_frames(frame_idx: int, max_pointers: int, num_frames: int, reverse: bool) -> list[tuple[int, int]]:
    """(distance, frame) of the previous frames whose object pointers may be attended to, nearest first,
    stopping at the video's ends."""
    frames = []
    for distance in range(1, max_pointers):
        frame = frame_idx + distance if reverse else frame_idx - distance
        if not 0 <= frame < num_frames:
            break
        frames.append((distance, frame))
    return frames


def memory_reach(num_maskmem: int, stride: int, max_obj_ptrs: int) -> int:
    """How far back (in frames) any tracked frame's memory or pointer may still be read by a later frame."""
    spatial = 1 + stride * max(num_maskmem - 1, 0)
    return max(spatial, max_obj_ptrs - 1, 1)
