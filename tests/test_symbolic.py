"""The symbolic stage: the safe primitives, program invariants, and parameters kept as symbols
(∂Θ/∂σ_w agrees with a finite difference). Every registry row against quadrature, Monte Carlo and
Price's theorem: tests/test_activation_catalog.py."""

import numpy as np
import pytest
import sympy as sp

import ntkdsl
from ntkdsl.algebra.functions import angle, perp

# perp and angle as NumPy functions, for lambdify (the generated-code path is tested in test_codegen.py)
_NUMERIC = [{"angle": lambda c, p: np.arctan2(np.sqrt(np.maximum(p - c * c, 0)), c),
             "perp": lambda c, p: np.sqrt(np.maximum(p - c * c, 0))}, "numpy", "scipy"]


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
