"""`modelsurgeon sample` (stub: being written)."""

from __future__ import annotations

__all__ = ["sample"]


def sample() -> None:
    """Not implemented yet."""
    raise NotImplementedError("sample")
