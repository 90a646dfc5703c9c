"""Statistical battery and properties of modelsurgeon.sampler.

False alarms: every statistical test here (KS or chi-square p-value) is compared with
``ALPHA_FAMILY / N_STAT_TESTS`` (Bonferroni), so the whole file fails by chance with probability at most
``ALPHA_FAMILY = 1e-3``. Each test uses its own fixed seed, so a run is reproducible; the bound is over the
choice of seeds. The extreme-value checks use a per-check false-alarm rate of 1e-6.

Output that is effectively continuous (float32/float64 with more than 5000 representable values in
[a, b]) is compared with scipy.stats.truncnorm by KS. Otherwise (every float16/bfloat16 case, narrow
float32 cases) the counts of each representable value are compared by chi-square with the exact mass of
that value's rounding cell (round to nearest, rounded inward at the bounds), adjacent cells merged until
each bin expects at least 10 draws.
"""

import ast
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from modelsurgeon.sampler import (
    std_bounds,
    trunc_normal_,
    truncnorm_mean_std,
    truncnorm_pdf,
    truncnorm_ppf,
)

ALPHA_FAMILY = 1e-3

# (name, mean, std, a, b): a and b absolute.
REGIMES: list[tuple[str, float, float, float, float]] = [
    ("central", 0.0, 1.0, -2.0, 2.0),
    ("one_sided", 0.0, 1.0, 0.0, math.inf),
    ("both_infinite", 0.0, 1.0, -math.inf, math.inf),
    ("wide_asym", 0.0, 1.0, -1.0, 10.0),
    ("tail_3_4", 0.0, 1.0, 3.0, 4.0),
    ("tail_6_8", 0.0, 1.0, 6.0, 8.0),
    ("tail_9_inf", 0.0, 1.0, 9.0, math.inf),
    ("tail_20_21", 0.0, 1.0, 20.0, 21.0),
    ("tail_left_30", 0.0, 1.0, -math.inf, -30.0),
    ("tail_39_40", 0.0, 1.0, 39.0, 40.0),
    ("narrow_center", 0.0, 1.0, -5e-8, 5e-8),
    ("narrow_tail", 0.0, 1.0, 5.0, 5.0 + 1e-7),
    ("mean_outside", 3.0, 1.0, -1.0, 0.0),
    ("tiny_std", 0.0, 2e-5, -4e-5, 4e-5),
    ("huge_std", 0.0, 1e4, -2e4, 2e4),
    ("shifted", 1.5, 0.25, 1.0, 2.5),
    # One-uniform mixtures with a residual share large enough to show (1.5%): uniform g, tail and center.
    ("narrow_3", 0.0, 1.0, 3.0, 3.01),
    ("narrow_mid", 0.0, 1.0, -0.125, 0.25),
]
# (mean, std, a, b, dtype, kind): the residual h = (f - w g) / (1 - w) of each mixture kind, tested alone.
RESIDUAL_CASES = [
    (0.0, 1.0, 3.0, 4.0, torch.float64, "emix64"),
    (0.0, 1.0, 3.0, 3.01, torch.float64, "umix64"),
    (0.0, 1.0, -0.125, 0.25, torch.float32, "umix32"),
]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
N_DRAWS = 20_000
# the battery, the global-RNG case, the many-chunks case, the pool fallback (2), the residuals, Box-Muller
N_STAT_TESTS = len(REGIMES) * len(DTYPES) + 4 + len(RESIDUAL_CASES) + 1
P_MIN = ALPHA_FAMILY / N_STAT_TESTS
_INT = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32}

Fill = Callable[..., torch.Tensor]


def _representable(lo: float, hi: float, dtype: torch.dtype, limit: int = 5000) -> np.ndarray | None:
    """Sorted finite values of ``dtype`` in [lo, hi], or None when there are more than ``limit``."""
    if dtype == torch.float64:
        return None
    if dtype in (torch.float16, torch.bfloat16):  # all 65536 bit patterns: always enumerable
        bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
        vals = bits.view(dtype).double().numpy()
    else:
        big = float(np.finfo(np.float32).max)
        v = np.float32(max(lo, -big))
        if float(v) < lo:
            v = np.nextafter(v, np.float32(np.inf))
        out: list[float] = []
        while float(v) <= min(hi, big) and len(out) <= limit:
            out.append(float(v))
            v = np.nextafter(v, np.float32(np.inf))
        if len(out) > limit:
            return None
        vals = np.array(out)
    vals = np.unique(vals[np.isfinite(vals) & (vals >= lo) & (vals <= hi)])
    return None if len(vals) > limit and dtype == torch.float32 else vals


