"""Numerical duals of exp-based activations (SiLU, softplus, sigmoid, Mish, a custom swish) at
pre-activation variances 1e-6 … 1e6: finite, no warnings, and equal to independent references.

References: E[σ(u)²] and E[σ'(u)²] by mpmath (20 digits, adaptive tanh-sinh over panels at σ's
transition); off-diagonal entries by nested adaptive quadrature (tests/oracles.py, ~1e-12) of
float64 forms written here without exp overflow; the slow test checks that oracle against a nested
20-digit mpmath integral. The rewrite itself (ntkdsl.algebra.stable) is checked against the
original expressions as symbolic identities and by 50-digit evaluation.
"""

import warnings

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

import ntkdsl
from ntkdsl.algebra.stable import Logistic, Softplus, stabilize
from tests.oracles import gauss_expectation

VARIANCES = (1e-6, 1.0, 1e3, 1e4, 1e6)
RHO = 0.6  # the correlation of each point with its partner, whose variance is a quarter of its own
# The documented bound of numerical duals (docs/numerical-duals.md): 1e-10 truncation per entry
# plus quadratures ~1e-13, relative to the Cauchy–Schwarz scale √(E[σ(u)²]·E[σ(v)²]); the
# references are good to ~1e-12 of it; 1e-9 leaves a factor 10 over the documented bound.
BOUND = 1e-9
# σ-arguments at which the oracles' panels end: σ's transition (σ' of the logistic is a bump of
# width ~1 in u: at q = 1e6 panels without ±50 miss it in the outer integral, 1.3% off)
POINTS = (0.0, -1.0, 1.0, -5.0, 5.0, -50.0, 50.0)


def _np_logistic(x):
    return 0.5 * (1 + np.tanh(x / 2))  # 1/(1 + e^(−x)), finite everywhere


def _np_softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _mp_logistic(x):
    return 1 / (1 + mp.exp(-x))


def _mp_softplus(x):
    return mp.log(1 + mp.exp(x))


# name: (spec prefix, σ, σ' in mpmath; σ, σ' in float64), each from its defining formula
ACTIVATIONS = {
    "silu": ("", "silu",
             lambda x: x * _mp_logistic(x), lambda x: _mp_logistic(x) * (1 + x * (1 - _mp_logistic(x))),
             lambda x: x * _np_logistic(x), lambda x: _np_logistic(x) * (1 + x * _np_logistic(-x))),
    "softplus": ("", "softplus", _mp_softplus, _mp_logistic, _np_softplus, _np_logistic),
    "sigmoid": ("", "sigmoid", _mp_logistic, lambda x: _mp_logistic(x) * _mp_logistic(-x),
                _np_logistic, lambda x: _np_logistic(x) * _np_logistic(-x)),
    "mish": ("", "mish",
             lambda x: x * mp.tanh(_mp_softplus(x)),
             lambda x: mp.tanh(_mp_softplus(x)) + x * (1 - mp.tanh(_mp_softplus(x)) ** 2) * _mp_logistic(x),
             lambda x: x * np.tanh(_np_softplus(x)),
             lambda x: np.tanh(_np_softplus(x)) + x * (1 - np.tanh(_np_softplus(x)) ** 2) * _np_logistic(x)),
}
ACTIVATIONS["custom swish"] = ("activation sw(x) = x/(1 + exp(-x))\n", "sw", *ACTIVATIONS["silu"][2:])  # SiLU's references
_CACHE = {}  # reference values by (oracle, function, variance): the backends and the custom swish share them


def _inputs():
    """Points a_k with variance q_k = |a_k|²/2 after dense(1) (w_std = 1, fan-in 2), and partners b_k
    at correlation RHO with variance q_k/4: rows a_0, b_0, a_1, b_1, …"""
    rows = []
    for q in VARIANCES:
        r = np.sqrt(2 * q)
        rows += [[r, 0.0], [r / 2 * RHO, r / 2 * np.sqrt(1 - RHO**2)]]
    return np.array(rows)


def _panels(scale):
    """Edges at the preimages of the POINTS for mpmath's quadrature."""
    return [-mp.inf] + sorted({mp.mpf(t) / scale for t in POINTS}) + [mp.inf]


def _mp_square(f, q):
    """E[f(u)²], u ~ N(0, q), 20 digits."""
    r = mp.sqrt(mp.mpf(q))
    return mp.quad(lambda z: f(r * z) ** 2 * mp.npdf(z), _panels(r))


