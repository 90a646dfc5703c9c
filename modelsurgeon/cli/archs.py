"""`modelsurgeon archs` (stub: being written)."""

from __future__ import annotations

__all__ = ["archs"]


def archs() -> None:
    """Not implemented yet."""
    raise NotImplementedError("archs")