def _cell_masses(vals: np.ndarray, mean: float, std: float, a: float, b: float) -> np.ndarray:
    """Exact probability of each value's rounding cell, rounded inward at a and b."""
    dist = stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)
    edges = np.concatenate([[a], (vals[:-1] + vals[1:]) / 2, [b]])
    # sf differences in the right half and cdf differences in the left keep the tails accurate.
    right = edges > mean
    upper = np.where(right, dist.sf(edges), dist.cdf(edges))
    masses = np.where(right[1:] & right[:-1], upper[:-1] - upper[1:], 0.0)
    left = ~right[1:]
    masses = np.where(left, upper[1:] - upper[:-1], masses)
    mixed = right[1:] & ~right[:-1]
    masses = np.where(mixed, 1.0 - upper[:-1] - upper[1:], masses)
    return np.clip(masses, 0.0, None)


def _chi_square(x: np.ndarray, vals: np.ndarray, masses: np.ndarray) -> float:
    idx = np.searchsorted(vals, x)
    idx = np.clip(idx, 0, len(vals) - 1)
    if not np.all(vals[idx] == x):
        return 0.0  # a value that is not a representable value inside [a, b]
    counts = np.bincount(idx, minlength=len(vals)).astype(float)
    expected = masses / masses.sum() * len(x)
    obs_bins, exp_bins, o, e = [], [], 0.0, 0.0
    for oc, ec in zip(counts, expected, strict=True):
        o, e = o + oc, e + ec
        if e >= 10.0:
            obs_bins.append(o)
            exp_bins.append(e)
            o, e = 0.0, 0.0
    if exp_bins:
        obs_bins[-1] += o
        exp_bins[-1] += e
    if len(exp_bins) < 2:
        return 1.0 if o + sum(obs_bins) == len(x) else 0.0
    obs, exp = np.array(obs_bins), np.array(exp_bins)
    stat = float(((obs - exp) ** 2 / exp).sum())
    return float(stats.chi2.sf(stat, len(exp) - 1))


