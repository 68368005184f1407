"""``gelu(approximate = tanh)``: σ(x) = x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (Hendrycks & Gimpel 2016;
jax.nn.gelu(approximate=True)) with its own dual, not neural-tangents' (NT 0.6.5 returns the exact GELU
kernel for either setting).

Oracles: nested adaptive scipy quadrature of E[σ(u)σ(v)] and E[σ'(u)σ'(v)] written here from the formula
(σ' by hand, no sympy, no ntkdsl code), and Monte Carlo over finite networks of the sampler, paired with the
exact-GELU network on the same weights so that the kernels' difference itself is resolved.
"""

import math

import numpy as np
import pytest
import sympy as sp
from scipy import integrate

import ntkdsl
from ntkdsl.activations import REGISTRY
from ntkdsl.activations.dual import QUADRATURE, row_dual
from ntkdsl.activations.evaluate import evaluate_dual
from ntkdsl.errors import SpecError
from ntkdsl.layers.activation import elementwise_forward
from shared import needs_numba

A, B = math.sqrt(2 / math.pi), 0.044715


def sigma(x):
    return 0.5 * x * (1 + math.tanh(A * (x + B * x**3)))


def sigma_prime(x):
    t = math.tanh(A * (x + B * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * A * (1 + 3 * B * x * x)


Z = 12.0  # |z| > 12 carries Gaussian mass < 1e-32, far below the tolerances; σ grows only linearly


def _splits(scale, shift=0.0):
    """z in (−Z, Z) where scale·z + shift crosses 0, ±1, ±3, ±10: σ's bend (width ~1 in x) at any variance."""
    if scale == 0:
        return []
    return sorted({(m - shift) / scale for m in (0.0, -1, 1, -3, 3, -10, 10) if abs((m - shift) / scale) < Z})


def line(f, q):
    """E[f(u)²], u ~ N(0, q): the diagonal, one adaptive integral."""
    return integrate.quad(lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi) * f(math.sqrt(q) * z) ** 2,
                          -Z, Z, points=_splits(math.sqrt(q)), epsabs=0, epsrel=1e-13, limit=400)[0]


def expectation(f, q1, q2, rho):
    """(E[f(u)f(v)], its Cauchy–Schwarz scale √(E[f(u)²]·E[f(v)²])) for (u, v) ~ N(0, [[q1, c], [c, q2]]),
    c = ρ√(q1q2): u = √q1·z1, v = ρ√q2·z1 + √q2·√(1−ρ²)·z2, nested adaptive quadrature.

    Each inner integral E[f(v) | z1] is asked for 1e-13·√E[f(v)²] and the outer one for 1e-13 of the scale,
    so the result is good to ~2e-13 of the scale (by Cauchy–Schwarz, E|f(u)| ≤ √E[f(u)²])."""
    n1, n2 = math.sqrt(line(f, q1)), math.sqrt(line(f, q2))
    s1, slope, s = math.sqrt(q1), rho * math.sqrt(q2), math.sqrt(q2) * math.sqrt(max(0.0, 1 - rho * rho))

    def phi(z):
        return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    def inner(z1):
        mu = slope * z1
        if s == 0:
            return f(mu)
        return integrate.quad(lambda z2: phi(z2) * f(mu + s * z2), -Z, Z, points=_splits(s, mu),
                              epsabs=1e-13 * n2, epsrel=1e-13, limit=400)[0]

    points = sorted(set(_splits(s1)) | set(_splits(slope)))
    value = integrate.quad(lambda z1: phi(z1) * f(s1 * z1) * inner(z1), -Z, Z, points=points,
                           epsabs=1e-13 * n1 * n2, epsrel=1e-13, limit=400)[0]
    return value, n1 * n2


# (q1, q2, ρ): variances 1e-3 … 1e3, equal and unequal, ρ = 0, moderate, near and at ±1
POINTS = [(1e-3, 1e-3, 0.3), (1e-3, 1e-3, -0.999999), (1.0, 1.0, 0.9), (1.0, 1.0, -0.99), (1.0, 1.0, -1.0),
          (0.5, 2.0, -0.5), (0.5, 2.0, 0.999999), (1e3, 1e3, 0.3), (1e3, 1e3, -0.5), (1e3, 1e3, 0.999999),
          (1e-3, 1e3, 0.9), (1e-3, 1e3, -0.999999), (1.0, 30.0, 0.9), (30.0, 30.0, 1.0)]
# The numerical dual's documented bound (docs/numerical-duals.md): the Mehler series' truncation ≤ 1e-10 of
# the Cauchy–Schwarz scale √(E[f(u)²]·E[f(v)²]) plus its 1-D and fallback quadratures (~1e-13), stated as
# 1e-9 of that scale. The oracle is good to ~2e-13 of the scale (:func:`expectation`).
# Measured worst over a 72-point grid (these variance pairs and (1, 30), ρ ∈ {0, ±0.3, ±0.5, ±0.9, ±0.99,
# ±(1 − 1e-6), ±1}, K and K̇): 8.6e-11 of the scale (K̇ at q = 1, ρ = 0.99: the series' 1e-10 truncation).
BOUND = 1e-9


@pytest.mark.parametrize("q1, q2, rho", POINTS)
def test_dual_against_quadrature(q1, q2, rho):
    c = rho * math.sqrt(q1 * q2)
    k, kdot = (float(v) for v in evaluate_dual("gelu", q1, q2, c, approximate="tanh"))
    for f, value in ((sigma, k), (sigma_prime, kdot)):
        expected, scale = expectation(f, q1, q2, rho)
        assert abs(value - expected) <= BOUND * scale, (f.__name__, value, expected, scale)


def test_not_the_exact_gelu_kernel():
    """At q = 5, ρ = 0.9 the two σ's kernels differ by ~1.7e-4 (docs/nt_layers notes): 10⁵ times the bound,
    so returning neural-tangents' (exact-GELU) kernel for the tanh form would fail the quadrature test."""
    q, c = 5.0, 4.5
    tanh_k = evaluate_dual("gelu", q, q, c, approximate="tanh")
    exact_k = evaluate_dual("gelu", q, q, c)
    expected, scale = expectation(sigma, q, q, 0.9)
    assert abs(float(tanh_k[0] - exact_k[0])) > 1e4 * BOUND * scale
    assert abs(float(tanh_k[0]) - expected) <= BOUND * scale


def test_dual_methods():
    """approximate = none keeps the closed form (the same expression as plain `gelu`); tanh is numerical."""
    row = REGISTRY.get("gelu")
    q1, q2, c = sp.symbols("q1 q2 c")
    plain, none, tanh = (row_dual(row, args, q1, q2, c) for args in ({}, {"approximate": "none"}, {"approximate": "tanh"}))
    assert plain == none and none.method.startswith("closed form (Tsuchida")
    assert tanh.method == QUADRATURE
    with pytest.raises(ValueError):  # the closed form is never applied to the tanh form
        row.dual(q1, q2, c, approximate="tanh")


def _first_activation(text):
    return ntkdsl.loads(text).ir.layers[1]


def test_sampler_sigma_is_the_tanh_form():
    """The finite networks' σ (compiled from the row's sympy expression) is the tanh form to rounding, and
    differs from x·Φ(x) by up to ~4.7e-4 (Hendrycks & Gimpel's approximation error)."""
    x = np.linspace(-8, 8, 2001)[:, None]
    tanh_node = _first_activation("network n(input = 1) { dense(1); gelu(approximate = tanh); dense(1) }")
    exact_node = _first_activation("network n(input = 1) { dense(1); gelu; dense(1) }")
    want = np.array([sigma(v) for v in x[:, 0]])[:, None]
    got = elementwise_forward(tanh_node, x)[0]
    # float64 rounding of tanh and the cubic: a few ulps of max(|σ|, 1)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)
    gap = np.abs(elementwise_forward(exact_node, x)[0] - got).max()
    assert 4e-4 < gap < 5e-4


def test_monte_carlo_paired_with_exact_gelu():
    """Finite networks agree with the analytic kernel, and so does the *difference* tanh − exact GELU.

    Each of S = 24 rounds averages 2 draws of both networks from the same seed (the same weights: the
    architectures have the same shapes), so the noise common to both cancels in their difference; the
    analytic difference (2e-4 … 6e-4 here) is 20–70 of its standard errors, so the exact-GELU kernel
    (neural-tangents') in place of ours would fail by far. Tolerance 5 standard errors (two-sided tail
    6e-7 per entry; seeds fixed) plus 1e-8·max|K| for the numerical dual's bound through the readout."""
    body = "network n(input = 3) {{ dense(512, w_std = 2.5, b_std = 0.3); {act}; dense(64, b_std = 0.2) }}"
    tanh_net = ntkdsl.loads(body.format(act="gelu(approximate = tanh)"))
    exact_net = ntkdsl.loads(body.format(act="gelu"))
    x = np.random.default_rng(0).standard_normal((5, 3))
    x[-2], x[-1] = 0.5 * x[0], -x[1]  # ρ = 1 and ρ = −1 pairs
    rounds = 24
    draws = {"nngp": ([], []), "ntk": ([], [])}
    for s in range(rounds):
        a = ntkdsl.monte_carlo(tanh_net, x, n_samples=2, seed=[11, s])
        b = ntkdsl.monte_carlo(exact_net, x, n_samples=2, seed=[11, s])
        for name, (alone, diff) in draws.items():
            alone.append(getattr(a, name))
            diff.append(getattr(a, name) - getattr(b, name))
    k_tanh, k_exact = tanh_net.kernels(x, backend="numpy"), exact_net.kernels(x, backend="numpy")
    for name, (alone, diff) in draws.items():
        k = getattr(k_tanh, name)
        for samples, want in ((alone, k), (diff, k - getattr(k_exact, name))):
            samples = np.array(samples)
            mean, se = samples.mean(0), samples.std(0, ddof=1) / math.sqrt(rounds)
            assert np.all(np.abs(mean - want) <= 5 * se + 1e-8 * np.abs(k).max()), (name, mean - want, se)
        assert np.max(np.abs(k - getattr(k_exact, name)) / se) > 10  # the test resolves the difference


@needs_numba
def test_numba_agrees_with_numpy():
    """The fused numba module and the NumPy module: the same Mehler series and fallback (docs/numerical-duals.md);
    1e-13 of each entry's Cauchy–Schwarz scale, as tests/test_numerical_fused.py states for whole networks."""
    net = ntkdsl.loads("network n(input = 4) { dense(16, w_std = 3, b_std = 0.1); gelu(approximate = tanh); "
                       "dense(16, w_std = 1.5); gelu(approximate = tanh); dense(1) }")
    x = np.random.default_rng(3).standard_normal((7, 4))
    x[5], x[6] = 2.0 * x[0], -x[1]
    want, got = net.kernels(x, backend="numpy"), net.kernels(x, backend="numba")
    for name in ("nngp", "ntk"):
        a, b = getattr(want, name), getattr(got, name)
        scale = np.sqrt(np.outer(np.diag(a), np.diag(a)))
        assert np.all(np.abs(a - b) <= 1e-13 * scale), name
        np.testing.assert_array_equal(np.diag(a), np.diag(b))


def test_canonical_text_round_trips():
    for act, printed in (("gelu", "gelu(approximate = none)"), ("gelu(approximate = none)", "gelu(approximate = none)"),
                         ("gelu(approximate = tanh)", "gelu(approximate = tanh)")):
        net = ntkdsl.loads(f"network n(input = 2) {{ dense(3); {act}; dense(1) }}")
        assert printed in net.to_ntk()
        assert ntkdsl.loads(net.to_ntk()).ir == net.ir
    plain = ntkdsl.loads("network n(input = 2) { dense(3); gelu; dense(1) }")
    assert plain.ir == ntkdsl.loads("network n(input = 2) { dense(3); gelu(approximate = none); dense(1) }").ir


@pytest.mark.parametrize("arg, message, column", [
    ("approximate = tahn", "approximate must be one of none, tanh; got 'tahn'; did you mean 'tanh'?", 24),
    ("approximate = 1", "approximate must be one of none, tanh; got a number", 24),
    ("approximate = exact", "approximate must be one of none, tanh; got 'exact'", 24),
])
def test_wrong_word_is_a_located_error(arg, message, column):
    text = f"network n(input = 2) {{\n    dense(3)\n    gelu({arg})\n    dense(1)\n}}\n"
    with pytest.raises(SpecError) as info:
        ntkdsl.loads(text, filename="net.ntk")
    shown = str(info.value)
    assert shown.splitlines()[0] == f"net.ntk:3:{column}: error: {message}"
    assert f"gelu({arg})" in shown and "^" in shown
