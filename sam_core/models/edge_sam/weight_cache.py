"""A cache for weights derived from a module's parameters (folded BatchNorms, composed convolutions)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


class DerivedWeights:
    """Tensors computed from source tensors, recomputed only when a source changes.

    A source changes when it is updated in place (``load_state_dict`` copies into it: its ``_version`` moves),
    replaced, moved or cast. While autograd records (training, or any source requiring a gradient under
    ``torch.is_grad_enabled()``) nothing is cached: the derived tensors must stay in the graph.
    """

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._value: tuple[torch.Tensor, ...] = ()

    def get(self, sources: Sequence[torch.Tensor],
            compute: Callable[[], tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        """``compute()``, or its cached result while ``sources`` are unchanged."""
        if torch.is_grad_enabled() and any(t.requires_grad for t in sources):
            return compute()
        key = tuple((id(t), t._version, t.device, t.dtype) for t in sources)
        if self._key != key:
            with torch.no_grad():
                self._value = compute()
            self._key = key
        return self._value

    def clear(self) -> None:
        self._key, self._value = None, ()
