"""Hugging Face ``transformers`` tensor names -> sam_core's (Meta's), for every family with a Hugging Face format.

The layouts are the same; only the names differ. Each family keeps a declarative rename table (regular
expression -> replacement, applied in order to every name) and hands it to :func:`rename_tensors`; the one
rule that depends on the whole file, the renumbering of Hugging Face's split MLPs, is built from the names
by :func:`split_mlp_renumbering`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import torch

Tensor = TypeVar("Tensor")

Rename = tuple[str | re.Pattern[str], str | Callable[[re.Match[str]], str]]
"""(pattern, replacement) as ``re.sub`` takes them: a replacement string, or a function of the match."""

HF_VISION_PREFIX = "vision_encoder."
"""The image encoder's names in every ``transformers`` SAM model (SamModel, SamHQModel, Sam2Model)."""


def rename_tensors(tensors: Mapping[str, Tensor], renames: Sequence[Rename]) -> dict[str, Tensor]:
    """Each tensor under its new name.

    Args:
        tensors: name -> tensor.
        renames: applied in order to every name, each as ``re.sub(pattern, replacement, name)``.

    Returns:
        The renamed tensors, in the order of ``tensors``.
    """
    renamed = {}
    for name, tensor in tensors.items():
        for pattern, replacement in renames:
            name = re.sub(pattern, replacement, name)
        renamed[name] = tensor
    return renamed


def split_mlp_renumbering(names: Iterable[str], prefix: str = r".+") -> Rename:
    """The rename that numbers the layers of Hugging Face's split MLPs as Meta does.

    Hugging Face splits an MLP into ``proj_in``, ``layers.i`` and ``proj_out``; Meta numbers them all: ``layers.0``,
    ``layers.{i + 1}``, ``layers.{hidden + 1}``. Where ``proj_out`` goes depends on how many hidden layers the MLP
    has, so the rename is built from the file's names.

    Args:
        names: every tensor name of the file.
        prefix: a regular expression that the MLPs' paths match (an MLP is a path with a ``proj_in``).

    Returns:
        A :data:`Rename` for ``rename_tensors``.
    """
    names = list(names)
    detect = re.compile(rf"^({prefix})\.proj_in\.")
    # Longest first, so that an MLP nested in another one's path is matched as itself.
    mlps = sorted({match.group(1) for name in names if (match := detect.match(name))}, key=len, reverse=True)
    if not mlps:
        return r"(?!)", ""  # matches nothing
    pattern = re.compile(r"^(" + "|".join(map(re.escape, mlps)) + r")\.(proj_in|proj_out|layers\.(\d+))\.")
    hidden = dict.fromkeys(mlps, 0)
    for name in names:
        if (match := pattern.match(name)) and match.group(3) is not None:
            hidden[match.group(1)] = max(hidden[match.group(1)], int(match.group(3)) + 1)

    def renumber(match: re.Match[str]) -> str:
        mlp, part, index = match.groups()
        position = 0 if part == "proj_in" else hidden[mlp] + 1 if part == "proj_out" else int(index) + 1
        return f"{mlp}.layers.{position}."

    return pattern, renumber


def reading_hf_names(from_hf: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]],
                     ) -> Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """A family's ``ModelFamily.to_native_names``: ``from_hf`` for a Hugging Face state dict (recognised by its
    image encoder's names, ``HF_VISION_PREFIX``), a copy of any other, whose names are already the family's."""
    def to_native_names(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if any(name.startswith(HF_VISION_PREFIX) for name in tensors):
            return from_hf(tensors)
        return dict(tensors)

    return to_native_names
