"""`modelsurgeon rehead` (stub: being written)."""

from __future__ import annotations

__all__ = ["rehead"]


def rehead() -> None:
    """Not implemented yet."""
    raise NotImplementedError("rehead")
