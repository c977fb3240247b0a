"""The process-wide switch between the optimised ("fast") and the textbook ("plain") model code paths, which give
the same results up to float rounding. ``SAM_CORE_FAST_PATHS=0`` (or ``false``/``no``) in the environment starts
the process with the plain paths.

Design notes: docs/architecture.md."""

from __future__ import annotations

import os

ENV_VAR = "SAM_CORE_FAST_PATHS"

_enabled = os.environ.get(ENV_VAR, "1").strip().lower() not in {"0", "false", "no"}


def fast_paths_enabled() -> bool:
    """Whether the model runs its optimised code paths (True) or the plain reference formulas (False)."""
    return _enabled


# Lower-case like torch.set_grad_enabled: called as a setter as often as used as a context manager.
class fast_paths:
    """Switch the optimised code paths of every sam_core model on or off, process-wide.

    Takes effect at once, as a setter; used as a context manager it restores the previous value on exit::

        sam_core.fast_paths(False)          # plain paths from now on
        with sam_core.fast_paths(True):     # fast paths inside the block only
            ...

    On (the default): the optimised algebra (chunked attention with a skewed relative-position bias,
    one-copy window partitioning, cross-attentions with the image-side projections moved onto the prompt
    tokens, upscaling as matrix products). Off: the textbook formulas beside them. Both compute the same
    function, so outputs agree up to float rounding; the plain paths are much slower and use far more
    memory for global attention (a full (heads, H*W, H*W) bias). Both support autograd.

    The value is a plain process-wide flag, not thread-local: switching it while another thread runs the
    model changes that thread's path too (with the same results, up to rounding).
    """

    def __init__(self, enabled: bool) -> None:
        global _enabled
        self.previous = _enabled
        self.enabled = bool(enabled)
        _enabled = self.enabled

    def __enter__(self) -> fast_paths:
        return self

    def __exit__(self, *exc_info: object) -> None:
        global _enabled
        _enabled = self.previous

    def __repr__(self) -> str:
        return f"fast_paths({self.enabled})"
