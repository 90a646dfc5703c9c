"""modelsurgeon: replace the classification head of a pretrained image classifier, correctly.

Importing this package does not import torch; ``trunc_normal_`` and the other tensor functions are
loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "std_bounds", "trunc_normal_"]

if TYPE_CHECKING:  # pragma: no cover
    from modelsurgeon.sampler import std_bounds, trunc_normal_


def __getattr__(name: str) -> Any:
    if name in ("trunc_normal_", "std_bounds"):
        from modelsurgeon import sampler

        return getattr(sampler, name)
    raise AttributeError(f"module 'modelsurgeon' has no attribute {name!r}")
