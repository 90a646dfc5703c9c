"""Truncated normal sampling. Imports only ``math`` and ``torch``.

PLACEHOLDER: this module is being replaced by the exact sampler (issue 3).
"""

from __future__ import annotations

import math

import torch

__all__ = ["std_bounds", "trunc_normal_"]


def std_bounds(mean: float, std: float, a: float, b: float) -> tuple[float, float]:
    """Turn bounds given in units of std around the mean into absolute bounds."""
    return mean + a * std, mean + b * std


def _placeholder_trunc_normal_(
    tensor: torch.Tensor, mean: float, std: float, a: float, b: float, generator: torch.Generator | None
) -> torch.Tensor:
    # PLACEHOLDER until the exact sampler lands: plain rejection on a float64 buffer.
    if not (std > 0) or not (a <= b) or any(math.isnan(v) for v in (mean, std, a, b)):
        raise ValueError(f"invalid truncated normal parameters mean={mean} std={std} a={a} b={b}")
    buf = torch.empty(tensor.shape, dtype=torch.float64, device=tensor.device)
    torch.nn.init.trunc_normal_(buf, mean, std, a, b, generator=generator)
    return tensor.copy_(buf)


def trunc_normal_(
    tensor: torch.Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` in place from N(mean, std²) truncated to [a, b] (absolute bounds)."""
    with torch.no_grad():
        return _placeholder_trunc_normal_(tensor, mean, std, a, b, generator)
