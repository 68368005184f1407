"""Run-time routines of the ELU/SELU duals: Gaussian wedge integrals scaled so that nothing overflows.

Every exponential term of the ELU dual (:mod:`ntkdsl.activations.elu`) is E[e^{tᵀz}·1{z in a wedge}]
for z ~ N(0, I₂). In polar coordinates around the origin, ∫₀^∞ ρ·e^{−ρ²/2 − xρ} dρ = M(x) with

    M(x) = 1 − x·R(x),   R(x) = Φ(−x)/φ(x) = √(π/2)·erfcx(x/√2)   (Mills' ratio, x ≥ 0),

so the terms reduce to the wedge function (Owen's T function scaled by e^{k²/2}, Owen 1956, written
in the angle of the wedge's apex):

    W(A, β) = (1/2π)·∫₀^β M(A·cos b) db = e^{A²/2}·[T(A·sin β, ∞) − T(A·sin β, cot β)],   |β| ≤ π/2

(odd in β; |β| ≥ float(π/2) is read as π/2 exactly, so that W(A, ±π/2) = ±R(A)/(2√(2π)), the
half-plane, for every A). W is bounded (|W| ≤ |β|/2π) for every A ≥ 0, where the unscaled Owen's T underflows
(A ≳ 38) and its exponential factor overflows. The routines:

* ``mills(x)`` = R(x); ``mills_rem(x)`` = (R(x) + x)/(2√(2π)) − 1/4, R's expansion past first order
  at 0 (so that sums whose orders 0 and 1 cancel exactly keep relative accuracy at small variances);
* ``wedge(A, β)`` = W; ``wedge_rem(A, β)`` = W − (β − √(π/2)·A·sin β)/(2π), likewise.

Evaluation: R and M by erfc for x < 5 and by the continued fraction R = 1/(x + 1/(x + 2/(x + ...)))
(Abramowitz & Stegun 26.2.14; M = 1/(C₁C₂) with C_k = x + k/C_{k+1}, no cancellation) above;
their expansions at 0 by power series (A&S 7.1.6) for x < 1. W by 20-point Gauss–Legendre
quadrature in b for A ≤ 4 (M(A cos b) is smooth there); for A > 4 the range splits where
A·cos b = 2: above, in t = tan b, where the integrand M(A/√(1 + t²))/(1 + t²) = g(y)/A² with
g(y) = y²·M(y) → 1 is smooth however large A is; below, in x = A·cos b, a short interval with the
integrand M(x)/√(A² − x²). Measured against mpmath (tests/test_dual_extremes.py): relative error
below 1e-12 for A from 0 to 1e150 and every β.

The scalar functions (``*_scalar``) are what the fused numba kernels compile; the array functions
(same algorithm, ``xp`` the array module) are copied into NumPy and CuPy modules. Keep both free of
names other than ``math``/``xp``/``xps`` and this module's own.
"""

import inspect
import math

import numpy as xp
import scipy.special as xps

_NODES = 20
_GL_X, _GL_W = (tuple(float(v) for v in a) for a in xp.polynomial.legendre.leggauss(_NODES))
_SPLIT = 2.0  # A·cos b where the large-A quadrature changes variable
_LARGE = 4.0  # A above which it does so (A ≥ 2·_SPLIT keeps √(A² − x²) ≥ A·√3/2 below the split)
_CF_START = 5.0  # x from which R and M come from the continued fraction (30 terms: < 1e-16 at x = 5)
_CF_TERMS = 30
_HALF_PI_ROOT = 1.2533141373155003  # √(π/2)
_TWO_PI_ROOT = 2.5066282746310002  # √(2π)


# ---------------------------------------------------------------- scalar versions (numba)
def _fraction_scalar(x):
    """(C₁, C₂) of the continued fraction C_k = x + k/C_{k+1} (x ≥ 5): R = 1/C₁, M = 1/(C₁C₂)."""
    c = x
    for k in range(_CF_TERMS, 1, -1):
        c = x + k / c
    return x + 1.0 / c, c


def mills_scalar(x):
    """R(x) = Φ(−x)/φ(x) for x ≥ 0."""
    if x < _CF_START:
        return _HALF_PI_ROOT * math.exp(0.5 * x * x) * math.erfc(x / 1.4142135623730951)
    c1, c2 = _fraction_scalar(x)
    return 1.0 / c1


def _m_scalar(x):
    """M(x) = 1 − x·R(x) = ∫₀^∞ ρ·e^{−ρ²/2 − xρ} dρ."""
    if x < _CF_START:
        return 1.0 - x * mills_scalar(x)
    c1, c2 = _fraction_scalar(x)
    return 1.0 / (c1 * c2)


def _g_scalar(y):
    """y²·M(y), without overflow for huge y."""
    if y < _CF_START:
        return y * y * _m_scalar(y)
    c1, c2 = _fraction_scalar(y)
    return (y / c1) * (y / c2)


