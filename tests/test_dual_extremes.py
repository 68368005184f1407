"""Closed-form duals at every scale: variances 2⁻⁹⁹⁶ … 2⁹⁹⁶ (about 1e±300, inputs scaled by 1e±150)
against mpmath references, through whole networks on the NumPy, numba and CuPy (CPU stand-in) paths.

Reference (independent of the formulas under test): for each catalog row, K = E[σ(u)σ(v)] and
K̇ = E[σ'(u)σ'(v)] as the 1-D integral over u of σ(u)·E[σ(v) | u], the conditional expectation in
closed form for a Gaussian (E[max(X, 0)] = μΦ(μ/τ) + τφ(μ/τ), E[erf(bX)] = erf(bμ/√(1 + 2b²τ²)),
E[e^X·1{X < 0}] = e^{μ + τ²/2}Φ(−(μ + τ²)/τ), Gaussian moments, ...), integrated by mpmath at 30
digits with breakpoints at σ's kinks and at the scale 1/√q of σ(√q·x). Rows whose σ oscillates
(sin, cos, rbf) or grows exponentially (exp) use the exact 2-D reduction instead: E[e^{αu + βv}] =
e^{(α²q1 + 2αβc + β²q2)/2} for complex α, β. The references are computed once by ``python
tests/test_dual_extremes.py`` into tests/data/dual_extremes.json (a few minutes); the tests only
read them.

Inputs: x1 = t·(1, 0), x2 = t'·(b1, b2) with t, t' powers of two and small integers b1, b2, so the
network ``dense(1); σ`` sees exactly q1 = t²/2, q2 = t'²(b1² + b2²)/2, c = t·t'·b1/2 (every product
exact), including ρ = ±1 and ρ = ±(1 − 2⁻⁴¹). Its outputs are K and K̇·c (Θ¹ = Σ¹).

Bound: |error| ≤ 1e-10·|K| + 1e-13·√(K(x1, x1)·K(x2, x2)) (Cauchy–Schwarz scale; the absolute part
covers values near 0, e.g. odd duals at ρ ≈ 0 or ELU where its kernel changes sign), likewise for K̇.
Values that exceed float64 (exp, polynomials at variance 1e300) are excluded here: their bound is
documented in docs/kernel-math.md §3.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

import ntkdsl
from ntkdsl.codegen.overflow import KernelOverflowError
from shared import needs_numba

DATA = Path(__file__).resolve().parent / "data" / "dual_extremes.json"

# activation settings (ntk text -> oracle family and parameters)
SETTINGS = {
    "relu": ("abrelu", dict(a=0, b=1)), "abs": ("abrelu", dict(a=-1, b=1)),
    "abrelu(a = -0.5, b = 2)": ("abrelu", dict(a=-0.5, b=2)),
    "step": ("step", {}), "sign": ("sign", {}), "rectified_monomial(n = 2)": ("rmono2", {}),
    "erf": ("erf", dict(a=1, b=1, c=0)), "erf(a = 2, b = 0.5, c = 0.1)": ("erf", dict(a=2, b=0.5, c=0.1)),
    "gelu": ("gelu", {}), "elu": ("elu", dict(alpha=1, scale=1)), "elu(alpha = 2.5)": ("elu", dict(alpha=2.5, scale=1)),
    "selu": ("elu", dict(alpha="1.6732632423543772848170429916717", scale="1.0507009873554804934193349852946")),
    "exp(a = 0.5, b = -0.6)": ("exp", dict(a=0.5, b=-0.6)), "gaussian": ("gaussian", dict(a=1, b=-1)),
    "sin": ("sin", dict(a=1, b=1, c=0)), "cos(a = 0.8, b = 1.3, c = -0.3)": ("sin", dict(a=0.8, b=1.3, c="-0.3+pi/2")),
    "rbf(gamma = 0.3)": ("sin", dict(a="sqrt(2)", b="sqrt(0.6)", c="pi/4")), "gabor": ("gabor", {}),
    "monomial(n = 3)": ("poly", dict(coefficients=(0, 0, 0, 1))),
    "polynomial(0.5, -1, 0.3)": ("poly", dict(coefficients=(0.5, -1, 0.3))),
    "hermite(k = 3)": ("poly", dict(coefficients=(0, "-3/sqrt(6)", 0, "1/sqrt(6)"))),
}
JUMPS = {"step", "sign"}  # K̇ := 0 (kernel-math.md §3)

# input scales t (x1 = t·(1, 0)): variances t²/2 from about 1e-300 to 1e300
SCALES = (2.0 ** -498, 2.0 ** -10, 1.0, 2.0 ** 10, 2.0 ** 498)
# directions (b1, b2) of x2: ρ = b1/√(b1² + b2²) = 1, −1, 0, 0.6, −0.8, ±(1 − 2⁻⁴¹)
DIRECTIONS = ((1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (3.0, 4.0), (-4.0, 3.0), (1.0, 2.0 ** -20), (-1.0, 2.0 ** -20))
# (scale of x1, scale of x2): equal scales, and unequal ones (variances 1e-6 with 1e6, 1 with 1e6)
PAIRS = [(t, t) for t in SCALES] + [(2.0 ** -10, 2.0 ** 10)]  # variances 1e-6 with 1e6


def _points():
    """[(x1, x2)] as exact float pairs: x1 = (t, 0), x2 = t'·(b1, b2)."""
    return [((t1, 0.0), (t2 * b1, t2 * b2)) for t1, t2 in PAIRS for b1, b2 in DIRECTIONS]


