"""Attributes that a compatibility class reads from the sam_core object it wraps, declared one per line."""

from __future__ import annotations

from typing import Any


def forwarded(owner: str, name: str, doc: str | None = None) -> property:
    """A read-only property giving ``self.<owner>.<name>``.

    Args:
        owner: the attribute holding the wrapped object (e.g. ``"predictor"``).
        name: the wrapped object's attribute.
        doc: the property's docstring (default: where the value comes from).
    Returns:
        The property.
    """
    def read(self: Any) -> Any:
        return getattr(getattr(self, owner), name)

    return property(read, doc=doc or f"``{owner}.{name}``")
