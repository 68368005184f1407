"""The symbolic stage: registry rows against quadrature and Price's theorem, program invariants,
and parameters kept as symbols (∂Θ/∂σ_w agrees with a finite difference)."""

import numpy as np
import pytest
import sympy as sp
from scipy import integrate

import ntkdsl
from ntkdsl.activations import REGISTRY
from ntkdsl.symbolic.functions import angle, perp

# (q1, q2, ρ): unequal variances, negative, zero and strong correlations
POINTS = [(1.0, 1.0, 0.0), (0.5, 2.0, 0.5), (2.0, 0.7, -0.9), (1.3, 1.3, 0.95), (3.0, 0.2, -0.3)]
# parameter values per row for the oracle checks (defaults plus a non-trivial setting)
PARAMS = {"relu": [{}], "erf": [{"a": 1, "b": 1, "c": 0}, {"a": 2, "b": 0.5, "c": 0.3}]}
_NUMERIC = [{"angle": lambda c, p: np.arctan2(np.sqrt(np.maximum(p - c * c, 0)), c),
             "perp": lambda c, p: np.sqrt(np.maximum(p - c * c, 0))}, "numpy", "scipy"]


def _row_functions(row, params):
    q1, q2, c, x = sp.symbols("q1 q2 c x", real=True)
    args = {k: sp.nsimplify(v) for k, v in params.items()}
    k, kdot = row.dual(q1, q2, c, **args)
    sigma = row.fn(x, **args)
    return (
        sp.lambdify((q1, q2, c), k, _NUMERIC),
        sp.lambdify((q1, q2, c), kdot, _NUMERIC),
        sp.lambdify((q1, q2, c), sp.diff(k, c), _NUMERIC),
        sp.lambdify(x, sigma, ["numpy", "scipy"]),
        sp.lambdify(x, sp.diff(sigma, x).replace(sp.Heaviside, lambda a, *_: sp.Piecewise((1, a > 0), (0, True))), ["numpy", "scipy"]),
    )


