"""Every derived dual of a custom or composed activation is exact, numerical within its bound, or a
located error: one test per failure class, each against an independent oracle (nested scipy
quadrature, Owen/Sheppard orthant probabilities by 1-D scipy integration, published closed forms)."""

import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
from scipy import integrate
from scipy.special import erf, erfinv
from scipy.stats import norm

import ntkdsl
from ntkdsl.activations.steps import orthant
from ntkdsl.arraycode.printer import array_function

from oracles import gauss_expectation

X = np.random.default_rng(11).normal(size=(3, 4))
W, B = 1.2, 0.3
COV = W**2 * (X @ X.T) / 4 + B**2  # Σ after dense(3, w_std = 1.2, b_std = 0.3) (kernel-math §2)
PAIRS = ((0, 0), (0, 1), (1, 2))
QUAD = 5e-7  # the stated bound of the numerical dual, relative to |K| + √(q1q2) (docs/numerical-duals.md)


def _net(activation_line, layers):
    return ntkdsl.loads(f"{activation_line}\nnetwork n(input = 4) {{ {layers} }}")


def _notes(net):
    return [s.note for s in net.program.steps if s.note]


def _kdot(net_text, layers):
    """K̇ of the activation after dense: Θ after σ is Θ_dense·K̇ (kernel-math §3)."""
    theta = _net(net_text, f"dense(3, w_std = {W}, b_std = {B}); {layers}").kernels(X).ntk
    theta0 = _net("", f"dense(3, w_std = {W}, b_std = {B})").kernels(X).ntk
    return theta / theta0


def _entries(kernel, oracle, bound):
    for i, j in PAIRS:
        q1, q2, c = COV[i, i], COV[j, j], COV[i, j]
        expected = oracle(q1, q2, c / np.sqrt(q1 * q2))
        assert kernel[i, j] == pytest.approx(expected, abs=bound * (abs(expected) + np.sqrt(q1 * q2))), (i, j)


def test_recursive_split_falls_back_to_quadrature():
    net = _net("activation mytanh(x) = (exp(2*x) - 1) / (exp(2*x) + 1)", f"dense(3, w_std = {W}, b_std = {B}); mytanh")
    assert "numerical" in _notes(net)[0]
    _entries(net.kernels(X).nngp, lambda q1, q2, r: gauss_expectation(np.tanh, np.tanh, q1, q2, r, (-1.0, 0.0, 1.0)), QUAD)
    # a sum of odd and even terms splits (each part strictly smaller): erf + cos is exact
    net = _net("activation a(x) = erf(x) + cos(x)", "dense(3); a")
    assert "exact (odd + even" in _notes(net)[0]


@pytest.mark.parametrize("custom, layers, sigma, dsigma, points", [
    ("", "erf(c = -0.3); relu", lambda x: np.maximum(erf(x) - 0.3, 0),
     lambda x: (erf(x) > 0.3) * 2 / np.sqrt(np.pi) * np.exp(-x * x), (erfinv(0.3),)),
    ("activation m(x, p = 0.3) = relu(max(p, x))", "m", lambda x: np.maximum(x, 0.3), lambda x: (x > 0.3) * 1.0, (0.3,)),
    ("activation m(x) = abs(tanh(x) - 0.5)", "m", lambda x: np.abs(np.tanh(x) - 0.5),
     lambda x: np.sign(np.tanh(x) - 0.5) / np.cosh(x) ** 2, (np.arctanh(0.5),)),
])
def test_kinks_located_numerically(custom, layers, sigma, dsigma, points):
    net = _net(custom, f"dense(3, w_std = {W}, b_std = {B}); {layers}")
    _entries(net.kernels(X).nngp, lambda q1, q2, r: gauss_expectation(sigma, sigma, q1, q2, r, points), QUAD)
    _entries(_kdot(custom, layers), lambda q1, q2, r: gauss_expectation(dsigma, dsigma, q1, q2, r, points), QUAD)


def _orthant_oracle(a, b, q1, q2, rho):
    """P(u > a, v > b) by one adaptive integral over u (independent of Owen's T)."""
    if abs(rho) == 1:
        z = np.array([a / np.sqrt(q1), b / np.sqrt(q2)])
        return norm.sf(max(z)) if rho > 0 else max(0.0, norm.cdf(-z[1]) - norm.cdf(z[0]))
    w = np.sqrt(1 - rho**2)
    return integrate.quad(lambda z: norm.pdf(z) * norm.sf((b / np.sqrt(q2) - rho * z) / w), a / np.sqrt(q1), np.inf,
                          epsabs=1e-14, epsrel=1e-12)[0]


@pytest.mark.parametrize("a, b", [(0.3, -0.7), (0.0, 0.5), (-0.4, 0.0), (1.2, 1.2), (-1.0, -2.0), (0.0, 0.0)])
def test_orthant_probability_against_direct_integration(a, b):
    q1s, q2s, cs = sp.symbols("q1 q2 c")
    f = array_function(orthant(a, b, q1s, q2s, cs), (q1s, q2s, cs))
    for q1, q2 in ((1.0, 1.0), (0.5, 2.0), (3.0, 0.1)):
        for rho in (-1.0, -0.999, -0.5, 0.0, 0.9, 0.9999, 1.0):
            c = rho * np.sqrt(q1 * q2)
            # Owen's T (scipy) and the adaptive oracle are both ~1e-14 accurate
            assert float(f(q1, q2, c)) == pytest.approx(_orthant_oracle(a, b, q1, q2, rho), abs=1e-12)


