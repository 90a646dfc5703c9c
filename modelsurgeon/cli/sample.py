"""`modelsurgeon sample`: draw from the truncated normal and compare with its exact statistics.

torch is imported inside the command, so ``--help`` stays fast.
"""

import itertools
import math
import os
from enum import Enum
from typing import Annotated, Any

import typer

from modelsurgeon.errors import UsageError

__all__ = ["sample"]

_QUANTILES = (0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999)
_BINS = 24


class Bounds(str, Enum):
    """How --a and --b are read."""

    abs = "abs"
    std = "std"


class DType(str, Enum):
    """Output dtype of the draw."""

    float32 = "float32"
    float64 = "float64"
    float16 = "float16"
    bfloat16 = "bfloat16"


def _num(x: float) -> float | str:
    """JSON-safe number: infinities as the strings "inf" / "-inf"."""
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def _draw(n: int, mean: float, std: float, a: float, b: float, dtype: str, seed: int) -> dict[str, Any]:
    import torch

    from modelsurgeon.sampler import trunc_normal_, truncnorm_mean_std, truncnorm_pdf, truncnorm_ppf

    try:
        exact_mean, exact_std = truncnorm_mean_std(mean, std, a, b) if a < b else (a, 0.0)
        t = torch.empty(n, dtype=getattr(torch, dtype))
        trunc_normal_(t, mean, std, a, b, generator=torch.Generator().manual_seed(seed))
    except ValueError as exc:
        raise UsageError(
            f"cannot sample with --mean {mean} --std {std} --a {a} --b {b} --dtype {dtype}: {exc}",
            "use a finite --std > 0 and --a <= --b with at least one value of --dtype between them",
        ) from exc
    x, _ = t.double().sort()
    pos = [q * (n - 1) for q in _QUANTILES]
    emp = [float(x[math.floor(p)] + (x[math.ceil(p)] - x[math.floor(p)]) * (p - math.floor(p))) for p in pos]
    exact = truncnorm_ppf(torch.tensor(_QUANTILES, dtype=torch.float64), mean, std, a, b).tolist()
    lo, hi = float(x[0]), float(x[-1])
    if hi <= lo:
        hi = lo + max(abs(lo), 1.0) * 1e-6
    counts = torch.histc(x, bins=_BINS, min=lo, max=hi).tolist()
    edges = [lo + (hi - lo) * i / _BINS for i in range(_BINS + 1)]
    centres = torch.tensor([(e0 + e1) / 2 for e0, e1 in itertools.pairwise(edges)])
    density = truncnorm_pdf(centres, mean, std, a, b).tolist() if a < b else [0.0] * _BINS
    return {
        "n": n,
        "dtype": dtype,
        "seed": seed,
        "a": _num(a),
        "b": _num(b),
        "params": {"mean": mean, "std": std, "a": _num(a), "b": _num(b)},
        "mean": float(x.mean()),
        "std": float(x.std()) if n > 1 else 0.0,
        "exact_mean": exact_mean,
        "exact_std": exact_std,
        "quantiles": {"p": list(_QUANTILES), "empirical": emp, "exact": exact},
        "at_bounds": {"a": int((x == a).sum()), "b": int((x == b).sum())},
        "histogram": {"counts": counts, "edges": edges, "density": density},
    }


def _report(result: dict[str, Any]) -> None:
    from modelsurgeon.cli._output import err_console
    from modelsurgeon.cli._plot import render_histogram

    p = result["params"]
    err_console.print(
        f"{result['n']} draws, {result['dtype']}, seed {result['seed']}: N({p['mean']}, {p['std']}²)"
        f" truncated to [{p['a']}, {p['b']}]",
        markup=False,
    )
    err_console.print(f"{'':10} {'empirical':>14} {'exact':>14}", markup=False)
    err_console.print(f"{'mean':10} {result['mean']:>14.6g} {result['exact_mean']:>14.6g}", markup=False)
    err_console.print(f"{'std':10} {result['std']:>14.6g} {result['exact_std']:>14.6g}", markup=False)
    q = result["quantiles"]
    for prob, emp, ex in zip(q["p"], q["empirical"], q["exact"], strict=True):
        err_console.print(f"{'q' + format(prob, 'g'):10} {emp:>14.6g} {ex:>14.6g}", markup=False)
    at = result["at_bounds"]
    err_console.print(f"values exactly at a: {at['a']}, at b: {at['b']}", markup=False)
    h = result["histogram"]
    err_console.print("histogram (┃ = expected count from the exact density):", markup=False)
    err_console.print(render_histogram(h["counts"], h["edges"], h["density"], width=50), markup=False)


def sample(
    n: Annotated[int, typer.Option("--n", min=1, help="Number of values to draw.")] = 100_000,
    mean: Annotated[float, typer.Option("--mean", help="Mean of the untruncated normal.")] = 0.0,
    std: Annotated[float, typer.Option("--std", help="Standard deviation of the untruncated normal.")] = 1.0,
    a: Annotated[float, typer.Option("--a", help="Lower bound (may be -inf).")] = -2.0,
    b: Annotated[float, typer.Option("--b", help="Upper bound (may be inf).")] = 2.0,
    bounds: Annotated[
        Bounds,
        typer.Option("--bounds", help="abs: --a/--b are absolute; std: in units of --std around --mean."),
    ] = Bounds.abs,
    dtype: Annotated[DType, typer.Option("--dtype", help="Output dtype of the draw.")] = DType.float32,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="Generator seed; drawn and reported when omitted.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help='Print one JSON object on stdout (infinities as "inf").')
    ] = False,
) -> None:
    """Draw from modelsurgeon's exact truncated normal and compare with its exact statistics."""
    from modelsurgeon.cli._output import emit_json
    from modelsurgeon.sampler import std_bounds

    if bounds is Bounds.std:
        a, b = std_bounds(mean, std, a, b)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    result = _draw(n, mean, std, a, b, dtype.value, seed)
    if json_out:
        emit_json(result)
    else:
        _report(result)