def battery_case(
    fill: Fill, mean: float, std: float, a: float, b: float, dtype: torch.dtype, n: int, seed: int
) -> tuple[bool, str]:
    """Draw n values with ``fill`` and judge them: hard checks, then KS or chi-square.

    Args:
        fill: A function with torch.nn.init.trunc_normal_'s signature (``generator=`` keyword optional).
        mean: Mean of the untruncated normal.
        std: Its standard deviation.
        a: Absolute lower bound.
        b: Absolute upper bound.
        dtype: Output dtype.
        n: Number of draws.
        seed: Seed of the generator passed to ``fill``.

    Returns:
        ``(passed, detail)``; ``detail`` names the failed check or gives the p-value.
    """
    t = torch.empty(n, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    try:
        out = fill(t, mean, std, a, b, generator=gen)
    except Exception as exc:
        return False, f"raises {type(exc).__name__}"
    if out is not None and out is not t:
        return False, "does not return the tensor"
    if t.dtype != dtype or t.shape != (n,):
        return False, "dtype/shape changed"
    x = t.double().numpy()
    if not np.all(np.isfinite(x)):
        return False, f"{int((~np.isfinite(x)).sum())} non-finite"
    if not np.all((x >= a) & (x <= b)):
        return False, f"{int(((x < a) | (x > b)).sum())} outside [a, b]"
    vals = _representable(a, b, dtype)
    if vals is None:
        p = float(stats.kstest(x, stats.truncnorm((a - mean) / std, (b - mean) / std, mean, std).cdf).pvalue)
        test = "KS"
    else:
        p = _chi_square(np.sort(x), vals, _cell_masses(vals, mean, std, a, b))
        test = "chi2"
    return p >= P_MIN, f"{test} p={p:.3g}"


def _ours(t: torch.Tensor, mean: float, std: float, a: float, b: float, **kw: object) -> torch.Tensor:
    return trunc_normal_(t, mean, std, a, b, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("regime", REGIMES, ids=lambda r: r[0])
def test_battery(regime: tuple[str, float, float, float, float], dtype: torch.dtype) -> None:
    name, mean, std, a, b = regime
    seed = 1000 * REGIMES.index(regime) + DTYPES.index(dtype)
    ok, detail = battery_case(_ours, mean, std, a, b, dtype, N_DRAWS, seed)
    assert ok, f"{name} {dtype}: {detail}"


@pytest.mark.filterwarnings("ignore:mean is more than 2 std")
def test_battery_detects_timm_fp16_lattice() -> None:
    """The battery must be able to fail: timm's inverse-CDF sampler in float16 on [3, 4] fails it."""
    timm_layers = pytest.importorskip("timm.layers")

    def timm_fill(t: torch.Tensor, mean: float, std: float, a: float, b: float, **_: object) -> torch.Tensor:
        return timm_layers.trunc_normal_(t, mean, std, a, b)

    torch.manual_seed(0)
    ok, detail = battery_case(timm_fill, 0.0, 1.0, 3.0, 4.0, torch.float16, N_DRAWS, 0)
    assert not ok, detail


def test_global_rng_when_no_generator() -> None:
    torch.manual_seed(123)
    x = trunc_normal_(torch.empty(N_DRAWS, dtype=torch.float64), 0.0, 1.0, -1.0, 3.0)
    torch.manual_seed(123)
    y = trunc_normal_(torch.empty(N_DRAWS, dtype=torch.float64), 0.0, 1.0, -1.0, 3.0)
    assert torch.equal(x, y)
    p = stats.kstest(x.numpy(), stats.truncnorm(-1.0, 3.0).cdf).pvalue
    assert p >= P_MIN


@pytest.mark.parametrize("std", [2e-5, 0.02])
def test_extreme_values_stay_within_reach(std: float) -> None:
    """timm's sampler sometimes writes exactly -2.0 for std=2e-5: far beyond what n draws can reach."""
    n = 200_000
    t = trunc_normal_(torch.empty(n), 0.0, std, -2.0, 2.0, generator=torch.Generator().manual_seed(7))
    # P(max |x| > reach) <= 1e-6 for n exact draws.
    reach = float(truncnorm_ppf(1.0 - 0.5e-6 / n, 0.0, std, -2.0, 2.0)) * (1 + 1e-6)
    assert float(t.abs().max()) <= reach
    assert float(t.abs().max()) > 3 * std  # and the tails are actually reached


def test_many_chunks_and_remainder_rounds() -> None:
    """More than one CPU chunk (2^17 values): every rejected position in every chunk is refilled."""
    n = 3 * 2**17 + 5
    gen = torch.Generator().manual_seed(11)
    # central keeps rejected proposals unclamped (|z| > 2): a position left unfilled would show.
    c = trunc_normal_(torch.empty(n), 0.0, 1.0, -2.0, 2.0, generator=gen)
    assert bool((c.abs() <= 2.0).all())
    w = trunc_normal_(torch.empty(n), 0.0, 1.0, -1.0, 10.0, generator=gen)  # rounds and the outside share
    assert bool(((w >= -1.0) & (w <= 10.0)).all())
    assert stats.kstest(w.double().numpy(), stats.truncnorm(-1.0, 10.0).cdf).pvalue >= P_MIN


def test_pool_falls_back_to_inverse_cdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no proposal rounds allowed, the pool refills every rejected position by inverse CDF, exactly."""
    from modelsurgeon import sampler
    from modelsurgeon.sampler import _Plan, _Pool

    plan = _Plan(0.0, 1.0, -2.0, 2.0, torch.float32)
    assert plan.p_out == 0.0  # central float32 takes the pool path
    monkeypatch.setattr(sampler, "_MAX_ROUNDS", 0)
    dist = stats.truncnorm(-2.0, 2.0)
    # The fallback's draws alone (a subtle error would drown among the accepted proposals of a tensor).
    pool = _Pool(plan, torch.device("cpu"), torch.Generator().manual_seed(17))
    alone = torch.cat([pool.take(N_DRAWS // 2, N_DRAWS).clone(), pool.take(N_DRAWS // 2, 0).clone()])
    assert stats.kstest(alone.double().numpy(), dist.cdf).pvalue >= P_MIN
    n = 2 * 2**17 + 3
    c = trunc_normal_(torch.empty(n), 0.0, 1.0, -2.0, 2.0, generator=torch.Generator().manual_seed(13))
    assert bool((c.abs() <= 2.0).all())  # an unfilled rejected proposal (|z| > 2) would show
    assert stats.kstest(c.double().numpy(), dist.cdf).pvalue >= P_MIN


@pytest.mark.parametrize("case", RESIDUAL_CASES, ids=lambda c: c[-1])
def test_mixture_residual_follows_its_density(
    case: tuple[float, float, float, float, torch.dtype, str],
) -> None:
    """The residual draws of a mixture kind, alone, against their exact CDF (F - w G) / (1 - w)."""
    from modelsurgeon.sampler import _fill_residual, _Plan, _Scratch

    mean, std, a, b, dtype, kind = case
    plan = _Plan(mean, std, a, b, dtype)
    assert plan.kind == kind and 0.0 < plan.acc < 1.0
    n = N_DRAWS
    out = torch.empty(n, dtype=dtype)
    gen = torch.Generator().manual_seed(31 + RESIDUAL_CASES.index(case))
    _fill_residual(out, torch.arange(n), plan, _Scratch(torch.device("cpu")), gen)
    x = out.double().numpy()
    assert np.all((x >= a) & (x <= b))
    dist = stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)
    w, alpha, beta = plan.acc, plan.alpha, plan.beta

    def cdf(v: np.ndarray) -> np.ndarray:
        z = (v - mean) / std
        if kind.startswith("emix"):
            g = -np.expm1(-plan.lam * (z - alpha)) / plan.mass
        else:
            g = (z - alpha) / (beta - alpha)
        return np.clip((dist.cdf(v) - w * g) / (1.0 - w), 0.0, 1.0)

    assert stats.kstest(x, cdf).pvalue >= P_MIN


def test_float64_box_muller_is_standard_normal_and_pairs_are_independent() -> None:
    """float64 normal proposals: N(0, 1) by KS, halves uncorrelated (5 sigma), within Box-Muller's reach."""
    from modelsurgeon.sampler import _normal64_, _Scratch

    n = 200_001  # odd: the last sine is dropped
    z = _normal64_(
        torch.empty(n, dtype=torch.float64), _Scratch(torch.device("cpu")), torch.Generator().manual_seed(41)
    )
    x = z.numpy()
    assert np.all(np.isfinite(x)) and np.abs(x).max() <= math.sqrt(106 * math.log(2.0))
    assert stats.kstest(x, stats.norm.cdf).pvalue >= P_MIN
    h = (n + 1) // 2
    # cos and sin of the same pair are independent: neither they nor their squares (the radius) correlate.
    for f in (lambda v: v, np.square):
        r = np.corrcoef(f(x[: n - h]), f(x[h:]))[0, 1]
        assert abs(r) < 5.0 / math.sqrt(n - h)


def test_rejected_positions_block_search_matches_nonzero() -> None:
    from modelsurgeon.sampler import _rejected, _Scratch

    scratch = _Scratch(torch.device("cpu"))
    gen = torch.Generator().manual_seed(3)
    for n in (1000, 2**17, 2**17 - 5):
        for p in (0.0, 1e-4, 1e-2, 0.5):
            score = torch.rand(n, generator=gen)
            want = torch.nonzero(score > 1.0 - p).view(-1)
            both = torch.nonzero((score > 1.0 - p / 2) | (score < p / 2)).view(-1)
            for block in (0, 64, 1024):
                assert torch.equal(_rejected(score, -math.inf, 1.0 - p, block, scratch), want)
                assert torch.equal(_rejected(score, p / 2, 1.0 - p / 2, block, scratch), both)


def test_bernoulli_subset_counts_and_positions() -> None:
    """Geometric gaps give n independent Bernoulli(p) trials (5-sigma checks, false alarm < 1e-6 each)."""
    from modelsurgeon.sampler import _bernoulli_subset

    gen = torch.Generator().manual_seed(5)
    n, p, runs = 200_000, 0.01, 50
    picks = [_bernoulli_subset(n, p, torch.device("cpu"), gen) for _ in range(runs)]
    for pos in picks:
        assert bool((pos.diff() > 0).all()) and int(pos.min()) >= 0 and int(pos.max()) < n
    total = sum(pos.numel() for pos in picks)
    assert abs(total - runs * n * p) < 5 * math.sqrt(runs * n * p * (1 - p))
    mean_pos = float(torch.cat(picks).double().mean())
    assert abs(mean_pos - (n - 1) / 2) < 5 * n / math.sqrt(12 * total)
    assert torch.equal(_bernoulli_subset(7, 1.0, torch.device("cpu"), gen), torch.arange(7))


def test_generator_determinism_and_shape() -> None:
    for dtype in DTYPES:
        x = torch.empty(3, 5, 7, dtype=dtype)
        y = torch.empty(3, 5, 7, dtype=dtype)
        trunc_normal_(x, 0.1, 2.0, -1.0, 4.0, generator=torch.Generator().manual_seed(5))
        trunc_normal_(y, 0.1, 2.0, -1.0, 4.0, generator=torch.Generator().manual_seed(5))
        assert x.shape == (3, 5, 7) and x.dtype == dtype
        assert torch.equal(x.view(-1).view(torch.uint8), y.view(-1).view(torch.uint8))
        z = trunc_normal_(torch.empty(3, 5, 7, dtype=dtype), 0.1, 2.0, -1.0, 4.0, generator=torch.Generator())
        assert not torch.equal(x, z)


def test_non_contiguous_and_empty() -> None:
    base = torch.zeros(40, 30)
    view = base.t()
    out = trunc_normal_(view, 0.0, 1.0, 0.5, 1.5, generator=torch.Generator().manual_seed(1))
    assert out is view
    assert bool(((base >= 0.5) & (base <= 1.5)).all())
    empty = torch.empty(0, 3)
    assert trunc_normal_(empty) is empty


def test_point_interval_and_single_value() -> None:
    t = trunc_normal_(torch.empty(100), 0.0, 1.0, 0.5, 0.5)
    assert bool((t == 0.5).all())
    # [1, 1 + 1e-4] holds only 1.0 in float16
    h = trunc_normal_(torch.empty(100, dtype=torch.float16), 0.0, 1.0, 1.0, 1.0 + 1e-4)
    assert bool((h == 1.0).all())


def test_cached_plans_keep_parameters_apart() -> None:
    """Plans are cached per exact parameter set: -0.0 and 0.0 compare equal but give different fills,
    and a second call with other parameters must not reuse the first plan."""
    from modelsurgeon import sampler

    sampler._PLANS.clear()  # so that `first` below builds its plan and `again` finds it cached
    neg = trunc_normal_(torch.empty(4), 0.0, 1.0, -0.0, -0.0)
    pos = trunc_normal_(torch.empty(4), 0.0, 1.0, 0.0, 0.0)
    assert bool(neg.signbit().all()) and not bool(pos.signbit().any())
    gen = torch.Generator().manual_seed(5)
    first = trunc_normal_(torch.empty(1000), 0.0, 1.0, 3.0, 4.0, generator=gen)
    second = trunc_normal_(torch.empty(1000), 0.0, 1.0, -4.0, -3.0, generator=gen)
    assert bool(((first >= 3.0) & (first <= 4.0)).all()) and bool(((second >= -4.0) & (second <= -3.0)).all())
    again = trunc_normal_(torch.empty(1000), 0.0, 1.0, 3.0, 4.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again, first)  # a cached plan draws what a fresh one drew


def test_no_grad_and_requires_grad_leaf() -> None:
    w = torch.empty(10, requires_grad=True)
    trunc_normal_(w)
    assert w.requires_grad and w.grad_fn is None


@pytest.mark.parametrize(
    ("mean", "std", "a", "b", "match"),
    [
        (math.nan, 1.0, -2.0, 2.0, "mean is NaN"),
        (0.0, math.nan, -2.0, 2.0, "std is NaN"),
        (0.0, 1.0, math.nan, 2.0, "a is NaN"),
        (0.0, 1.0, -2.0, math.nan, "b is NaN"),
        (0.0, 0.0, -2.0, 2.0, "std=0.0 must be"),
        (0.0, -1.0, -2.0, 2.0, "std=-1.0 must be"),
        (0.0, math.inf, -2.0, 2.0, "must be finite"),
        (math.inf, 1.0, -2.0, 2.0, "mean=inf must be finite"),
        (0.0, 1.0, 2.0, -2.0, "a=2.0 > b=-2.0"),
        (0.0, 1.0, math.inf, math.inf, "no finite"),
    ],
)
def test_bad_parameters_raise(mean: float, std: float, a: float, b: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        trunc_normal_(torch.empty(4), mean, std, a, b)


def test_no_representable_value_raises() -> None:
    with pytest.raises(ValueError, match="no finite float16"):
        trunc_normal_(torch.empty(4, dtype=torch.float16), 0.0, 1.0, 1.0001, 1.0002)


def test_std_bounds() -> None:
    assert std_bounds(1.0, 2.0, -2.0, 3.0) == (-3.0, 7.0)


def test_sampler_imports_only_math_and_torch() -> None:
    import modelsurgeon.sampler as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0] if node.level == 0 else ".")
    assert imported <= {"math", "torch"}, imported


STAT_CASES = [
    (0.0, 1.0, -2.0, 2.0),
    (0.0, 1.0, 0.0, math.inf),
    (0.5, 2.0, -math.inf, 1.0),
    (0.0, 1.0, 20.0, 21.0),
    (0.0, 1.0, -math.inf, -30.0),
    (0.0, 1.0, 8.0, math.inf),
    (3.0, 1.0, -1.0, 0.0),
]


@pytest.mark.parametrize("case", STAT_CASES)
def test_exact_statistics_match_scipy(case: tuple[float, float, float, float]) -> None:
    mean, std, a, b = case
    dist = stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)
    m, s = truncnorm_mean_std(mean, std, a, b)
    assert m == pytest.approx(float(dist.mean()), rel=1e-9, abs=1e-12)
    assert s == pytest.approx(float(dist.std()), rel=1e-6)
    q = np.array([1e-6, 1e-3, 0.1, 0.5, 0.9, 0.999, 1 - 1e-6])
    ppf = truncnorm_ppf(torch.from_numpy(q), mean, std, a, b).numpy()
    np.testing.assert_allclose(ppf, dist.ppf(q), rtol=1e-9, atol=1e-12)
    pdf = truncnorm_pdf(torch.from_numpy(dist.ppf(q)), mean, std, a, b).numpy()
    np.testing.assert_allclose(pdf, dist.pdf(dist.ppf(q)), rtol=1e-8)