def _moments(x1, x2):
    """(q1, q2, c) exactly, as Fractions (the network's Σ¹ = x·x'/2 with w = 1, b = 0)."""
    from fractions import Fraction as F

    a = [F(v) for v in x1]
    b = [F(v) for v in x2]
    return (a[0] ** 2 + a[1] ** 2) / 2, (b[0] ** 2 + b[1] ** 2) / 2, (a[0] * b[0] + a[1] * b[1]) / 2


# ---------------------------------------------------------------- the tests
def _cases():
    return json.loads(DATA.read_text()) if DATA.exists() else {}


def _network(setting):
    return ntkdsl.loads(f"network extremes(input = 2) {{ dense(1, w_std = 1, b_std = 0); {setting} }}")


def _finite(*values):
    return all(v is not None and math.isfinite(v) and abs(v) < 1e300 for v in values)


def _documented_limit(setting, row) -> bool:
    """Rows beyond a documented bound of kernel-math.md §3: Gabor's d = 1 + 2(q1 + q2) + 4(q1q2 − c²)
    and the gaussian's K̇ (an intermediate power of d) overflow for inputs beyond 1e100."""
    return setting in ("gabor", "gaussian") and max(abs(v) for v in row["x1"] + row["x2"]) > 1e100


def _inside(setting, row) -> bool:
    """The row's references are float64 numbers and within the documented bounds."""
    return _finite(row["k12"][0], row["k11"][0], row["k22"][0]) and not _documented_limit(setting, row)


def astuple(k):
    return k.nngp, k.ntk


def _check_all(setting, rows, evaluate):
    """The rows inside float64 in one request, compared with their references; every other row alone:
    refused (KernelOverflowError: a result is finite or refused, never NaN or inf) or, for the
    documented limits, refused or right."""
    ok = [row for row in rows if _inside(setting, row)]
    _check(setting, ok, *evaluate(_inputs(ok)))
    for row in rows:
        if _inside(setting, row):
            continue
        try:
            nngp, ntk = evaluate(_inputs([row]))
        except KernelOverflowError:
            continue
        wants = (row["k12"][0], row["k11"][0], row["k22"][0])
        representable = all(v is not None and math.isfinite(v) for v in wants)  # |K| in (1e300, 1.8e308]
        assert representable or _documented_limit(setting, row), ("not refused", setting, row["x1"], row["x2"])
        assert np.isfinite(nngp).all() and np.isfinite(ntk).all()  # the contract: finite or refused
        if not _documented_limit(setting, row):
            for got, want in zip((nngp[0, 1], nngp[0, 0], nngp[1, 1]), wants):
                assert abs(got - want) <= 1e-10 * abs(want), (setting, row["x1"], row["x2"], got, want)


