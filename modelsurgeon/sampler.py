"""The truncated normal: exact sampling and exact statistics. Imports only ``math`` and ``torch``.

Conventions: ``a`` and ``b`` are absolute bounds, as in :func:`torch.nn.init.trunc_normal_`; infinite bounds
are allowed. In standard units the interval is ``[alpha, beta] = [(a - mean) / std, (b - mean) / std]``.

How :func:`trunc_normal_` stays exact:

* The interval is mirrored so that most of its mass lies right of its left end, and one proposal is picked
  from its parameters alone (never from the data), by expected cost per accepted value:
  ``normal`` (N(0, 1), for central intervals), ``fold`` (|N(0, 1)|, for [alpha, beta] with alpha >= 0 near
  the mean), ``exp`` (Robert 1995: alpha + Exp(lambda)/..., lambda = (alpha + sqrt(alpha² + 4)) / 2, for
  tails and a mean outside [a, b]), ``unif`` (uniform on [alpha, beta]) or a one-uniform mixture (below).
  The ``exp`` and ``unif`` acceptance tests run in log space: ``log U2 + (log-density gap) > 0`` rejects.
* Where f is close to a distribution that one uniform gives by a transform, a one-uniform mixture replaces
  rejection: ``umix`` (g uniform on [alpha, beta], narrow intervals) or ``emix`` (g the exponential with
  rate (alpha + beta) / 2 truncated to a finite tail interval). f = w g + (1 - w) h with w = min f / g
  (computed from the parameters; Gauss-Legendre for the narrow ``umix`` residual mass, so 1 - w does not
  cancel). Every element gets a draw from g; a Bernoulli(1 - w) subset of positions (geometric gaps) is
  then redrawn from h by float64 rejection from g, chunk by chunk (so positions, proposals and writes
  stay in the cache). Exact: each position is g with probability w, else h.
* Every element gets one proposal, written in place chunk by chunk (2^19 values on CPU, 2^17 where
  rejections are frequent; scratch buffers reused). Uniforms come from ``random_`` integers (24 bits
  each in float32, two from one 63-bit integer where a proposal needs two; 53 bits in float64), the grid
  ``uniform_`` uses, at a lower cost. Accepted
  values follow the target f restricted to the set ``C`` where the proposal is accurate (torch's float32
  ``normal_`` is Box-Muller on 24-bit uniforms, so it is trusted on [-4, 4] only; float32
  exponentials are cut at E <= 12 ln 2). The rejected positions (``nonzero``, or block maxima first when
  rejections are rare) are filled at the end. Each needs a draw from ``h0 = (f - acc·f|C) / (1 -
  acc)``: a Bernoulli(``p_out``) subset of them (picked by geometric gaps, O(k p_out) work) is drawn from
  f outside C by inverse CDF, the rest from f|C by further rounds of proposals over the shrinking
  remainder (accepted proposals are iid f|C, so they fill the remaining positions in order), at most 8
  rounds, then inverse CDF. Where every rejected position needs a draw from f|C (``p_out`` = 0, e.g.
  central intervals) and rejections are frequent, each chunk's rejected positions are instead filled at
  once, in order, by one ``masked_scatter_`` from a pool of accepted proposals made in batches of at least
  2^17 (``_Pool``; the same argument: they are iid f|C and independent of which positions were rejected).
  No loop runs over the whole tensor except the fixed chunk loop.
* The inverse CDF works in the left tail in log space (``log_ndtr``, ``ndtri``; Newton steps on
  ``log_ndtr`` below p = 1e-304), so tails to 40 sigma and beyond are exact.
* Float32, float16 and bfloat16 outputs use float32 proposals and arithmetic; the affine map to the output
  runs in float64 only for a float32 output whose float32 map would round twice (normal/fold proposals
  with mean != 0, or no float32-exact origin). Float64 output uses float64 throughout (53-bit uniforms;
  its normal proposals come from a vectorised Box-Muller, the transform torch's float64 ``normal_`` uses).
  Values are rounded to the output dtype (round to nearest) and clamped to the representable values
  inside [a, b], so float16/bfloat16 values are the exact draw rounded to nearest, rounded inward at the
  bounds.

Known limits of "exact" (float32 proposals, i.e. float32/float16/bfloat16 outputs): torch's float32
``normal_`` and ``uniform_`` use 24-bit uniforms, so proposal values sit on an absolute grid rather than at
float32's relative precision: ``normal_`` near zero and in the far end of [-4, 4] (finer than 4e-7 sigma),
``exp``/``emix`` offsets from the near bound (E on a grid from 6e-8 near the bound to 2^-12 at the cut;
this holds also when the near bound is 0, e.g. a mean outside [a, b] with b = 0), ``unif``/``umix`` at
2^-24 of the width.
The float32 acceptance tests (``exp``, ``unif``) compare with a 24-bit uniform, so each acceptance
probability is rounded to a multiple of 2^-24 (a relative density error below 6e-8). Together these move
less than 1e-6 of the mass and no float16/bfloat16 cell measurably.
"""

import math

import torch