def _m_rem_scalar(x):
    """M(x) − 1 + √(π/2)·x = −√(π/2)·x·expm1(x²/2) + Σ_{k≥0} x^{2k+2}/(2k+1)!! (series below 1)."""
    if x >= 1.0:
        return _m_scalar(x) - 1.0 + _HALF_PI_ROOT * x
    x2 = x * x
    term = x2
    total = x2
    for k in range(1, 16):
        term = term * x2 / (2 * k + 1)
        total += term
    return total - _HALF_PI_ROOT * x * math.expm1(0.5 * x2)


def mills_rem_scalar(x):
    """(R(x) + x)/(2√(2π)) − 1/4 = [√(π/2)·expm1(x²/2) − Σ_{k≥1} x^{2k+1}/(2k+1)!!]/(2√(2π))."""
    if x >= 1.0:
        return (mills_scalar(x) + x) / (2.0 * _TWO_PI_ROOT) - 0.25
    x2 = x * x
    term = x
    total = 0.0
    for k in range(1, 16):
        term = term * x2 / (2 * k + 1)
        total += term
    return (_HALF_PI_ROOT * math.expm1(0.5 * x2) - total) / (2.0 * _TWO_PI_ROOT)


def _wedge_scalar(a, beta, rem):
    """W(a, β) (rem False) or its expansion past first order (rem True), β ∈ [−π/2, π/2]."""
    b = min(abs(beta), 1.5707963267948966)
    total = 0.0
    if a <= _LARGE:
        half = 0.5 * b
        for k in range(_NODES):
            x = a * math.cos(half * (_GL_X[k] + 1.0))
            total += _GL_W[k] * (_m_rem_scalar(x) if rem else _m_scalar(x))
        total *= half
    else:
        limit = math.sqrt((a / _SPLIT - 1.0) * (a / _SPLIT + 1.0))  # tan of the split angle
        top = math.tan(b) if b < math.atan(limit) else limit
        upper = 0.0
        for k in range(_NODES):
            t = 0.5 * top * (_GL_X[k] + 1.0)
            upper += _GL_W[k] * _g_scalar(a / math.sqrt(1.0 + t * t))
        total = 0.5 * top * upper / a / a
        low = a * math.cos(b) if b < 1.5707963267948966 else 0.0  # |β| ≥ float(π/2) reads as π/2 exactly
        if low < _SPLIT:
            lower = 0.0
            for k in range(_NODES):
                x = low + 0.5 * (_SPLIT - low) * (_GL_X[k] + 1.0)
                lower += _GL_W[k] * _m_scalar(x) / math.sqrt((a - x) * (a + x))
            total += 0.5 * (_SPLIT - low) * lower
        if rem:
            total -= b - _HALF_PI_ROOT * a * math.sin(b)
    total /= 2.0 * math.pi
    return -total if beta < 0.0 else total


def wedge_scalar(a, beta):
    """W(A, β) = (1/2π)·∫₀^β M(A·cos b) db."""
    return _wedge_scalar(a, beta, False)


def wedge_rem_scalar(a, beta):
    """W(A, β) − (β − √(π/2)·A·sin β)/(2π)."""
    return _wedge_scalar(a, beta, True)


# ---------------------------------------------------------------- array versions (NumPy, CuPy)
def _where(cond, x, when_true, when_false):
    """when_true(x[cond]) and when_false(x[~cond]) into one array: each branch only where it applies."""
    if cond.ndim == 0:
        return when_true(x) if bool(cond) else when_false(x)
    out = xp.empty(cond.shape)
    inside = xp.nonzero(cond)
    outside = xp.nonzero(~cond)
    if inside[0].size:
        out[inside] = when_true(x[inside])
    if outside[0].size:
        out[outside] = when_false(x[outside])
    return out


def _fraction(x):
    """(C₁, C₂) of the continued fraction C_k = x + k/C_{k+1} (x ≥ 5)."""
    c = x
    for k in range(_CF_TERMS, 1, -1):
        c = x + k / c
    return x + 1.0 / c, c


def _fraction_m(x):
    c1, c2 = _fraction(x)
    return 1.0 / (c1 * c2)


def _fraction_g(y):
    c1, c2 = _fraction(y)
    return (y / c1) * (y / c2)


def mills(x):
    """R(x) = Φ(−x)/φ(x) = √(π/2)·erfcx(x/√2), elementwise, x ≥ 0."""
    x = xp.asarray(x, dtype=xp.float64)
    return _where(x < _CF_START, x, lambda v: _HALF_PI_ROOT * xps.erfcx(v / 1.4142135623730951),
                  lambda v: 1.0 / _fraction(v)[0])


def _m_small(x):
    return 1.0 - x * _HALF_PI_ROOT * xps.erfcx(x / 1.4142135623730951)


def _m(x):
    return _where(x < _CF_START, x, _m_small, _fraction_m)


def _g(y):
    return _where(y < _CF_START, y, lambda v: v * v * _m_small(v), _fraction_g)