def _check(setting, rows, nngp, ntk):
    """nngp[i, j], ntk[i, j] for the stacked inputs [x1 of row 0, x2 of row 0, x1 of row 1, ...]."""
    jumps = SETTINGS[setting][0] in JUMPS
    checked = 0
    for r, row in enumerate(rows):
        i, j = 2 * r, 2 * r + 1
        (k12, d12), (k11, d11), (k22, d22) = row["k12"], row["k11"], row["k22"]
        if not _finite(k12, k11, k22):
            continue  # beyond float64 (exp, polynomials at 1e300): documented, not compared
        if setting == "gabor" and max(abs(v) for v in row["x1"] + row["x2"]) > 1e100:
            continue  # d = 1 + 2(q1 + q2) + 4(q1q2 − c²) overflows: documented limit (kernel-math.md §3)
        c = row["x1"][0] * row["x2"][0] / 2  # Σ¹ (exact by construction)
        for got, want, scale in ((nngp[i, j], k12, math.sqrt(abs(k11)) * math.sqrt(abs(k22))), (nngp[i, i], k11, abs(k11)),
                                 (nngp[j, j], k22, abs(k22))):
            assert abs(got - want) <= 1e-10 * abs(want) + 1e-13 * scale, (setting, row["x1"], row["x2"], got, want)
        if jumps:
            assert ntk[i, j] == 0.0
        elif setting == "gaussian" and max(abs(v) for v in row["x1"] + row["x2"]) > 1e100:
            pass  # K̇ overflows in an intermediate power of d: documented bounds (kernel-math.md §3)
        elif c != 0 and _finite(d12, d11, d22):
            scale = math.sqrt(abs(d11)) * math.sqrt(abs(d22)) * abs(c)
            assert abs(ntk[i, j] - d12 * c) <= 1e-10 * abs(d12 * c) + 1e-13 * scale, (setting, row["x1"], row["x2"], ntk[i, j], d12 * c)
        checked += 1
    assert checked >= 20  # most points are compared for every row


def _inputs(rows):
    return np.array([v for row in rows for v in (row["x1"], row["x2"])], dtype=np.float64)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_numpy_path_at_every_scale(setting):
    rows = _cases().get(setting)
    if rows is None:
        pytest.fail("references missing: python tests/test_dual_extremes.py")
    net = _network(setting)
    _check_all(setting, rows, lambda x: astuple(net.kernels(x, backend="numpy")))


# the rows whose formulas are long enough to differ between printers: every backend
FUSED = ("elu", "selu", "gelu", "erf(a = 2, b = 0.5, c = 0.1)", "abrelu(a = -0.5, b = 2)", "gabor")


@needs_numba
@pytest.mark.parametrize("setting", FUSED)
def test_fused_path_at_every_scale(setting):
    rows = _cases()[setting]
    net = _network(setting)
    _check_all(setting, rows, lambda x: astuple(net.kernels(x, backend="numba")))


@pytest.mark.parametrize("setting", ("elu", "gelu"))
def test_cupy_module_at_every_scale(setting, monkeypatch):
    import cupy_standin
    from ntkdsl.arraycode.loader import load_module

    if cupy_standin.CXX is None:
        pytest.skip("no C++ compiler for the CPU stand-in of CuPy")
    cupy_standin.install(monkeypatch)
    rows = _cases()[setting]
    net = _network(setting)
    module = load_module(net.to_python(backend="cupy"), f"extremes-{setting}-cupy-standin")
    ok = [row for row in rows if _inside(setting, row)]  # the module alone: no refusal of the others
    nngp, ntk = module.kernels(_inputs(ok))
    _check(setting, ok, np.asarray(nngp), np.asarray(ntk))


