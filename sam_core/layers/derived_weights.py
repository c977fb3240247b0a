"""A cache for weights derived from a module's parameters and buffers (folded BatchNorms, merged or composed
convolutions), recomputed only when what they come from changes."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import torch
from torch import nn


def records_gradient(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an operation on ``tensors``: grad mode on and one of them requires grad."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class DerivedWeights:
    """Tensors computed from source tensors, recomputed only when a source changes.

    A source changes when it is updated in place (``load_state_dict`` copies into it: its ``_version`` moves),
    replaced, moved or cast. While autograd records (a source requires grad under ``torch.is_grad_enabled()``)
    nothing is cached: the derived tensors must stay in the graph. Modules that hold one derive from
    :class:`HoldsDerivedWeights`, so that ``.to()`` / ``.half()`` drop it.
    """

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._value: tuple[torch.Tensor, ...] = ()

    def get(self, sources: Sequence[torch.Tensor], compute: Callable[[], tuple[torch.Tensor, ...]],
            constants: tuple[Hashable, ...] = ()) -> tuple[torch.Tensor, ...]:
        """``compute()``, or its cached result while ``sources`` and ``constants`` (non-tensor inputs of
        ``compute``, e.g. a BatchNorm's eps) are unchanged."""
        if records_gradient(*sources):
            return compute()
        key = tuple((id(t), t.data_ptr(), t._version, t.device, t.dtype) for t in sources) + constants
        if self._key != key:
            with torch.no_grad():
                self._value = compute()
            self._key = key
        return self._value

    def clear(self) -> None:
        self._key, self._value = None, ()


class HoldsDerivedWeights(nn.Module):
    """Base of a module with :class:`DerivedWeights` attributes: ``.to()``, ``.half()`` and every other
    ``_apply`` clear them, so that the cached tensors do not hold on to the old device's memory."""

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 (nn.Module's signature)
        for value in vars(self).values():
            if isinstance(value, DerivedWeights):
                value.clear()
        return super()._apply(fn, recurse)