def _gauss_expectation(f, g, q1, q2, rho):
    """E[f(u) g(v)], (u, v) ~ N(0, [[q1, c], [c, q2]]), by nested adaptive quadrature.

    u = √q1·z1, v = √q2·(ρ·z1 + √(1 − ρ²)·z2); breakpoints where u = 0 or v = 0 handle kinks.
    """
    s = np.sqrt(1 - rho**2)
    phi = lambda z: np.exp(-z * z / 2) / np.sqrt(2 * np.pi)  # noqa: E731

    def inner(z1):
        fu = f(np.sqrt(q1) * z1)
        kink = -rho * z1 / s
        val, _ = integrate.quad(lambda z2: phi(z2) * g(np.sqrt(q2) * (rho * z1 + s * z2)), -12, 12,
                                points=[kink] if -12 < kink < 12 else None, epsabs=1e-13, epsrel=1e-12, limit=200)
        return phi(z1) * fu * val

    val, _ = integrate.quad(inner, -12, 12, points=[0.0], epsabs=1e-12, epsrel=1e-11, limit=200)
    return val


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_every_row_against_quadrature_and_price(name):
    row = REGISTRY.rows[name]
    for params in PARAMS[name]:
        k, kdot, dk, sigma, dsigma = _row_functions(row, params)
        for q1, q2, rho in POINTS:
            c = rho * np.sqrt(q1 * q2)
            expected_k = _gauss_expectation(sigma, sigma, q1, q2, rho)
            expected_kdot = _gauss_expectation(dsigma, dsigma, q1, q2, rho)
            # quadrature converges to ~1e-10 absolute here (tolerances 1e-12/1e-13 per level, smooth pieces)
            assert k(q1, q2, c) == pytest.approx(expected_k, abs=1e-9, rel=1e-9), (params, q1, q2, rho)
            assert kdot(q1, q2, c) == pytest.approx(expected_kdot, abs=1e-9, rel=1e-9), (params, q1, q2, rho)
            # Price's theorem: the published K̇ is ∂K/∂c (symbolic derivative, float round-off only)
            assert kdot(q1, q2, c) == pytest.approx(dk(q1, q2, c), rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_diagonal_form_is_the_limit_of_the_offdiagonal_one(name):
    row = REGISTRY.rows[name]
    for params in PARAMS[name]:
        k = _row_functions(row, params)[0]
        q = sp.Symbol("q", positive=True)
        diag = sp.lambdify(q, row.nngp(q, q, q, **{a: sp.nsimplify(v) for a, v in params.items()}), _NUMERIC)
        for qv in (1e-3, 0.7, 5.0):
            # the off-diagonal form at ρ = 1 − 1e-12 differs from the diagonal by O(√1e-12) for kinked σ
            assert diag(qv) == pytest.approx(k(qv, qv, qv * (1 - 1e-12)), rel=1e-5, abs=1e-12)
            assert np.isfinite(k(0.0, qv, 0.0)) and np.isfinite(diag(0.0))  # zero-norm inputs


def test_safe_functions_evaluate_the_diagonal_exactly():
    q = sp.Symbol("q", nonnegative=True)
    assert perp(q, q**2) == 0 and angle(q, q**2) == 0
    c, p = sp.symbols("c p", positive=True)
    # the hand-written derivatives agree with sympy's derivatives of arccos(c/√p) and √(p − c²)
    at = {c: sp.Rational(3, 10), p: 2}
    numeric = lambda e: float(e.subs(at).replace(perp, lambda a, b: sp.sqrt(b - a**2)))  # noqa: E731
    for mine, reference in [(angle(c, p), sp.acos(c / sp.sqrt(p))), (perp(c, p), sp.sqrt(p - c**2))]:
        for var in (c, p):
            assert numeric(sp.diff(mine, var)) == pytest.approx(float(sp.diff(reference, var).subs(at)), rel=1e-14)


def test_deep_program_stays_straight_line_and_small():
    net = ntkdsl.loads("network deep(input = 3) { repeat 50 { dense(8, w_std = 1.4, b_std = 0.1); relu }; dense(1) }")
    program = net.program.check()
    assert len(program.steps) == 102
    # one assignment per quantity per layer: each expression is a handful of operations, never nested L deep
    assert max(sp.count_ops(expr) for step in program.steps for _, expr in step.assignments) < 30
    assert str(program).count("nngp_100 =") == 1


def _compose(program, keep):
    """The output Θ as one expression in the input symbols and the parameters in ``keep``."""
    values = {s: v for s, v in program.parameters.items() if s not in keep}
    expr = program.output.ntk
    for step in reversed(program.steps):
        for sym, value in reversed(step.assignments):
            expr = expr.subs(sym, value)
    return expr.xreplace(values)


def test_parameters_stay_symbols_and_differentiate():
    text = "network n(input = 2) {{ dense(4, w_std = {w}, b_std = 0.2); relu; dense(1, w_std = 1.3, b_std = 0.1) }}"
    net = ntkdsl.loads(text.format(w=0.9))
    w = next(s for s in net.program.parameters if str(s) == "w_std_1")
    assert net.program.parameters[w] == sp.Rational(9, 10)
    theta = _compose(net.program, keep={w})
    first = net.program.steps[0].state
    x1, x2 = np.array([0.3, -1.2]), np.array([1.1, 0.4])
    inputs = {first.cov1: x1 @ x1 / 2, first.cov2: x2 @ x2 / 2, first.nngp: x1 @ x2 / 2}
    dtheta = sp.lambdify(w, sp.diff(theta, w).subs(inputs), _NUMERIC)(0.9)
    h = 1e-6  # central difference: error O(h²·Θ''') ≈ 1e-12, round-off O(ε/h) ≈ 1e-10
    plus = ntkdsl.loads(text.format(w=0.9 + h)).ntk([x1], [x2])[0, 0]
    minus = ntkdsl.loads(text.format(w=0.9 - h)).ntk([x1], [x2])[0, 0]
    assert dtheta == pytest.approx((plus - minus) / (2 * h), rel=1e-7)