def _series(x, first):
    """Σ_{k≥first} x^{2k+1}/(2k+1)!! for x < 1 (16 terms: < 1e-17 relative)."""
    x2 = x * x
    term = x
    total = x if first == 0 else 0.0 * x
    for k in range(1, 17):
        term = term * x2 / (2 * k + 1)
        total = total + term
    return total


def _m_rem(x):
    return _where(x < 1.0, x, lambda v: v * _series(v, 0) - _HALF_PI_ROOT * v * xp.expm1(0.5 * v * v),
                  lambda v: _m(v) - 1.0 + _HALF_PI_ROOT * v)


def mills_rem(x):
    """(R(x) + x)/(2√(2π)) − 1/4, elementwise, x ≥ 0."""
    x = xp.asarray(x, dtype=xp.float64)
    return _where(x < 1.0, x, lambda v: (_HALF_PI_ROOT * xp.expm1(0.5 * v * v) - _series(v, 1)) / (2.0 * _TWO_PI_ROOT),
                  lambda v: (mills(v) + v) / (2.0 * _TWO_PI_ROOT) - 0.25)


def _wedge(a, beta, rem):
    a, beta = xp.broadcast_arrays(xp.asarray(a, dtype=xp.float64), xp.asarray(beta, dtype=xp.float64))
    b = xp.minimum(xp.abs(beta), 1.5707963267948966)
    pairs = xp.stack([a, b], axis=-1)
    total = _where(a <= _LARGE, pairs, lambda ab: _wedge_near(ab[..., 0], ab[..., 1], rem),
                   lambda ab: _wedge_far(ab[..., 0], ab[..., 1], rem))
    total = total / (2.0 * xp.pi)
    return xp.where(beta < 0.0, -total, total)


def _wedge_near(a, b, rem):
    """A ≤ 4: Gauss–Legendre in b on [0, |β|] (times 2π)."""
    total = 0.0 * a
    for node, weight in zip(_GL_X, _GL_W):
        x = a * xp.cos(0.5 * b * (node + 1.0))
        total = total + weight * (_m_rem(x) if rem else _m(x))
    return 0.5 * b * total


def _wedge_far(a, b, rem):
    """A > 4: t = tan b up to the split, then x = A·cos b below it (times 2π)."""
    limit = xp.sqrt((a / _SPLIT - 1.0) * (a / _SPLIT + 1.0))
    top = xp.where(b < xp.arctan(limit), xp.tan(b), limit)
    low = xp.where(b < 1.5707963267948966, xp.minimum(a * xp.cos(b), _SPLIT), 0.0)  # |β| ≥ float(π/2): π/2
    upper, lower = 0.0 * a, 0.0 * a
    for node, weight in zip(_GL_X, _GL_W):
        t = 0.5 * top * (node + 1.0)
        upper = upper + weight * _g(a / xp.sqrt(1.0 + t * t))
        x = low + 0.5 * (_SPLIT - low) * (node + 1.0)
        lower = lower + weight * _m(x) / xp.sqrt((a - x) * (a + x))
    far = 0.5 * top * upper / a / a + 0.5 * (_SPLIT - low) * lower
    return far - (b - _HALF_PI_ROOT * a * xp.sin(b)) if rem else far


def wedge(a, beta):
    """W(A, β) = (1/2π)·∫₀^β M(A·cos b) db, elementwise over broadcast arrays."""
    return _wedge(a, beta, False)


def wedge_rem(a, beta):
    """W(A, β) − (β − √(π/2)·A·sin β)/(2π), elementwise."""
    return _wedge(a, beta, True)


# ---------------------------------------------------------------- the text generated modules carry
_CONSTANTS = ("_NODES", "_GL_X", "_GL_W", "_SPLIT", "_LARGE", "_CF_START", "_CF_TERMS", "_HALF_PI_ROOT", "_TWO_PI_ROOT")
_ARRAY = ("_where", "_fraction", "_fraction_m", "_fraction_g", "mills", "_m_small", "_m", "_g", "_series", "_m_rem",
          "mills_rem", "_wedge", "_wedge_near", "_wedge_far", "wedge", "wedge_rem")
_SCALAR = ("_fraction_scalar", "mills_scalar", "_m_scalar", "_g_scalar", "_m_rem_scalar", "mills_rem_scalar",
           "_wedge_scalar", "wedge_scalar", "wedge_rem_scalar")
# the names printed expressions call
ROUTINES = ("mills", "mills_rem", "wedge", "wedge_rem")


def _constants() -> str:
    return "".join(f"{name} = {globals()[name]!r}\n" for name in _CONSTANTS)


def array_source() -> str:
    """The array routines with their constants, for a NumPy or CuPy module (names xp, xps, math)."""
    return _constants() + "\n\n" + "\n\n".join(inspect.getsource(globals()[n]) for n in _ARRAY)


def scalar_source() -> str:
    """The scalar routines as numba functions, for a fused module (names math, numba, FASTMATH)."""
    decorator = '@numba.njit(fastmath=FASTMATH, error_model="numpy", cache=True)\n'
    return _constants() + "\n\n" + "\n\n".join(decorator + inspect.getsource(globals()[n]) for n in _SCALAR)