def test_wedge_routines_against_mpmath():
    """W, W̃, R, ẽ (arraycode/wedge_support.py), scalar and array versions, against mpmath quadrature of
    their defining integrals at 30 digits, for A from 0 to 1e150 and β up to ±π/2."""
    import mpmath as mp

    from ntkdsl.arraycode import wedge_support as ws

    mp.mp.dps = 30

    def m(x):  # M(x) = 1 − x·R(x); its asymptotic series (A&S 26.2.12) where 1 − x·R(x) cancels
        return 1 - x * _mills(x) if x < 1e5 else (1 - 3 / x**2 + 15 / x**4 - 105 / x**6) / x**2

    def wedge(a, beta, rem):
        a, beta = mp.mpf(a), mp.mpf(beta)
        b = abs(beta)
        # in u = tan b (db = du/(1 + u²), cos b = 1/√(1 + u²)) while A·cos b > 10, then in x = A·cos b
        # (db = dx/√(A² − x²)): at 30 digits the angle where A·cos b = 10 rounds to π/2 for A = 1e150
        exact = abs(b - mp.pi / 2) < 1e-16  # float(π/2) means π/2 (wedge_support)
        if exact:  # the half-plane: E[e^u·1{u < 0}]/2 = e^{A²/2}·Φ(−A)/2 = R(A)/(2√(2π))
            v = _mills(a) / (2 * mp.sqrt(2 * mp.pi)) - ((mp.pi / 2 - mp.sqrt(mp.pi / 2) * a) / (2 * mp.pi) if rem else 0)
            return v if beta >= 0 else -v
        top = mp.inf if exact else mp.tan(b)
        split = mp.sqrt((a / 10) ** 2 - 1) if a > 10 else mp.inf
        end = min(top, split)
        cuts = sorted({mp.mpf(0), end} | {mp.sqrt((a / x) ** 2 - 1) for x in (100, 1e4) if a > x and mp.sqrt((a / x) ** 2 - 1) < end}
                      | {mp.mpf(10) ** k for k in range(0, 160, 3) if mp.mpf(10) ** k < end})  # decades of u

        def f(u):
            x = a / mp.sqrt(1 + u * u)
            return ((m(x) - 1 + mp.sqrt(mp.pi / 2) * x) if rem else m(x)) / (1 + u * u)

        def g(x):
            return ((m(x) - 1 + mp.sqrt(mp.pi / 2) * x) if rem else m(x)) / mp.sqrt((a - x) * (a + x))

        v = mp.quad(f, cuts)
        if top > split:
            low = 0 if exact else a * mp.cos(b)
            v += mp.quad(g, sorted({low, mp.mpf(10)} | {x for x in (1, 3) if low < x}))
        v /= 2 * mp.pi
        return v if beta >= 0 else -v

    for a in (0.0, 1e-9, 0.3, 3.99, 4.01, 60.0, 1e150):
        for beta in (1e-7, -1.1, math.pi / 2):
            for rem in (False, True) if a < 5 else (False,):  # above, W̃ is W minus its linear part
                want = wedge(a, beta, rem)
                got = (ws.wedge_rem_scalar if rem else ws.wedge_scalar)(a, beta)
                arr = float((ws.wedge_rem if rem else ws.wedge)(np.array(a), np.array(beta)))
                # 1e-12: 20-point Gauss–Legendre panels (measured ≤ 6e-14), erfc·e^{x²/2} below x = 5
                for value in (got, arr):
                    assert abs(value - want) <= 1e-12 * abs(want) + 1e-300, (a, beta, rem, value, want)
    for x in (0.0, 1e-12, 0.5, 0.999, 1.001, 4.99, 5.01, 30.0, 1e150):
        r = _mills(mp.mpf(x))
        with mp.workdps(60):  # (R + x)/(2√(2π)) − 1/4 cancels 25 digits at x = 1e-12
            rem = (_mills(mp.mpf(x)) + x) / (2 * mp.sqrt(2 * mp.pi)) - mp.mpf(1) / 4
        for value, want in ((ws.mills_scalar(x), r), (float(ws.mills(np.array(x))), r),
                            (ws.mills_rem_scalar(x), rem), (float(ws.mills_rem(np.array(x))), rem)):
            assert abs(value - want) <= 1e-14 * abs(want) + 1e-300, (x, value, want)  # series/fraction: ≤ 2e-15


