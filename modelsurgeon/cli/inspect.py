"""`modelsurgeon inspect` (stub: being written)."""

from __future__ import annotations

__all__ = ["inspect"]


def inspect() -> None:
    """Not implemented yet."""
    raise NotImplementedError("inspect")
