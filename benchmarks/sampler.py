"""Benchmark modelsurgeon's trunc_normal_ against torch, timm and plain normal_; writes docs/sampler.md.

Usage: ``python benchmarks/sampler.py --threads 1 --out docs/sampler.md`` (``make bench``; 1 is the default).

For each regime and dtype the four fills run interleaved (one of each per repeat) on the same tensor, and
the median time of each gives elements per second and the ratio to ``normal_`` (the floor: it does not
truncate). torch's trunc_normal_ is first timed on 1e5 values; when that extrapolates past
``--torch-cap`` seconds it is measured on 1e5 values only, which the table notes. Each truncating fill is
also judged by the statistical battery of tests/test_sampler.py (20 000 draws, Bonferroni level).
"""

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modelsurgeon import sampler as _sampler
from modelsurgeon.sampler import trunc_normal_
from tests.test_sampler import REGIMES, battery_case

__all__ = ["main"]

Fill = Callable[..., object]
_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_BENCH_REGIMES = [
    "central",
    "one_sided",
    "both_infinite",
    "wide_asym",
    "tail_3_4",
    "tail_20_21",
    "tail_left_30",
    "narrow_center",
    "narrow_tail",
    "mean_outside",
]


def _timm_fill(t: torch.Tensor, mean: float, std: float, a: float, b: float, **_: object) -> torch.Tensor:
    from timm.layers import trunc_normal_ as timm_trunc_normal_

    return timm_trunc_normal_(t, mean, std, a, b)


def _torch_fill(t: torch.Tensor, mean: float, std: float, a: float, b: float, **kw: object) -> torch.Tensor:
    return torch.nn.init.trunc_normal_(t, mean, std, a, b, **kw)  # type: ignore[arg-type]


def _ours(t: torch.Tensor, mean: float, std: float, a: float, b: float, **kw: object) -> torch.Tensor:
    return trunc_normal_(t, mean, std, a, b, **kw)  # type: ignore[arg-type]


def _normal(t: torch.Tensor, mean: float, std: float, a: float, b: float, **_: object) -> torch.Tensor:
    return t.normal_(mean, std)


IMPLS: dict[str, Fill] = {"modelsurgeon": _ours, "torch": _torch_fill, "timm": _timm_fill, "normal_": _normal}


def _time(fill: Fill, t: torch.Tensor, params: tuple[float, float, float, float]) -> float:
    start = time.perf_counter()
    fill(t, *params)
    return time.perf_counter() - start


def _bench_case(
    params: tuple[float, float, float, float], dtype: torch.dtype, n: int, repeats: int, cap: float
) -> dict:
    """Median elements/s of each fill (None when it raises), with the n used."""
    sizes = dict.fromkeys(IMPLS, n)
    status: dict[str, str] = {}
    for name, fill in IMPLS.items():
        probe = torch.empty(100_000, dtype=dtype)
        try:
            secs = _time(fill, probe, params)
        except Exception as exc:
            status[name] = f"raises {type(exc).__name__}"
            continue
        if name in ("torch", "timm") and secs * n / probe.numel() > cap:
            sizes[name] = probe.numel()
            status[name] = "n=1e5 (slow)"
    times: dict[str, list[float]] = {k: [] for k in IMPLS if not status.get(k, "").startswith("raises")}
    tensors = {k: torch.empty(sizes[k], dtype=dtype) for k in times}
    for _ in range(repeats):
        for name in times:
            times[name].append(_time(IMPLS[name], tensors[name], params))
    rates = {k: sizes[k] / statistics.median(v) for k, v in times.items()}
    return {"rates": rates, "status": status}


def _ours_uncached(t: torch.Tensor, mean: float, std: float, a: float, b: float) -> torch.Tensor:
    """trunc_normal_ planning afresh, as before plans were cached; the cache is put back afterwards, so
    that the cached column, interleaved with this one, still finds its plan."""
    saved = dict(_sampler._PLANS)
    _sampler._PLANS.clear()
    try:
        return trunc_normal_(t, mean, std, a, b)
    finally:
        _sampler._PLANS.clear()
        _sampler._PLANS.update(saved)