# ---------------------------------------------------------------- the mpmath oracle
def _oracle(family, params):
    """(σ, σ', E[σ(X)], E[σ'(X)]) for X ~ N(μ, τ²), in mpmath; or None for the 2-D reductions."""
    import mpmath as mp

    p = {k: (_mp(v) if isinstance(v, str) else mp.mpf(v)) for k, v in params.items() if k != "coefficients"}
    Phi, phi, erf = _Phi, mp.npdf, _erf

    if family == "abrelu":
        a, b = p["a"], p["b"]

        def mean(mu, tau):
            if tau == 0:
                return a * min(mu, 0) + b * max(mu, 0)
            pos = mu * Phi(mu / tau) + tau * phi(mu / tau)
            return a * (mu - pos) + b * pos

        def dmean(mu, tau):
            if tau == 0:
                return b if mu > 0 else a
            return a * Phi(-mu / tau) + b * Phi(mu / tau)

        return (lambda x: a * min(x, 0) + b * max(x, 0), lambda x: b if x > 0 else a, mean, dmean, [0])
    if family in ("step", "sign"):
        k = 1 if family == "step" else 2
        off = 0 if family == "step" else 1
        sig = lambda x: (k * (1 if x > 0 else 0) - off) if x != 0 else (mp.mpf(1) / 2 if family == "step" else 0)  # noqa: E731
        mean = lambda mu, tau: sig(mu) if tau == 0 else k * Phi(mu / tau) - off  # noqa: E731
        return sig, None, mean, None, [0]
    if family == "rmono2":
        def mean(mu, tau):
            if tau == 0:
                return max(mu, 0) ** 2
            return (mu * mu + tau * tau) * Phi(mu / tau) + mu * tau * phi(mu / tau)

        def dmean(mu, tau):
            if tau == 0:
                return 2 * max(mu, 0)
            return 2 * (mu * Phi(mu / tau) + tau * phi(mu / tau))

        return lambda x: max(x, 0) ** 2, lambda x: 2 * max(x, 0), mean, dmean, [0]
    if family == "erf":
        a, b, c = p["a"], p["b"], p["c"]
        return (lambda x: a * erf(b * x) + c, lambda x: a * b * 2 / mp.sqrt(mp.pi) * mp.exp(-(b * x) ** 2),
                lambda mu, tau: a * erf(b * mu / mp.sqrt(1 + 2 * b * b * tau * tau)) + c,
                lambda mu, tau: a * b * 2 / mp.sqrt(mp.pi) * mp.exp(-(b * mu) ** 2 / (1 + 2 * b * b * tau * tau))
                / mp.sqrt(1 + 2 * b * b * tau * tau), [0])
    if family == "gelu":
        def mean(mu, tau):
            r = mp.sqrt(1 + tau * tau)
            return mu * Phi(mu / r) + tau * tau * phi(mu / r) / r

        def dmean(mu, tau):
            r = mp.sqrt(1 + tau * tau)
            return Phi(mu / r) + mu * phi(mu / r) / r**3

        return lambda x: x * Phi(x), lambda x: Phi(x) + x * phi(x), mean, dmean, [0]
    if family == "elu":
        al, sc = p["alpha"], p["scale"]

        def tail(mu, tau):  # E[e^X·1{X < 0}] = e^{μ + τ²/2}·Φ(−z) = φ(μ/τ)·R(z), z = (μ + τ²)/τ
            z = (mu + tau * tau) / tau
            return mp.exp(mu + tau * tau / 2) if z < -10 else phi(mu / tau) * _mills(z)

        def mean(mu, tau):
            if tau == 0:
                return sc * (mu if mu > 0 else al * mp.expm1(mu))
            return sc * (mu * Phi(mu / tau) + tau * phi(mu / tau) + al * (tail(mu, tau) - Phi(-mu / tau)))

        def dmean(mu, tau):
            if tau == 0:
                return sc * (1 if mu > 0 else al * mp.exp(mu))
            return sc * (Phi(mu / tau) + al * tail(mu, tau))

        return (lambda x: sc * (x if x > 0 else al * mp.expm1(x)), lambda x: sc * (1 if x > 0 else al * mp.exp(x)),
                mean, dmean, [0])
    if family == "gaussian":
        a, b = p["a"], p["b"]

        def mean(mu, tau):
            d = 1 - 2 * b * tau * tau
            return a * mp.exp(b * mu * mu / d) / mp.sqrt(d)

        return (lambda x: a * mp.exp(b * x * x), lambda x: 2 * a * b * x * mp.exp(b * x * x), mean,
                lambda mu, tau: 2 * b * mu / (1 - 2 * b * tau * tau) * mean(mu, tau), [0])
    if family == "gabor":
        def tilted(mu, tau):  # E[e^{−X² + iX}] and the tilted mean (μ + iτ²)/(1 + 2τ²)
            d = 1 + 2 * tau * tau
            return mp.exp((2j * mu - tau * tau - 2 * mu * mu) / (2 * d)) / mp.sqrt(d), (mu + 1j * tau * tau) / d

        def mean(mu, tau):
            return mp.im(tilted(mu, tau)[0])

        def dmean(mu, tau):
            e, m = tilted(mu, tau)
            return mp.im((-2 * m + 1j) * e)

        return (lambda x: mp.exp(-x * x) * mp.sin(x), lambda x: mp.exp(-x * x) * (mp.cos(x) - 2 * x * mp.sin(x)),
                mean, dmean, [0])
    if family == "poly":
        coeffs = [_mp(c) if isinstance(c, str) else mp.mpf(c) for c in params["coefficients"]]

        def moment(mu, tau, n):  # E[Xⁿ]
            return mp.fsum(mp.binomial(n, 2 * k) * mu ** (n - 2 * k) * tau ** (2 * k) * mp.fac2(2 * k - 1)
                           for k in range(n // 2 + 1))

        return (lambda x: mp.fsum(c * x**m for m, c in enumerate(coeffs)),
                lambda x: mp.fsum(m * c * x ** (m - 1) for m, c in enumerate(coeffs) if m),
                lambda mu, tau: mp.fsum(c * moment(mu, tau, m) for m, c in enumerate(coeffs)),
                lambda mu, tau: mp.fsum(m * c * moment(mu, tau, m - 1) for m, c in enumerate(coeffs) if m), [0])
    return None


def _mills(z):
    """R(z) = Φ(−z)/φ(z) to 30 digits for z ≥ −10 (mpmath's erfc overflows its own checks near 1e9)."""
    import mpmath as mp

    if z < 1e5:
        return mp.sqrt(mp.pi / 2) * mp.exp(z * z / 2) * mp.erfc(z / mp.sqrt(2))
    return (1 - 1 / z**2 + 3 / z**4 - 15 / z**6 + 105 / z**8) / z  # A&S 26.2.12, next term 945/z¹¹ < 1e-50


def _Phi(x):  # noqa: N802
    import mpmath as mp

    return mp.npdf(x) * _mills(-x) if x < -10 else 1 - mp.npdf(x) * _mills(x) if x > 10 else mp.ncdf(x)


def _erf(y):
    import mpmath as mp

    return 2 * _Phi(y * mp.sqrt(2)) - 1 if abs(y) > 5 else mp.erf(y)


def _mp(name):
    """A parameter that is not a float literal, to 30 digits (a fixed table: nothing is evaluated)."""
    import mpmath as mp

    table = {"1.6732632423543772848170429916717": lambda: mp.mpf("1.6732632423543772848170429916717"),
             "1.0507009873554804934193349852946": lambda: mp.mpf("1.0507009873554804934193349852946"),
             "-0.3+pi/2": lambda: mp.mpf("-0.3") + mp.pi / 2, "sqrt(2)": lambda: mp.sqrt(2),
             "sqrt(0.6)": lambda: mp.sqrt(mp.mpf("0.6")), "pi/4": lambda: mp.pi / 4,
             "-3/sqrt(6)": lambda: -3 / mp.sqrt(6), "1/sqrt(6)": lambda: 1 / mp.sqrt(6)}
    return table[name]()


def _exponential_terms(family, params):
    """σ as Σ w·e^{αx} (complex w, α), for the 2-D reduction E[e^{αu + βv}] = e^{(α²q1 + 2αβc + β²q2)/2}."""
    import mpmath as mp

    p = {k: (_mp(v) if isinstance(v, str) else mp.mpf(v)) for k, v in params.items()}
    if family == "exp":
        return [(p["a"], p["b"])], [(p["a"] * p["b"], p["b"])]
    a, b, c = p["a"], p["b"], p["c"]  # a·sin(bx + c) = (a/2i)(e^{i(bx + c)} − e^{−i(bx + c)})
    sig = [(a / 2j * mp.expj(c), 1j * b), (-a / 2j * mp.expj(-c), -1j * b)]
    dsig = [(a * b / 2 * mp.expj(c), 1j * b), (a * b / 2 * mp.expj(-c), -1j * b)]  # a·b·cos(bx + c)
    return sig, dsig


def reference(setting, q1, q2, c):
    """(K, K̇) at (q1, q2, c) (Fractions) to 30 digits, as Python floats (K̇ None where σ jumps)."""
    import mpmath as mp

    mp.mp.dps = 30
    family, params = SETTINGS[setting]
    if family == "elu" and max(q1, q2) < 1e-40:
        # ELU's conditional mean cancels O(1) terms to O(u) (e^X − 1), beyond 30 digits at u ~ 1e-150:
        # there σ(u) = λ·(α·min(u, 0) + max(u, 0)) + O(u²), so K and K̇ are ABReLU's to 1e-20 relative
        scale, alpha = (_mp(v) if isinstance(v, str) else mp.mpf(v) for v in (params["scale"], params["alpha"]))
        family, params = "abrelu", dict(a=scale * alpha, b=scale)
    tau2 = q2 - c * c / q1 if q1 else q2  # the conditional variance of v given u, exactly (Fractions)
    q1, q2, c = (mp.mpf(v.numerator) / v.denominator for v in (q1, q2, c))
    s1, s2 = mp.sqrt(q1), mp.sqrt(q2)
    oracle = _oracle(family, params)
    if oracle is None:
        out = []
        for terms in _exponential_terms(family, params):
            out.append(mp.re(mp.fsum(w1 * w2 * mp.exp((a1 * a1 * q1 + 2 * a1 * a2 * c + a2 * a2 * q2) / 2)
                                     for w1, a1 in terms for w2, a2 in terms)))
        return float(out[0]), float(out[1])
    sig, dsig, mean, dmean, kinks = oracle
    rho = c / (s1 * s2) if s1 * s2 > 0 else mp.mpf(0)
    tau = mp.sqrt(mp.mpf(tau2.numerator) / tau2.denominator)  # 0 at ρ = ±1 exactly
    if s1 == 0:  # u = 0: K = σ(0)·E[σ(v)]
        return float(sig(mp.mpf(0)) * mean(mp.mpf(0), s2)), None if dsig is None else float(dsig(mp.mpf(0)) * dmean(mp.mpf(0), s2))
    scales = {k / s1 for k in (1, 10, 100)}  # where σ(s1·x) changes
    if rho != 0:
        scales |= {k / abs(rho * s2) for k in (1, 10, 100)}  # where σ'(v) changes at ρ = ±1 (τ = 0)
    if rho != 0 and tau > 0:
        scales |= {k * tau / abs(rho * s2) for k in (1, 10, 100)}  # where E[σ(v) | u] changes
    edges = sorted({mp.mpf(k) for k in kinks} | {m * w for w in scales if w < 3 for m in (-1, 1)}
                   | {m * k for k in (3, 10) for m in (-1, 1)} | {-mp.inf, mp.inf})
    results = []
    for f, g in ((sig, mean), (dsig, dmean)):
        if f is None:
            results.append(None)
            continue
        size = mp.mpf(1)  # mpmath's tolerance is absolute: integrate again at the scale of the result
        for _ in range(2):
            value = mp.quad(lambda x: mp.npdf(x) * f(s1 * x) * g(rho * s2 * x, tau) / size, edges, method="gauss-legendre") * size
            if value == 0 or abs(value) > mp.mpf("1e-20"):
                break
            size = abs(value)
        results.append(float(value))
    return tuple(results)


def _references(setting):
    """The references of one setting: per point, K and K̇ at (x1, x2), (x1, x1), (x2, x2)."""
    cache = {}

    def ref(*args):
        if args not in cache:
            cache[args] = list(reference(setting, *args))
        return cache[args]

    rows = []
    for x1, x2 in _points():
        q1, q2, c = _moments(x1, x2)
        rows.append({"x1": x1, "x2": x2, "k12": ref(q1, q2, c), "k11": ref(q1, q1, q1), "k22": ref(q2, q2, q2)})
    return setting, rows


def _generate():
    from multiprocessing import Pool

    with Pool(2) as pool:
        data = dict(pool.map(_references, list(SETTINGS)))
    DATA.write_text(json.dumps(data, indent=0) + "\n")


if __name__ == "__main__":
    _generate()