def test_pdf_is_zero_outside_and_ppf_hits_bounds() -> None:
    assert float(truncnorm_pdf(torch.tensor([-3.0, 3.0]), 0.0, 1.0, -2.0, 2.0).abs().sum()) == 0.0
    ends = truncnorm_ppf(torch.tensor([0.0, 1.0]), 0.0, 1.0, -2.0, 2.0)
    assert ends.tolist() == [-2.0, 2.0]


_finite = st.floats(-50.0, 50.0, allow_nan=False)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    mean=_finite,
    log_std=st.floats(-6.0, 4.0),
    a_rel=st.floats(-45.0, 45.0),
    width=st.one_of(st.floats(1e-6, 60.0), st.just(math.inf)),
    dtype=st.sampled_from(DTYPES),
    shape=st.lists(st.integers(0, 7), min_size=0, max_size=3),
    seed=st.integers(0, 2**31 - 1),
)
def test_properties(
    mean: float, log_std: float, a_rel: float, width: float, dtype: torch.dtype, shape: list[int], seed: int
) -> None:
    std = 10.0**log_std
    a = mean + a_rel * std
    b = a + width * std
    t = torch.empty(shape, dtype=dtype)
    try:
        trunc_normal_(t, mean, std, a, b, generator=torch.Generator().manual_seed(seed))
    except ValueError as exc:  # only allowed when [a, b] holds no value of the dtype
        assert "contains no finite" in str(exc)
        vals = _representable(a, b, dtype, limit=1)
        assert vals is not None and len(vals) == 0, (a, b, vals)
        return
    assert t.shape == tuple(shape) and t.dtype == dtype
    x = t.double()
    assert bool(torch.isfinite(x).all())
    assert bool(((x >= a) & (x <= b)).all())
    again = torch.empty(shape, dtype=dtype)
    trunc_normal_(again, mean, std, a, b, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(t.reshape(-1).view(torch.uint8), again.reshape(-1).view(torch.uint8))