@pytest.fixture(scope="module", params=list(ACTIVATIONS))
def case(request):
    prefix, name, *functions = ACTIVATIONS[request.param]
    net = ntkdsl.loads(f"{prefix}network n(input = 2) {{ dense(1); {name}; dense(1) }}")
    x = _inputs()
    sigma1 = x @ x.T / 2  # the first layer's NNGP (= NTK): w_std = 1, no bias
    out = {}
    for backend in ("numpy", "numba"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no overflow or invalid-value warnings anywhere
            k = net.kernels(x, backend=backend)
        # readout dense(1): Σ = K, Θ = K + K̇·Θ₁ with Θ₁ = Σ₁ (kernel-math.md §2), so K̇ = (Θ − Σ)/Σ₁
        # their rounding (a few ulps of |Θ| + |Σ|) is amplified by 1/Σ₁ in K̇: its share of the tolerance
        out[backend] = (k.nngp, (k.ntk - k.nngp) / sigma1, 8 * np.finfo(float).eps * (abs(k.ntk) + abs(k.nngp)) / sigma1)
    return request.param, functions, out


def _cached(compute, *args):
    if (compute, *args) not in _CACHE:
        _CACHE[(compute, *args)] = compute(*args)
    return _CACHE[(compute, *args)]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_variances_match_mpmath(case, backend):
    _, (f, df, *_), out = case
    K, Kdot, rounding = out[backend]
    assert np.all(np.isfinite(K)) and np.all(np.isfinite(Kdot))
    for k, q in enumerate(VARIANCES):
        for got, h, extra in ((K, f, 0 * rounding), (Kdot, df, rounding)):
            for i, v in ((2 * k, q), (2 * k + 1, q / 4)):
                want = float(_cached(_mp_square, h, v))
                assert abs(got[i, i] - want) <= BOUND * want + extra[i, i], (k, q, got[i, i], want)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_correlated_entries_match_nested_quadrature(case, backend):
    _, (f, df, nf, ndf), out = case
    K, Kdot, rounding = out[backend]
    for k, q in enumerate(VARIANCES):
        i, j = 2 * k, 2 * k + 1
        for got, h, nh, extra in ((K, f, nf, 0 * rounding), (Kdot, df, ndf, rounding)):
            scale = float(mp.sqrt(_cached(_mp_square, h, q) * _cached(_mp_square, h, q / 4)))
            want = _cached(_nested, nh, q)
            assert abs(got[i, j] - want) <= BOUND * scale + extra[i, j], (k, q, got[i, j], want)
            assert got[i, j] == got[j, i]


def _nested(h, q):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's roundoff notices in the oracle: its value is checked (slow test)
        return gauss_expectation(h, h, q, q / 4, RHO, points=POINTS)


def test_backends_agree(case):
    _, _, out = case
    for a, b in zip(out["numpy"], out["numba"]):
        np.testing.assert_allclose(a, b, rtol=1e-12)  # the same series and rounding (mehler_fused)


@pytest.mark.slow
def test_nested_oracle_against_mpmath():
    """The float64 nested-quadrature oracle against a 20-digit nested mpmath integral (SiLU, ~minutes)."""
    f, _, nf, _ = ACTIVATIONS["silu"][2:]
    for q in (1.0, 1e6):
        r1, r2 = mp.sqrt(q), mp.sqrt(q / 4)
        s = r2 * mp.sqrt(1 - mp.mpf(RHO) ** 2)

        def inner(z1, r2=r2, s=s):
            mu = r2 * RHO * z1
            return mp.quad(lambda z2: f(mu + s * z2) * mp.npdf(z2), [-mp.inf] + sorted(
                {(t - mu) / s for t in POINTS}) + [mp.inf])

        want = mp.quad(lambda z1, r1=r1: f(r1 * z1) * inner(z1) * mp.npdf(z1), _panels(r1))
        got = gauss_expectation(nf, nf, q, q / 4, RHO, points=POINTS)
        assert abs(got - float(want)) <= 1e-12 * abs(float(want))  # the oracle's stated accuracy


X = sp.Symbol("x", real=True)
EXPRESSIONS = [
    1 / (1 + sp.exp(-X)), sp.log(1 + sp.exp(X)), X / (1 + sp.exp(-X)), X * sp.tanh(sp.log(1 + sp.exp(X))),
    (sp.exp(2 * X) - 1) / (sp.exp(2 * X) + 1), X * sp.exp(X) / (1 + sp.exp(X)),
]


@pytest.mark.parametrize("expr", EXPRESSIONS + [sp.diff(e, X) for e in EXPRESSIONS], ids=str)
def test_rewrite_is_an_identity_without_exp(expr):
    stable = stabilize(expr)
    assert not stable.has(sp.exp) and stable.has(Logistic, Softplus)
    back = stable.rewrite(sp.exp)
    for t in ("-30.5", "-2", "0.3", "7", "41"):  # 50 digits at each point: the same function
        a, b = (e.subs(X, sp.Float(t, 50)).evalf(50) for e in (expr, back))
        assert abs(a - b) <= sp.Float("1e-40") * (1 + abs(a))


@pytest.mark.parametrize("expr", [sp.exp(X) - 1, sp.exp(-X**2 / 2), X * sp.exp(X), sp.tanh(X),
                                  sp.Piecewise((X, X > 0), (sp.exp(X) - 1, True))], ids=str)
def test_rewrite_leaves_other_exp_forms(expr):
    assert stabilize(expr) == expr  # a logistic form would divide by L(a): no rewrite


def test_printed_sigma_is_finite_at_extreme_arguments():
    from ntkdsl.arraycode.printer import array_function

    x = np.array([-1e300, -1e4, -800.0, -40.0, 0.0, 40.0, 800.0, 1e4, 1e300])
    for expr in EXPRESSIONS:
        for e in (expr, sp.diff(expr, X)):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                values = array_function(stabilize(e), (X,))(x)
            assert np.all(np.isfinite(values)), e