@pytest.mark.parametrize("custom, layers, r", [
    ("", "tanh; step", 0.0),
    ("activation m(x) = step(x**3)", "m", 0.0),
    ("", "erf(c = 0.2); step", erfinv(-0.2)),
    ("activation m(x) = step(exp(x) - 2)", "m", np.log(2.0)),
])
def test_steps_of_monotone_functions_are_exact_and_psd(custom, layers, r):
    net = _net(custom, f"dense(3, w_std = {W}, b_std = {B}); {layers}")
    assert "exact (step functions" in _notes(net)[0]
    _entries(net.kernels(X).nngp, lambda q1, q2, rho: _orthant_oracle(r, r, q1, q2, rho), 1e-12)
    # nearly parallel inputs: the exact kernel is a covariance matrix (PSD up to rounding)
    base = np.random.default_rng(0).normal(size=4)
    near = base + 1e-5 * np.random.default_rng(1).normal(size=(20, 4))
    k = net.kernels(near).nngp
    assert np.linalg.eigvalsh(k).min() > -1e-12 * np.abs(k).max()  # rounding of a PSD matrix


def test_piecewise_constant_with_several_levels():
    net = _net("activation m(x) = 2*step(x - 0.5) - sign(x + 1)", f"dense(3, w_std = {W}, b_std = {B}); m")
    assert "exact (step functions" in _notes(net)[0]
    sigma = lambda x: 2.0 * (x > 0.5) - np.sign(x + 1)  # noqa: E731
    # the oracle integrates the jumps at their breakpoints: ~1e-10
    _entries(net.kernels(X).nngp, lambda q1, q2, rho: gauss_expectation(sigma, sigma, q1, q2, rho, (-1.0, 0.5)), 1e-9)


@pytest.mark.parametrize("body, message", [
    ("1/x", "E[σ(u)²] is infinite"),
    ("abs(x)**(-1/2)", "E[σ(u)²] is infinite"),
    ("log(x)", "E[σ(u)²] is undefined"),
    ("log(abs(x))", "E[σ'(u)²] is infinite"),  # σ integrates (tests/test_singular_duals.py); σ' = 1/x does not
])
def test_infinite_expectations_are_located_errors(body, message):
    with pytest.raises(ntkdsl.SpecError) as info:
        ntkdsl.loads(f"activation m(x) = {body}\nnetwork n(input = 4) {{\n  dense(3)\n  m\n}}")
    assert message in str(info.value) and "<string>:4:3:" in str(info.value)


def test_variance_dependent_divergence_is_refused_by_the_quadrature():
    from ntkdsl.arraycode.support import gaussian_expectation

    f = lambda x: np.exp(x * x)  # noqa: E731 - E[e^{u²}e^{v²}] < ∞ only for small variances
    q = np.array([0.9, 0.1])
    with pytest.raises(FloatingPointError, match=r"infinite or undefined at the variances \(0.9, 0.9\)"):
        gaussian_expectation(f, f, q, q, q)
    small = gaussian_expectation(f, f, q[1:], q[1:], q[1:])[0]
    assert small == pytest.approx(1 / np.sqrt(1 - 4 * 0.1), rel=1e-8)  # E[e^{2u²}] = (1 − 4q)^(−1/2); quadrature bound


@pytest.mark.parametrize("constant, q0", [("gaussian(b = 0)", 1.0), ("c", 0.01)])
def test_constant_activation_then_numerical(constant, q0):
    net = _net("activation c(x) = 0.1", f"dense(3); {constant}; dense(4, b_std = 0.5); tanh")
    k = net.kernels(X)
    q = q0 + 0.25  # every entry: u = v, variance σ_w²·K_const + σ_b²
    expected = integrate.quad(lambda z: norm.pdf(z) * np.tanh(np.sqrt(q) * z) ** 2, -12, 12, epsabs=1e-14)[0]
    np.testing.assert_allclose(k.nngp, expected, rtol=QUAD)
    assert k.nngp.shape == (3, 3)


@pytest.mark.parametrize("body, dual", [
    ("sin(x)", lambda q1, q2, c: (np.exp(-(q1 + q2 - 2 * c) / 2) - np.exp(-(q1 + q2 + 2 * c) / 2)) / 2),
    ("cos(2*x + 1)", lambda q1, q2, c: (np.exp(-2 * (q1 + q2 - 2 * c)) + np.cos(2) * np.exp(-2 * (q1 + q2 + 2 * c))) / 2),
    ("3*exp(x/2 + 1) - 1", lambda q1, q2, c: 9 * np.exp(2 + (q1 + q2 + 2 * c) / 8) - 3 * np.exp(1 + q1 / 8)
     - 3 * np.exp(1 + q2 / 8) + 1),
])
def test_trigonometric_and_exponential_atoms_are_exact_at_large_variance(body, dual):
    # Pearce et al. 2019 and the Gaussian moment generating function, at variances ~100
    net = _net(f"activation m(x) = {body}", "dense(3, w_std = 10); m")
    assert "exact" in _notes(net)[0]
    cov = 100 * (X @ X.T) / 4
    np.testing.assert_allclose(net.kernels(X).nngp, dual(cov.diagonal()[:, None], cov.diagonal()[None, :], cov),
                               rtol=1e-12, atol=1e-14)


def test_check_shows_method_and_bound(tmp_path):
    spec = tmp_path / "c.ntk"
    spec.write_text("activation m(x) = step(x**3)\nnetwork n(input = 2) {\n  dense(3)\n  m\n  dense(3)\n  tanh\n}\n")
    out = subprocess.run([sys.executable, "-m", "ntkdsl", "check", str(spec)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "exact (step functions" in out.stdout and "error: float64 rounding" in out.stdout
    assert "numerical (Mehler series" in out.stdout and "MEHLER_TOLERANCE = 1e-10" in out.stdout
    assert "error ≤ 1e-9·√(E[σ(u)²]·E[σ(v)²])" in out.stdout