__all__ = ["std_bounds", "trunc_normal_", "truncnorm_mean_std", "truncnorm_pdf", "truncnorm_ppf"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_T32 = 4.0  # float32 normal_ proposals are trusted on [-_T32, _T32]
_T64 = 8.0  # float64 normal_ proposals (53-bit uniforms) are trusted on [-_T64, _T64]
_EMAX32 = 12.0 * math.log(2.0)  # float32 exponentials used only where u >= 2^-12 (grid finer than 2^-12)
_EMAX64 = 30.0
_MAX_ROUNDS = 8
# CPU chunks of 2^19 values: scratch buffers stay in L3, the ~15 small per-chunk ops stay a few %. Where
# rejections are frequent (nonzero over every chunk), 2^17 values measure faster (L2).
_CHUNK_CPU = 1 << 19
_CHUNK_CPU_DENSE = 1 << 17
_FAR = 1e150  # |alpha| beyond this is numerically infinite (alpha² would overflow)
_LOW_PRECISION = (torch.float16, torch.bfloat16)
# Cost of one proposal of each kind, finding rejections included, in float32 normal_ draws (CPU, 1 thread).
_COST = {
    "normal32": 1.5,
    "fold32": 1.6,
    "exp32": 3.8,
    "unif32": 3.0,
    "umix32": 0.9,
    "emix32": 1.3,
    "normal64": 9.4,
    "fold64": 9.4,
    "exp64": 9.6,
    "unif64": 8.0,
    "umix64": 1.6,
    "emix64": 2.2,
}
# Extra cost of one residual draw of a mixture kind (picked by geometric gaps, drawn in float64 by
# rejection), in the same units, besides 1 / its acceptance rate times this per proposal.
_COST_RESIDUAL = 12.0
_COST_RESIDUAL_PROPOSAL = 8.0
_MIN_RES_ACC = 0.1  # mixtures only where the residual's rejection accepts at least this often
_MIX_MAX_Q = 0.1  # uniform mixtures only where the log density varies by at most this over [alpha, beta]
# 5-point Gauss-Legendre on [-1, 1]: exact for polynomials of degree 9.
_GL5 = (
    (0.0, 0.5688888888888889),
    (-0.5384693101056831, 0.4786286704993665),
    (0.5384693101056831, 0.4786286704993665),
    (-0.9061798459386640, 0.2369268850561891),
    (0.9061798459386640, 0.2369268850561891),
)


def std_bounds(mean: float, std: float, a: float, b: float) -> tuple[float, float]:
    """Turn bounds given in units of std around the mean (TensorFlow convention) into absolute bounds.

    Args:
        mean: Mean of the untruncated normal.
        std: Standard deviation of the untruncated normal.
        a: Lower bound in units of ``std`` around ``mean``.
        b: Upper bound in units of ``std`` around ``mean``.

    Returns:
        ``(mean + a * std, mean + b * std)``, the absolute bounds for :func:`trunc_normal_`.
    """
    return mean + a * std, mean + b * std


# ----------------------------------------------------------------------------------------------------------
# Scalar helpers (float64, via 0-d tensors: only math and torch are allowed here)


def _log_ndtr(x: float) -> float:
    return float(torch.special.log_ndtr(torch.tensor(x, dtype=torch.float64)))


def _log1mexp(x: float) -> float:
    """log(1 - exp(x)) for x <= 0, accurate everywhere."""
    if x == -math.inf:
        return 0.0
    return math.log(-math.expm1(x)) if x > -math.log(2.0) else math.log1p(-math.exp(x))


def _log_mass(lo: float, hi: float) -> float:
    """log(Phi(hi) - Phi(lo)) in standard units, accurate in both tails (-inf when empty)."""
    if not lo < hi:
        return -math.inf
    if lo + hi > 0:  # work on the side where Phi is small and exact
        lo, hi = -hi, -lo
    log_hi = _log_ndtr(hi)
    return log_hi + _log1mexp(_log_ndtr(lo) - log_hi)


def _standardize(mean: float, std: float, x: float) -> float:
    if math.isinf(x):
        return x
    z = (x - mean) / std
    if math.isinf(z):  # x - mean overflowed
        z = x / std - mean / std
    return z


def _validate(mean: float, std: float, a: float, b: float) -> None:
    names = {"mean": mean, "std": std, "a": a, "b": b}
    bad = [k for k, v in names.items() if math.isnan(v)]
    if bad:
        raise ValueError(f"truncated normal: {', '.join(bad)} is NaN — pass real numbers")
    if not (std > 0 and math.isfinite(std)):
        raise ValueError(f"truncated normal: std={std} must be finite and > 0")
    if not math.isfinite(mean):
        raise ValueError(f"truncated normal: mean={mean} must be finite")
    if a > b:
        raise ValueError(f"truncated normal: a={a} > b={b} — the lower bound must not exceed the upper bound")


# ----------------------------------------------------------------------------------------------------------
# Representable bounds


def _int_view(dtype: torch.dtype) -> torch.dtype:
    return {
        torch.float16: torch.int16,
        torch.bfloat16: torch.int16,
        torch.float32: torch.int32,
        torch.float64: torch.int64,
    }[dtype]


def _step(value: torch.Tensor, up: bool) -> torch.Tensor:
    """The next representable value above (``up``) or below a finite 0-d float tensor."""
    if value.item() == 0:
        tiny = torch.ones((), dtype=_int_view(value.dtype)).view(value.dtype)
        return tiny if up else -tiny
    bits = value.view(_int_view(value.dtype)).clone()
    bits += 1 if (value.item() > 0) == up else -1
    return bits.view(value.dtype)


def _inward_bounds(a: float, b: float, dtype: torch.dtype) -> tuple[float, float]:
    """The smallest representable value >= a and the largest <= b, both finite."""
    big = torch.finfo(dtype).max
    a_t = torch.tensor(a, dtype=torch.float64).to(dtype)
    b_t = torch.tensor(b, dtype=torch.float64).to(dtype)
    if a_t.item() == -math.inf:
        a_t = torch.tensor(-big, dtype=dtype)
    elif a_t.item() < a and math.isfinite(a_t.item()):
        a_t = _step(a_t, up=True)
    if b_t.item() == math.inf:
        b_t = torch.tensor(big, dtype=dtype)
    elif b_t.item() > b and math.isfinite(b_t.item()):
        b_t = _step(b_t, up=False)
    a_in, b_in = float(a_t.item()), float(b_t.item())
    if not (math.isfinite(a_in) and math.isfinite(b_in) and a_in <= b_in):
        raise ValueError(
            f"truncated normal: [a, b] = [{a}, {b}] contains no finite {str(dtype).replace('torch.', '')}"
            " value — widen the interval or use a wider dtype"
        )
    return a_in, b_in


# ----------------------------------------------------------------------------------------------------------
# The plan: everything decided from the parameters alone


def _f32_exact(v: float) -> bool:
    return float(torch.tensor(v, dtype=torch.float32).item()) == v


# (cost per accepted value, kind, C low, C high, acceptance, k, residual acceptance); for the mixture kinds
# the acceptance is the weight w of g, and k / the residual acceptance drive the residual's rejection.
_Option = tuple[float, str, float, float, float, float, float]


class _Plan:
    """How to sample one parameter set: proposal kind, its accurate set C, rounds and fallback mixture."""

    def __init__(self, mean: float, std: float, a: float, b: float, dtype: torch.dtype) -> None:
        self.mean, self.std, self.dtype = mean, std, dtype
        self.a_in, self.b_in = _inward_bounds(a, b, dtype)
        self.point: float | None = None
        if self.a_in == self.b_in:
            self.point = self.a_in
            return
        alpha, beta = _standardize(mean, std, a), _standardize(mean, std, b)
        if alpha > _FAR or beta < -_FAR:  # numerically a point mass at the nearer bound
            self.point = self.a_in if alpha > _FAR else self.b_in
            return
        alpha = -math.inf if alpha < -_FAR else alpha
        beta = math.inf if beta > _FAR else beta
        # Mirror so that the interval's bulk lies right of alpha: alpha >= 0 (tail) or alpha < 0 < beta.
        self.sign = 1.0
        self.near = a
        if alpha + beta < 0 or (alpha == -math.inf and beta < math.inf):
            alpha, beta, self.sign, self.near = -beta, -alpha, -1.0, b
        self.alpha, self.beta = alpha, beta
        self.log_z = _log_mass(alpha, beta)
        self.a, self.b = a, b
        self._choose()
        self._fallback_mixture()

    def _origin32(self, *candidates: float) -> float | None:
        """The first candidate a float32 affine map can start from exactly (any for float16/bfloat16)."""
        for v in candidates:
            if self.dtype in _LOW_PRECISION or _f32_exact(v):
                return v
        return None

    def _options(self) -> list[_Option]:
        """Every usable proposal (see ``_Option``)."""
        alpha, beta, out = self.alpha, self.beta, []
        width = beta - alpha
        for bits in ("32", "64") if self.dtype != torch.float64 else ("64",):
            t = _T32 if bits == "32" else _T64
            lo, hi = max(alpha, -t), min(beta, t)
            log_m = _log_mass(lo, hi)
            if log_m > -math.inf:
                acc = math.exp(log_m)
                out.append((_COST["normal" + bits] / acc, "normal" + bits, lo, hi, acc, 0.0, 1.0))
                if alpha >= 0:
                    acc = min(1.0, 2.0 * acc)
                    out.append((_COST["fold" + bits] / acc, "fold" + bits, lo, hi, acc, 0.0, 1.0))
            if alpha >= 0 and (bits == "64" or self._origin32(self.near) is not None):
                lam = 0.5 * (alpha + math.hypot(alpha, 2.0))
                hi = min(beta, alpha + (_EMAX32 if bits == "32" else _EMAX64) / lam)
                log_acc = _log_mass(alpha, hi) + math.log(lam) + _LOG_SQRT_2PI + lam * alpha - 0.5 * lam * lam
                acc = min(1.0, math.exp(log_acc))
                if acc > 0:
                    out.append((_COST["exp" + bits] / acc, "exp" + bits, alpha, hi, acc, 0.0, 1.0))
            mid = 0.5 * (self.a + self.b)
            unif_ok = bits == "64" or self._origin32(self.near, mid) is not None
            if math.isfinite(width) and width > 0 and unif_ok:
                peak = min(max(0.0, alpha), beta)
                log_env = -0.5 * peak * peak - _LOG_SQRT_2PI + math.log(width)
                acc = min(1.0, math.exp(self.log_z - log_env))
                if acc > 0:
                    out.append((_COST["unif" + bits] / acc, "unif" + bits, alpha, beta, acc, 0.0, 1.0))
            out.extend(self._mixtures(bits, unif_ok))
        return out

    def _mixtures(self, bits: str, unif_ok: bool) -> list[_Option]:
        """One-uniform mixture options: f = w g + (1 - w) h, g sampled by a transform of one uniform.

        ``umix``: g uniform on [alpha, beta] (narrow intervals), w = width phi(beta) / Z (beta is the end
        with the lowest density after mirroring). ``emix`` (alpha >= 0, finite beta): g the exponential
        with rate lam = (alpha + beta) / 2 truncated to [alpha, beta], which makes f / g equal at both
        ends, so w = (f / g)(alpha). A Bernoulli(1 - w) subset of positions (geometric gaps) is then
        redrawn from h = (f - w g) / (1 - w) by rejection from g: accept when
        ``U2 * k < expm1(delta(z))``, where w (1 + expm1(delta)) = f / g and k = expm1(max delta).
        """
        alpha, beta = self.alpha, self.beta
        out: list[_Option] = []
        width = beta - alpha
        # float64 mixtures (float64 log1p, float64 output map) only pay off for float64 output.
        if not (math.isfinite(width) and width > 0) or (bits == "64" and self.dtype != torch.float64):
            return out
        peak = min(max(0.0, alpha), beta)
        q_max = 0.5 * (beta - peak) * (beta + peak)
        if unif_ok and q_max <= _MIX_MAX_Q:
            # R = integral of expm1((beta - |z|)(beta + |z|) / 2) over [alpha, beta], without cancellation.
            pieces = [(alpha, beta)] if alpha >= 0 else [(alpha, 0.0), (0.0, beta)]
            r = 0.0
            for lo, hi in pieces:
                half = 0.5 * (hi - lo)
                for x, wt in _GL5:
                    z = abs(lo + half * (1.0 + x))
                    d = half * (1.0 - x) if lo >= 0 else beta - z  # beta - z, exact near beta
                    r += wt * half * math.expm1(0.5 * d * (beta + z))
            k = math.expm1(q_max)
            w = width / (width + r)
            res_acc = r / (width * k) if k > 0 else 1.0
            if res_acc < _MIN_RES_ACC:  # pragma: no cover - about 1/2 or more below _MIX_MAX_Q
                return out
            cost = _COST["umix" + bits] + (1.0 - w) * (_COST_RESIDUAL + _COST_RESIDUAL_PROPOSAL / res_acc)
            out.append((cost, "umix" + bits, alpha, beta, w, k, res_acc))
        emax = _EMAX32 if bits == "32" else _EMAX64
        lam = 0.5 * (alpha + beta)
        if alpha >= 0 and lam * width <= emax and (bits == "64" or self._origin32(self.near) is not None):
            m = -math.expm1(-lam * width)
            log_w = -0.5 * alpha * alpha - _LOG_SQRT_2PI - self.log_z + math.log(m) - math.log(lam)
            w = min(1.0, math.exp(log_w))
            k = math.expm1(0.5 * (lam - alpha) ** 2)
            if 1.0 - w >= 1e-3 and k > 0 and (1.0 - w) / (w * k) >= _MIN_RES_ACC:  # 1 - w must not cancel
                res_acc = (1.0 - w) / (w * k)
                cost = _COST["emix" + bits] + (1.0 - w) * (_COST_RESIDUAL + _COST_RESIDUAL_PROPOSAL / res_acc)
                out.append((cost, "emix" + bits, alpha, beta, w, k, res_acc))
        return out

    def _choose(self) -> None:
        options = self._options()
        if not options:  # pragma: no cover - every nonempty interval has the uniform or the exp option
            raise ValueError(f"truncated normal: no sampler for [a, b] = [{self.a}, {self.b}]")
        _, self.kind, self.c_lo, self.c_hi, self.acc, self.mix_k, self.res_acc = min(options)
        self.mix = self.kind[:4] in ("umix", "emix")
        self.lam = 0.5 * (self.alpha + math.hypot(self.alpha, 2.0))
        if self.kind.startswith("emix"):
            self.lam = 0.5 * (self.alpha + self.beta)
            self.mass = -math.expm1(-self.lam * (self.beta - self.alpha))
        bits32 = self.kind.endswith("32")
        self.compute = torch.float32 if bits32 else torch.float64
        # The output is origin + scale * s, where s is the proposal (z for normal/fold, Exp/lambda for exp,
        # the uniform t, or t - 1/2, for unif). The map runs in float32 only where its rounding cannot show.
        kind = self.kind[:-2]
        self.center = False
        if kind in ("normal", "fold"):
            self.origin, self.scale = self.mean, self.sign * self.std
            affine32 = bits32 and (self.mean == 0 or self.dtype in _LOW_PRECISION)
        elif kind in ("exp", "emix"):
            self.origin, self.scale = self.near, self.sign * self.std
            affine32 = bits32
        else:
            mid = 0.5 * (self.a + self.b)
            origin = self._origin32(self.near, mid) if bits32 else self.near
            self.center = origin != self.near
            self.origin = mid if self.center else self.near
            self.scale = self.sign * (self.b - self.a)
            affine32 = bits32
        self.affine = torch.float32 if affine32 else torch.float64
        # Accepted normal/fold proposals mapped by +-1 already lie in [a, b]: no clamp needed for them.
        exact_c = all(math.isinf(c) or _f32_exact(c) or not bits32 for c in (self.c_lo, self.c_hi))
        self.clamp = not (
            kind in ("normal", "fold")
            and self.origin == 0.0
            and abs(self.scale) == 1.0
            and self.affine == self.compute
            and exact_c
            and (self.a == self.a_in or self.a == -math.inf)
            and (self.b == self.b_in or self.b == math.inf)
        )

    def _fallback_mixture(self) -> None:
        """Split what the first proposal rejects into the part C can serve and the part it cannot.

        A rejected element must get a draw from h0 = (f - acc * f|C) / (1 - acc), the mixture of f|C and
        f restricted to [alpha, beta] minus C ("out"). With probability ``p_out`` it is drawn from f|out by
        inverse CDF; otherwise it needs f|C, which further rejection rounds give exactly.
        """
        pieces = [(self.alpha, self.c_lo), (self.c_hi, self.beta)]
        if self.mix:  # g covers [alpha, beta]: the residual h is drawn by rejection alone
            self.p_out, self.out_pieces, self.out_cut = 0.0, pieces, 1.0
            return
        masses = [math.exp(_log_mass(lo, hi) - self.log_z) for lo, hi in pieces]
        out_share = masses[0] + masses[1]
        reject = 1.0 - self.acc
        self.p_out = min(1.0, out_share / reject) if reject > 0.0 else 0.0
        self.out_pieces = pieces
        self.out_cut = masses[0] / out_share if out_share > 0.0 else 1.0


_PLANS: dict[tuple[str, str, str, str, torch.dtype], _Plan] = {}
_MAX_PLANS = 256


def _plan(mean: float, std: float, a: float, b: float, dtype: torch.dtype) -> _Plan:
    """The plan for these parameters, cached: building one costs ~0.1 ms (scalar log_ndtr via torch), as
    much as sampling ~30k values, and model inits call trunc_normal_ with the same parameters per layer.

    Plans are never modified after construction. Keys are exact (``float.hex``: -0.0 is not 0.0).
    """
    key = (mean.hex(), std.hex(), a.hex(), b.hex(), dtype)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _Plan(mean, std, a, b, dtype)
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


# ----------------------------------------------------------------------------------------------------------
# Kernels


def _ndtri_log(log_p: torch.Tensor) -> torch.Tensor:
    """z with log Phi(z) = log_p (float64), exact far below p = 1e-304 via Newton steps on log_ndtr."""
    z = torch.special.ndtri(torch.exp(log_p))
    deep = log_p < -700.0
    if bool(deep.any()):
        lp = log_p[deep]
        t = -2.0 * lp
        zd = -torch.sqrt(t - torch.log(2.0 * math.pi * t))
        for _ in range(4):
            g = torch.special.log_ndtr(zd) - lp
            dlog = torch.exp(-0.5 * zd * zd - _LOG_SQRT_2PI - torch.special.log_ndtr(zd))
            zd = zd - g / dlog
        z[deep] = zd
    return z


def _ppf_std(u: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Inverse CDF of N(0, 1) truncated to [lo, hi] at u (float64 tensors), in log space in the tails."""
    flip = (lo + hi) > 0
    l2 = torch.where(flip, -hi, lo)
    h2 = torch.where(flip, -lo, hi)
    v = torch.where(flip, 1.0 - u, u)
    log_h = torch.special.log_ndtr(h2)
    ratio = torch.exp(torch.special.log_ndtr(l2) - log_h)
    z = _ndtri_log(log_h + torch.log(v + (1.0 - v) * ratio))
    z = torch.minimum(torch.maximum(z, l2), h2)
    return torch.where(flip, -z, z)


class _Scratch:
    """Scratch tensors reused across chunks and rounds, so the hot loop allocates nothing."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, dtype: torch.dtype, n: int) -> torch.Tensor:
        buf = self._bufs.get(name)
        if buf is None or buf.dtype != dtype or buf.numel() < n:
            buf = torch.empty(n, dtype=dtype, device=self.device)
            self._bufs[name] = buf
        return buf[:n]


def _uniform_pair(u: torch.Tensor, v: torch.Tensor, scratch: _Scratch, gen: torch.Generator | None) -> None:
    """Fill ``u`` and ``v`` with independent uniforms on [0, 1), as ``uniform_`` would (24-bit grid in
    float32, 53-bit in float64).

    Float32: both come from one 63-bit ``random_`` integer per element (bits 0-23 and 24-47), which is about
    half the cost of two ``uniform_`` calls (torch's ``uniform_`` pays a per-element overhead, not bits).
    """
    if u.dtype == torch.float64:
        u.uniform_(generator=gen)
        v.uniform_(generator=gen)
        return
    n = u.numel()
    bits = scratch.get("bits", torch.int64, n).random_(generator=gen)  # 63 uniform bits
    low = torch.bitwise_and(bits, 0xFFFFFF, out=scratch.get("low", torch.int64, n))
    torch.mul(low, 2.0**-24, out=u)
    torch.mul(bits.bitwise_right_shift_(24).bitwise_and_(0xFFFFFF), 2.0**-24, out=v)


def _uniform(u: torch.Tensor, scratch: _Scratch, gen: torch.Generator | None) -> torch.Tensor:
    """Fill ``u`` with uniforms on [0, 1) as ``uniform_`` would (24-bit grid in float32, 53-bit in float64),
    from ``random_`` integers (cheaper than ``uniform_``'s per-element path)."""
    n = u.numel()
    if u.dtype == torch.float64:
        bits = scratch.get("bits", torch.int64, n).random_(generator=gen)  # 63 uniform bits
        return torch.mul(bits.bitwise_and_((1 << 53) - 1), 2.0**-53, out=u)
    bits32 = scratch.get("bits32", torch.int32, n).random_(generator=gen)  # 31 uniform bits
    return torch.mul(bits32.bitwise_and_(0xFFFFFF), 2.0**-24, out=u)


def _normal64_(out: torch.Tensor, scratch: _Scratch, gen: torch.Generator | None) -> torch.Tensor:
    """Fill a float64 tensor with iid N(0, 1) draws: Box-Muller on 53-bit uniforms, as torch's float64
    ``normal_`` computes them, but as a few vectorised passes (about twice as fast on CPU).

    With V, T uniform on the 53-bit grid, R = sqrt(-2 log(1 - V)) and theta = 2 pi T, R cos(theta) fills
    the first half and R sin(theta) the second: the two are independent N(0, 1) (1 - V lies in (0, 1], so
    R is finite; |z| <= sqrt(106 ln 2) = 8.57, as for torch's own).
    """
    n = out.numel()
    h = (n + 1) // 2
    r = _uniform(scratch.get("bm_r", torch.float64, h), scratch, gen)
    theta = _uniform(scratch.get("bm_t", torch.float64, h), scratch, gen).mul_(2.0 * math.pi)
    r.neg_().add_(1.0).log_().mul_(-2.0).sqrt_()
    first, second = out[:h], out[h:]
    torch.cos(theta, out=first).mul_(r)
    torch.sin(theta[: n - h], out=second).mul_(r[: n - h])
    return out


def _propose_into(
    plan: _Plan, dst: torch.Tensor, scratch: _Scratch, gen: torch.Generator | None
) -> tuple[torch.Tensor, float, float]:
    """Write one proposal per element of ``dst`` (on the output scale, clamped to [a, b]).

    Returns:
        ``(score, lo, hi)``: the proposal at a position is rejected (not an accepted draw from f|C) where
        ``score`` lies outside [lo, hi]. ``score`` is valid until the next call (scratch or ``dst``).
        Mixture kinds reject nothing here (lo, hi = -inf, inf): their residual positions are picked apart.
    """
    n, cd, kind = dst.numel(), plan.compute, plan.kind[:-2]
    identity = plan.scale == 1.0 and plan.origin == 0.0
    s = dst if dst.dtype == cd and plan.affine == cd and identity else scratch.get("s", cd, n)
    g = scratch.get("g", cd, n)
    if kind == "umix":  # t uniform on [0, 1): z = alpha + t * width
        _uniform(s, scratch, gen)
        score, lo, hi = s, -math.inf, math.inf
        if plan.center:
            s.sub_(0.5)
    elif kind == "emix":  # truncated exponential: z - alpha = -log(1 - t m) / lam <= beta - alpha
        _uniform(s, scratch, gen).mul_(-plan.mass).log1p_().mul_(-1.0 / plan.lam)
        score, lo, hi = s, -math.inf, math.inf
    elif kind in ("normal", "fold"):
        if cd == torch.float64:
            _normal64_(s, scratch, gen)
        else:
            s.normal_(generator=gen)
        if kind == "fold":
            s.abs_()
        score, lo, hi = s, plan.c_lo, plan.c_hi  # s is kept: the map below writes elsewhere
    elif kind == "exp":
        # Robert (1995): z = alpha + E / lam, accepted when E2 >= (z - lam)² / 2, and only inside C.
        # E = -log U with U on [0, 1): U = 0 gives E = inf, which lies outside C and is rejected.
        v = scratch.get("v", cd, n)
        _uniform_pair(s, v, scratch, gen)
        s.log_().mul_(-1.0 / plan.lam)  # E / lam
        torch.add(s, plan.alpha - plan.lam, out=g)  # z - lam
        v.log_()  # -E2 (-inf accepts)
        torch.addcmul(v, g, g, value=0.5, out=v)  # > 0: rejected by the test
        torch.maximum(v, g.sub_(plan.c_hi - plan.lam), out=v)  # > 0 also if z > c_hi
        score, lo, hi = v, -math.inf, 0.0
    else:
        # Uniform t on [0, 1): z = alpha + t * width, accepted with probability phi(z) / phi(peak).
        v = scratch.get("v", cd, n)
        _uniform_pair(s, v, scratch, gen)
        width = plan.beta - plan.alpha
        v.log_()  # log U2 (-inf accepts)
        if plan.alpha >= 0:  # peak at alpha: log ratio (z² - alpha²) / 2 = t width (t width / 2 + alpha)
            torch.mul(s, 0.5 * width, out=g).add_(plan.alpha)
            torch.addcmul(v, s, g, value=width, out=v)
        else:  # peak at 0: log ratio z² / 2
            torch.mul(s, width, out=g).add_(plan.alpha)
            torch.addcmul(v, g, g, value=0.5, out=v)
        score, lo, hi = v, -math.inf, 0.0
        if plan.center:
            s.sub_(0.5)
    if plan.affine != cd:
        x = scratch.get("x", plan.affine, n).copy_(s)
        x.mul_(plan.scale).add_(plan.origin)
    elif identity:
        x = s
    else:  # out of place, so that s (maybe the score) survives
        x = dst if dst.dtype == cd else scratch.get("x", cd, n)
        torch.mul(s, plan.scale, out=x).add_(plan.origin)
    if x.data_ptr() != dst.data_ptr():
        dst.copy_(x)
    if plan.clamp:
        dst.clamp_(plan.a_in, plan.b_in)
    return score, lo, hi


def _outside(x: torch.Tensor, lo: float, hi: float, scratch: _Scratch) -> torch.Tensor:
    """The mask x < lo or x > hi (lo may be -inf), in scratch buffers."""
    n = x.numel()
    out = scratch.get("bad", torch.bool, n).view(x.shape)
    if lo == -math.inf:
        return torch.gt(x, hi, out=out)
    g = scratch.get("abs", x.dtype, n).view(x.shape)
    if lo == -hi:
        return torch.gt(torch.abs(x, out=g), hi, out=out)
    return torch.ne(torch.clamp(x, lo, hi, out=g), x, out=out)


def _rejected(score: torch.Tensor, lo: float, hi: float, block: int, scratch: _Scratch) -> torch.Tensor:
    """Positions where ``score`` lies outside [lo, hi]; with ``block`` > 0, only blocks whose extremes
    leave it are searched (fast when rejections are rare)."""
    n = score.numel()
    if block == 0 or n < block:
        return torch.nonzero(_outside(score, lo, hi, scratch)).view(-1)
    whole = n - n % block
    rows = score[:whole].view(-1, block)
    # Two plain reductions write nothing: cheaper than abs-then-amax or aminmax (which is much slower).
    flags = rows.amax(1) > hi
    if lo > -math.inf:
        flags |= rows.amin(1) < lo
    hit = torch.nonzero(flags).view(-1)
    found = []
    if hit.numel():
        rc = torch.nonzero(_outside(rows[hit], lo, hi, scratch))
        found.append(hit[rc[:, 0]].mul_(block).add_(rc[:, 1]))
    if whole < n:
        found.append(torch.nonzero(_outside(score[whole:], lo, hi, scratch)).view(-1).add_(whole))
    return torch.cat(found) if len(found) > 1 else found[0] if found else hit


def _inverse_cdf(
    plan: _Plan,
    n: int,
    pieces: list[tuple[float, float]],
    cut: float,
    device: torch.device,
    gen: torch.Generator | None,
) -> torch.Tensor:
    """n exact draws by inverse CDF from f restricted to pieces[0] (probability ``cut``) or pieces[1].

    Float64, on the output scale.
    """
    f64 = torch.float64
    u = 1.0 - torch.empty(n, dtype=f64, device=device).uniform_(generator=gen)  # (0, 1]
    if len(pieces) == 1:
        lo = torch.full((n,), pieces[0][0], dtype=f64, device=device)
        hi = torch.full((n,), pieces[0][1], dtype=f64, device=device)
    else:
        first = torch.empty(n, dtype=f64, device=device).uniform_(generator=gen) < cut
        lo = torch.where(first, pieces[0][0], pieces[1][0])
        hi = torch.where(first, pieces[0][1], pieces[1][1])
    z = _ppf_std(u, lo, hi)
    return z.mul_(plan.sign * plan.std).add_(plan.mean)


def _bernoulli_subset(n: int, p: float, device: torch.device, gen: torch.Generator | None) -> torch.Tensor:
    """The sorted positions in [0, n) of n independent Bernoulli(p) successes, in O(n p) work.

    The gaps between successes are geometric: floor(log U / log(1 - p)) failures, U uniform on (0, 1].
    """
    if p >= 1.0:
        return torch.arange(n, device=device)
    log_q = math.log1p(-p)
    found, start = [], 0
    while start < n:
        m = int((n - start) * p + 6.0 * math.sqrt((n - start) * p) + 16)
        u = 1.0 - torch.empty(m, dtype=torch.float64, device=device).uniform_(generator=gen)
        steps = torch.floor_(torch.log_(u).div_(log_q)).add_(1.0).cumsum_(0)
        pos = steps.to(torch.int64).add_(start - 1)
        found.append(pos[pos < n])
        start = int(pos[-1]) + 1
    return torch.cat(found)


def _fill_remainder(
    flat: torch.Tensor, todo: torch.Tensor, plan: _Plan, scratch: _Scratch, gen: torch.Generator | None
) -> None:
    """Give every position in ``todo`` (rejected by its proposal, an exchangeable set) an exact draw.

    Each needs an iid draw from h0: with probability ``p_out`` from f outside C, otherwise from f|C.
    """
    device, k = flat.device, todo.numel()
    there = _bernoulli_subset(k, plan.p_out, device, gen) if plan.p_out > 0.0 else None
    # Accepted proposals are iid f|C and independent of which positions are left, so they fill the
    # positions in order (all of them: the outside draws below then overwrite their share).
    left = todo if there is None or there.numel() < k else todo[:0]
    piece = _CHUNK_CPU_DENSE if device.type == "cpu" else 1 << 24
    for _ in range(_MAX_ROUNDS + int(left.numel() / (piece * plan.acc))):
        if left.numel() == 0:
            break
        n = min(int(left.numel() / plan.acc * 1.05) + 64, piece)
        x = scratch.get("round", flat.dtype, n)
        score, lo, hi = _propose_into(plan, x, scratch, gen)
        vals = torch.masked_select(x, _outside(score, lo, hi, scratch).logical_not_())[: left.numel()]
        flat[left[: vals.numel()]] = vals
        left = left[vals.numel() :]
    if left.numel():
        draws = _inverse_cdf(plan, left.numel(), [(plan.c_lo, plan.c_hi)], 1.0, device, gen)
        flat[left] = draws.to(flat.dtype).clamp_(plan.a_in, plan.b_in)
    if there is not None and there.numel():
        draws = _inverse_cdf(plan, there.numel(), plan.out_pieces, plan.out_cut, device, gen)
        flat[todo[there]] = draws.to(flat.dtype).clamp_(plan.a_in, plan.b_in)


class _Pool:
    """Exact draws from f|C in the output dtype, made in batches and handed out in order.

    Each batch is one round of proposals sized for this call's shortfall plus the rejections expected
    in the rest of the tensor, up to :data:`_CHUNK_CPU_DENSE` (the per-call overhead of a round is paid
    once for many chunks, and a small tensor does not pay for a big batch), of which the accepted ones
    are kept (iid f|C); after ``_MAX_ROUNDS`` rounds in one call fall short, the rest comes from the
    inverse CDF on C.
    """

    def __init__(self, plan: _Plan, device: torch.device, gen: torch.Generator | None) -> None:
        self.plan, self.device, self.gen = plan, device, gen
        self.scratch = _Scratch(device)  # its own: the caller's scratch holds the mask being filled
        self.values = torch.empty(0, dtype=plan.dtype, device=device)

    def take(self, k: int, rest: int) -> torch.Tensor:
        """``k`` draws (a view, valid until the next call); ``rest`` values of the tensor are to come."""
        plan, have = self.plan, self.values.numel()
        if have < k:
            parts = [self.values]
            for _ in range(_MAX_ROUNDS):
                n = int((k - have) / plan.acc * 1.05) + 64
                ahead = int((k - have + rest * (1.0 - plan.acc)) / plan.acc * 1.05) + 64
                n = max(n, min(ahead, _CHUNK_CPU_DENSE))
                x = torch.empty(n, dtype=plan.dtype, device=self.device)
                score, lo, hi = _propose_into(plan, x, self.scratch, self.gen)
                parts.append(torch.masked_select(x, _outside(score, lo, hi, self.scratch).logical_not_()))
                have += parts[-1].numel()
                if have >= k:
                    break
            else:
                draws = _inverse_cdf(plan, k - have, [(plan.c_lo, plan.c_hi)], 1.0, self.device, self.gen)
                parts.append(draws.to(plan.dtype).clamp_(plan.a_in, plan.b_in))
            self.values = torch.cat(parts)
        out, self.values = self.values[:k], self.values[k:]
        return out


def _fill_residual(
    flat: torch.Tensor, todo: torch.Tensor, plan: _Plan, scratch: _Scratch, gen: torch.Generator | None
) -> None:
    """Give every position in ``todo`` an exact draw from a mixture kind's residual h = (f - w g) / (1 - w).

    Float64 rejection from g over the shrinking remainder (acceptance ``plan.res_acc`` >= _MIN_RES_ACC):
    accept when ``U2 * k < expm1(delta)``, with w (1 + expm1(delta)) = f / g at the proposal.
    """
    f64, left = torch.float64, todo
    width, alpha, beta = plan.beta - plan.alpha, plan.alpha, plan.beta
    while left.numel():
        n = int(left.numel() / plan.res_acc * 1.1) + 16
        t = _uniform(scratch.get("res_t", f64, n), scratch, gen)
        u2 = _uniform(scratch.get("res_u", f64, n), scratch, gen)
        if plan.kind.startswith("emix"):
            off = torch.log1p(t * -plan.mass).mul_(-1.0 / plan.lam)  # z - alpha
            delta = off * (plan.lam - alpha - 0.5 * off)
            x = off.mul_(plan.sign * plan.std).add_(plan.near)
        else:
            z = torch.abs(t * width + alpha)
            d = (1.0 - t) * width if alpha >= 0 else beta - z  # beta - |z|, exact near beta
            delta = d.mul_(z.add_(beta)).mul_(0.5)
            x = t.mul_(plan.sign * (plan.b - plan.a)).add_(plan.near)
        vals = torch.masked_select(x, u2.mul_(plan.mix_k) < torch.expm1(delta))[: left.numel()]
        flat[left[: vals.numel()]] = vals.to(flat.dtype).clamp_(plan.a_in, plan.b_in)
        left = left[vals.numel() :]


def _trunc_normal_(
    tensor: torch.Tensor, mean: float, std: float, a: float, b: float, generator: torch.Generator | None
) -> torch.Tensor:
    mean, std, a, b = float(mean), float(std), float(a), float(b)
    _validate(mean, std, a, b)
    if not tensor.is_floating_point() or tensor.dtype not in (
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
    ):
        raise ValueError(
            f"truncated normal: tensor dtype {tensor.dtype} is not float16/bfloat16/float32/float64"
        )
    plan = _plan(mean, std, a, b, tensor.dtype)
    if plan.point is not None:
        return tensor.fill_(plan.point)
    if tensor.numel() == 0:
        return tensor
    flat = (
        tensor.view(-1)
        if tensor.is_contiguous()
        else torch.empty(tensor.numel(), dtype=tensor.dtype, device=tensor.device)
    )
    # One proposal per element, chunk by chunk; the rejected positions are then filled all together.
    scratch = _Scratch(tensor.device)
    chunk = _CHUNK_CPU if tensor.device.type == "cpu" else 1 << 24
    if plan.mix:
        # Chunk by chunk, so that the residual's positions, proposals and writes stay in the cache.
        for start in range(0, flat.numel(), chunk):
            dst = flat[start : start + chunk]
            _propose_into(plan, dst, scratch, generator)
            if plan.acc < 1.0:
                todo = _bernoulli_subset(dst.numel(), 1.0 - plan.acc, tensor.device, generator)
                _fill_residual(dst, todo, plan, scratch, generator)
        return _copy_back(tensor, flat)
    rejected = []
    # Rare rejections (under ~1 in 10 blocks) are searched block by block, 64 to 1024 values a block.
    block = 1024
    while block >= 64 and (1.0 - plan.acc) * block > 0.1:
        block //= 2
    block = block if block >= 64 else 0
    if block == 0 and tensor.device.type == "cpu":
        chunk = _CHUNK_CPU_DENSE
    if block == 0 and plan.p_out == 0.0:
        # Frequent rejections, each needing a draw from f|C: fill them chunk by chunk, in order, from a
        # pool of accepted proposals (iid f|C, independent of the positions) with one masked_scatter_,
        # instead of collecting positions (nonzero) and filling them at the end.
        pool = _Pool(plan, tensor.device, generator)
        for start in range(0, flat.numel(), chunk):
            dst = flat[start : start + chunk]
            score, lo, hi = _propose_into(plan, dst, scratch, generator)
            bad = _outside(score, lo, hi, scratch)
            k = int(torch.count_nonzero(bad))
            if k:
                dst.masked_scatter_(bad, pool.take(k, max(flat.numel() - start - chunk, 0)))
        return _copy_back(tensor, flat)
    for start in range(0, flat.numel(), chunk):
        score, lo, hi = _propose_into(plan, flat[start : start + chunk], scratch, generator)
        idx = _rejected(score, lo, hi, block, scratch)
        if idx.numel():
            rejected.append(idx.add_(start))
    if rejected:
        _fill_remainder(flat, torch.cat(rejected), plan, scratch, generator)
    return _copy_back(tensor, flat)


def _copy_back(tensor: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    if flat.data_ptr() != tensor.data_ptr() or not tensor.is_contiguous():
        tensor.copy_(flat.view(tensor.shape))
    return tensor


def trunc_normal_(
    tensor: torch.Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``tensor`` in place with exact draws from N(mean, std²) truncated to [a, b].

    A drop-in for :func:`torch.nn.init.trunc_normal_` (same signature and defaults) that is exact in every
    regime: central intervals, one-sided and infinite bounds, far tails (40 sigma and beyond), very narrow
    intervals, a mean outside [a, b], tiny and huge std. float32/float64 values follow the distribution;
    float16/bfloat16 values are the exact draw rounded to nearest, rounded inward at the bounds, so every
    value lies in [a, b]. Works on any device, without per-element Python loops.

    Args:
        tensor: Floating-point tensor (float16, bfloat16, float32 or float64) to fill, any shape and device.
        mean: Mean of the untruncated normal.
        std: Standard deviation of the untruncated normal; finite and > 0.
        a: Absolute lower bound (may be ``-inf``), as in torch.nn.init.trunc_normal_.
        b: Absolute upper bound (may be ``inf``); ``a == b`` is allowed when representable.
        generator: Random generator on the tensor's device; ``None`` uses torch's global RNG. The same
            seed gives the same values.

    Returns:
        ``tensor``, filled.

    Raises:
        ValueError: If any parameter is NaN, std <= 0 or infinite, a > b, or [a, b] holds no finite value
            of the tensor's dtype.
    """
    with torch.no_grad():
        return _trunc_normal_(tensor, mean, std, a, b, generator)


# ----------------------------------------------------------------------------------------------------------
# Exact statistics (float64), for reports


def truncnorm_mean_std(mean: float, std: float, a: float, b: float) -> tuple[float, float]:
    """Exact mean and standard deviation of N(mean, std²) truncated to [a, b], accurate in the tails.

    Args:
        mean: Mean of the untruncated normal.
        std: Standard deviation of the untruncated normal (> 0).
        a: Absolute lower bound (may be ``-inf``).
        b: Absolute upper bound (may be ``inf``), ``a < b``.

    Returns:
        ``(mean, std)`` of the truncated distribution.
    """
    _validate(mean, std, a, b)
    alpha, beta = _standardize(mean, std, a), _standardize(mean, std, b)
    sign = 1.0
    if alpha + beta < 0 or (alpha == -math.inf and beta < math.inf):
        alpha, beta, sign = -beta, -alpha, -1.0
    log_z = _log_mass(alpha, beta)
    if log_z == -math.inf:
        raise ValueError(f"truncated normal: [a, b] = [{a}, {b}] has no mass in float64")

    def ratio(x: float) -> float:  # phi(x) / Z and x phi(x) / Z, 0 at infinity
        return 0.0 if math.isinf(x) else math.exp(-0.5 * x * x - _LOG_SQRT_2PI - log_z)

    r_a, r_b = ratio(alpha), ratio(beta)
    mu = r_a - r_b
    xa = 0.0 if math.isinf(alpha) else alpha * r_a
    xb = 0.0 if math.isinf(beta) else beta * r_b
    var = max(0.0, 1.0 + xa - xb - mu * mu)
    return mean + sign * std * mu, std * math.sqrt(var)


def truncnorm_ppf(q: torch.Tensor | float, mean: float, std: float, a: float, b: float) -> torch.Tensor:
    """Exact quantile function of N(mean, std²) truncated to [a, b] (float64, log space in the tails).

    Args:
        q: Probabilities in [0, 1], a tensor or a float.
        mean: Mean of the untruncated normal.
        std: Standard deviation of the untruncated normal (> 0).
        a: Absolute lower bound (may be ``-inf``).
        b: Absolute upper bound (may be ``inf``).

    Returns:
        The quantiles, a float64 tensor shaped like ``q``.
    """
    _validate(mean, std, a, b)
    qt = torch.as_tensor(q, dtype=torch.float64)
    alpha, beta = _standardize(mean, std, a), _standardize(mean, std, b)
    lo = torch.full_like(qt, alpha)
    hi = torch.full_like(qt, beta)
    z = _ppf_std(qt, lo, hi)
    return torch.clamp(mean + std * z, a, b)


def truncnorm_pdf(x: torch.Tensor, mean: float, std: float, a: float, b: float) -> torch.Tensor:
    """Exact density of N(mean, std²) truncated to [a, b] (float64, normalised in log space).

    Args:
        x: Points at which to evaluate the density.
        mean: Mean of the untruncated normal.
        std: Standard deviation of the untruncated normal (> 0).
        a: Absolute lower bound (may be ``-inf``).
        b: Absolute upper bound (may be ``inf``).

    Returns:
        The density at ``x`` (0 outside [a, b]), a float64 tensor.
    """
    _validate(mean, std, a, b)
    xt = torch.as_tensor(x, dtype=torch.float64)
    log_z = _log_mass(_standardize(mean, std, a), _standardize(mean, std, b))
    z = (xt - mean) / std
    dens = torch.exp(-0.5 * z * z - _LOG_SQRT_2PI - log_z) / std
    return torch.where((xt >= a) & (xt <= b), dens, torch.zeros_like(dens))