# Small fills where the per-call overhead shows: (label, shape, (mean, std, a, b)).
_PER_CALL = [
    ("10x768 head, std 2e-5, a/b = -2/2 (the seed's call)", (10, 768), (0.0, 2e-5, -2.0, 2.0)),
    ("768x768 layer, std 0.02, a/b = -2/2 (timm's init)", (768, 768), (0.0, 0.02, -2.0, 2.0)),
    ("10x768 head, std 0.02, a/b = -0.04/0.04 (±2 std)", (10, 768), (0.0, 0.02, -0.04, 0.04)),
]
_PER_CALL_IMPLS: dict[str, Fill] = {
    "modelsurgeon": _ours,
    "modelsurgeon, plan cache cleared": _ours_uncached,
    "torch": _torch_fill,
    "normal_": _normal,
}


def _per_call_rows(calls: int) -> list[str]:
    """Median microseconds per call of each fill on small float32 tensors, interleaved call by call."""
    rows = []
    for label, shape, params in _PER_CALL:
        t = torch.empty(shape)
        times: dict[str, list[float]] = {k: [] for k in _PER_CALL_IMPLS}
        for _ in range(calls):
            for name, fill in _PER_CALL_IMPLS.items():
                times[name].append(_time(fill, t, params))
        med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
        rows.append(f"| {label} | " + " | ".join(f"{med[k]:.0f}" for k in _PER_CALL_IMPLS) + " |")
    return rows


def _fmt_rate(rate: float | None) -> str:
    return "—" if rate is None else f"{rate / 1e6:.1f}"


def _fmt_params(params: tuple[float, ...]) -> str:
    return "(" + ", ".join(str(p).replace("inf", "∞") for p in params) + ")"


