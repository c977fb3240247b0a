"""Speed settings: a process-level allocator setting (exact; sam-amg turns it on, library users call
``keep_freed_memory`` themselves) and int8 quantisation (approximate, opt-in)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import torch

from sam_core.layers.int8_linear import quantize_linears_int8

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Let glibc's malloc reuse freed activation memory instead of returning it to the OS.

    PyTorch allocates CPU tensors with malloc, and glibc serves every block over 32 MB with a fresh mmap that
    it unmaps on free. A ViT-B encoder pass allocates such blocks a few dozen times (qkv, MLP hidden states),
    so each pass page-faults ~400 MB of new zeroed pages (docs/benchmarks.md measures the cost).
    Raising the mmap and trim thresholds to ``limit_bytes`` keeps those blocks in the heap for reuse; the price
    is that up to ``limit_bytes`` of freed memory stays mapped to the process. Outputs are unchanged.

    It changes the whole process's malloc, so nothing in the library calls it for you: call it once in a
    program that runs the encoder many times (a server, a batch job); ``sam-amg`` does.

    Returns False (and changes nothing) where the C library is not glibc.
    """
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, limit_bytes)) and bool(mallopt(_M_TRIM_THRESHOLD, limit_bytes))


ALLOCATOR_ENV = "SAM_CORE_KEEP_FREED_MEMORY"
_default_applied = False


def keep_freed_memory_by_default() -> None:
    """Apply ``keep_freed_memory`` once per process unless the environment sets SAM_CORE_KEEP_FREED_MEMORY=0.

    What the programs of this project (sam-amg, the benchmarks) do first: every encoder and decoder step
    allocates activations of several MB, which glibc would otherwise hand back to the OS on free and
    page-fault in again on the next step. Outputs are identical either way.
    """
    global _default_applied
    if not _default_applied and os.environ.get(ALLOCATOR_ENV, "1").strip().lower() not in {"0", "false", "no"}:
        keep_freed_memory()
    _default_applied = True


def quantize_encoder_int8(sam: torch.nn.Module) -> torch.nn.Module:
    """Opt-in approximate mode: the image encoder's linear layers in int8, in place (CPU only).

    Weights are stored as int8 and activations quantised on the fly
    (``sam_core.layers.int8_linear.Int8Linear``); the prompt encoder and mask decoder stay in float32. Outputs
    change: docs/benchmarks.md ("Opt-in speed modes") lists the measured speed-up and mask IoU against the exact
    path.
    Returns ``sam``.
    """
    quantize_linears_int8(sam.image_encoder)
    return sam