def _target_row(rname: str, dname: str, res: dict) -> str:
    """One row of the targets table: ratio to normal_, its target, and the speed-up over torch."""
    rates, floor = res["rates"], res["rates"].get("normal_")
    ours, theirs = rates.get("modelsurgeon"), rates.get("torch")
    limit = 2.0 if rname == "central" else 5.0
    ratio = floor / ours if ours and floor else math.inf
    if theirs:
        speedup = f"{ours / theirs:.1f}x" if ours else "—"
        faster = "yes" if ours and ours > theirs else "**no**"
    else:
        speedup, faster = "— (torch raises)", "n/a"
    met = "yes" if ratio <= limit else "**no**"
    return f"| {rname} | {dname} | {ratio:.1f}x | <= {limit:g}x | {met} | {speedup} | {faster} |"


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write the markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/sampler.md"))
    parser.add_argument("--n", type=int, default=10_000_000, help="values per float32 fill")
    parser.add_argument("--n-other", type=int, default=1_000_000, help="values per float64/16/bf16 fill")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats of each float32 fill")
    parser.add_argument(
        "--repeats-other",
        type=int,
        default=15,
        help="repeats of each float64/16/bf16 fill: their fills take ~5 ms, where one hiccup of the machine "
        "moves a median of 5",
    )
    parser.add_argument("--torch-cap", type=float, default=3.0, help="seconds; slower fills use 1e5 values")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads (1: see the noise note in the report)"
    )
    parser.add_argument("--dtypes", default="float32,float64,float16,bfloat16")
    parser.add_argument("--calls", type=int, default=300, help="calls per fill in the per-call table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    per_call = _per_call_rows(args.calls)
    regimes = {r[0]: r[1:] for r in REGIMES}
    rows, verdicts, targets = [], [], []
    for dname in args.dtypes.split(","):
        dtype = _DTYPES[dname]
        n = args.n if dtype == torch.float32 else args.n_other
        repeats = args.repeats if dtype == torch.float32 else args.repeats_other
        for rname in _BENCH_REGIMES:
            params = regimes[rname]
            res = _bench_case(params, dtype, n, repeats, args.torch_cap)
            floor = res["rates"].get("normal_")
            cells = []
            for name in ("modelsurgeon", "torch", "timm"):
                rate = res["rates"].get(name)
                note = res["status"].get(name, "")
                ratio = f"{floor / rate:.1f}x" if rate and floor else note
                cells.append(f"{_fmt_rate(rate)} ({ratio}{'; ' + note if note and rate else ''})")
            rows.append(f"| {rname} | {dname} | {_fmt_rate(floor)} | " + " | ".join(cells) + " |")
            targets.append(_target_row(rname, dname, res))
            verdict = []
            for k, name in enumerate(("modelsurgeon", "torch", "timm")):
                ok, detail = battery_case(IMPLS[name], *params, dtype, 20_000, 77 + k)
                verdict.append(("pass" if ok else "FAIL") + f" ({detail})")
            verdicts.append(f"| {rname} | {dname} | " + " | ".join(verdict) + " |")
            print(rows[-1], flush=True)
    cmd = "python benchmarks/sampler.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = [
        "# Sampler accuracy and speed",
        "",
        f"Generated by `{cmd.strip()}` (`make bench`) on {platform.machine()} / {platform.system()},"
        f" torch {torch.__version__}, torch.set_num_threads({args.threads}), {os.cpu_count()} CPUs.",
        "",
        "**Threads:** 1 by default (`make bench` passes `--threads 1` as well). torch's RNG (normal_,",
        "uniform_) is serial whatever the thread count, and on this shared machine torch's multi-threaded",
        "elementwise ops slow down by 10-100x under contention (OpenMP barrier waits): an earlier run with",
        "the machine default of 2 threads measured every truncating method 15-800x slower than normal_.",
        "Rerun with `--threads N` to compare.",
        "",
        "**Noise:** this machine is shared with other jobs (load above the core count while this ran), so",
        "absolute rates are noisy; the four fills of a row run interleaved (medians of the repeats), which",
        "keeps their ratios comparable, but a ratio can still move by 10-30% between runs.",
        "",
        "## Speed: million values per second (time relative to `normal_`, lower is better)",
        "",
        f"float32 rows use {args.n:.0e} values, the other dtypes {args.n_other:.0e}; medians of"
        f" {args.repeats} (float32) and {args.repeats_other} (the others) interleaved repeats. `normal_`"
        " does not truncate: it is the floor.",
        "",
        "| regime | dtype | normal_ | modelsurgeon | torch trunc_normal_ | timm trunc_normal_ |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "## Targets (issue 3)",
        "",
        "modelsurgeon's time relative to `normal_`: within 2x for the central interval, within 5x in every",
        "regime, and faster than torch's trunc_normal_ wherever torch runs (its 1e5-value rate when capped).",
        "",
        "| regime | dtype | ours / normal_ | target | met | speed-up over torch | faster than torch |",
        "|---|---|---|---|---|---|---|",
        *targets,
        "",
        "## Per call on small tensors: median microseconds (lower is better)",
        "",
        f"float32, {args.calls} calls of each, interleaved call by call. Here the fixed cost of a call",
        "shows: planning (cached per parameter set; the second column clears the cache before every call)",
        "and the handful of small ops that find and refill rejections.",
        "",
        "| fill | " + " | ".join(_PER_CALL_IMPLS) + " |",
        "|---|" + "---|" * len(_PER_CALL_IMPLS),
        *per_call,
        "",
        "## Accuracy: the battery of tests/test_sampler.py on each implementation",
        "",
        "20 000 draws each; hard checks (finite, inside [a, b], dtype and shape kept) then KS against",
        "scipy.stats.truncnorm, or chi-square against the exact mass of each representable value's rounding",
        f"cell; pass at p >= {1e-3:g} / number of battery tests (Bonferroni).",
        "",
        "| regime | dtype | modelsurgeon | torch | timm |",
        "|---|---|---|---|---|",
        *verdicts,
        "",
        "Regimes (mean, std, a, b): " + "; ".join(f"{r} = {_fmt_params(regimes[r])}" for r in _BENCH_REGIMES),
        "",
    ]
    args.out.write_text("\n".join(text))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
