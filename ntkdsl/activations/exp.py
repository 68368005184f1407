"""Exponential activations: a·exp(b·x), the Gaussian bump a·exp(b·x²) and the Gabor function
e^{−x²}·sin x (neural-tangents' Exp, Gaussian, Gabor).

All three duals are Gaussian integrals of an exponential of a quadratic form, for
(u, v) ~ N(0, Σ), Σ = [[q1, c], [c, q2]]:

* E[e^{b(u + v)}] = e^{b²(q1 + q2 + 2c)/2} (the moment generating function);
* E[e^{b(u² + v²)}] = det(I − 2bΣ)^{−1/2} = D^{−1/2}, D = (1 − 2bq1)(1 − 2bq2) − 4b²c² (Williams 1998).
  For b ≤ 0 (the default b = −1), D ≥ 1 and K is finite everywhere. For b > 0, K is finite only while
  I − 2bΣ stays positive definite: on the diagonal that needs b < 1/(4q) (b < 1/(2q) is the condition
  for E[σ(u)] alone); beyond it the expectation is infinite and the generated code returns NaN.
* Gabor (Han et al. 2022): with S = q1 + q2, D = 4(q1q2 − c²), d = 1 + 2S + D = det(I + 2Σ) and
  m = S + D + 2c, K = e^{−m/(2d)}·(e^{2c/d} − 1)/(2√d); K̇ = ∂K/∂c (Price's theorem), written out.

q1q2 − c² is written as perp(c, q1q2)² (clamped at 0), so round-off at ρ = ±1 cannot make D negative
and the diagonal simplifies exactly.
"""

from __future__ import annotations

import sympy as sp

from ..algebra.functions import perp
from .registry import REGISTRY, ActivationParam, ActivationRow

_WILLIAMS_1998 = "Williams 1998, 'Computation with infinite neural networks' (Neural Computation 10)"
_HAN = ("Han, Zandieh, Lee, Novak, Xiao & Karbasi 2022, 'Fast neural kernel embeddings for general "
        "activations' (NeurIPS)")


def _exp_nngp(q1, q2, c, a, b):
    return a**2 * sp.exp(b**2 * (q1 + q2 + 2 * c) / 2)


REGISTRY.add(
    ActivationRow(
        name="exp",
        params=(ActivationParam("a", sp.S.One), ActivationParam("b", sp.S.One)),
        fn=lambda x, a, b: a * sp.exp(b * x),
        nngp=_exp_nngp,
        nngp_dot=lambda q1, q2, c, a, b: b**2 * _exp_nngp(q1, q2, c, a, b),
        citation="Gaussian moment generating function E[e^{t·w}] = e^{t²Var(w)/2}; neural-tangents' Exp "
                 "(Novak et al. 2020)",
        doc="a·exp(b·x)",
        mean=lambda q, a, b: a * sp.exp(b**2 * q / 2),
    )
)


def _gaussian_det(q1, q2, c, b):
    """det(I − 2bΣ) = 1 − 2b(q1 + q2) + 4b²(q1q2 − c²)."""
    return 1 - 2 * b * (q1 + q2) + 4 * b**2 * perp(c, q1 * q2) ** 2


REGISTRY.add(
    ActivationRow(
        name="gaussian",
        params=(ActivationParam("a", sp.S.One), ActivationParam("b", -sp.S.One)),
        fn=lambda x, a, b: a * sp.exp(b * x**2),
        nngp=lambda q1, q2, c, a, b: a**2 / sp.sqrt(_gaussian_det(q1, q2, c, b)),
        nngp_dot=lambda q1, q2, c, a, b: 4 * a**2 * b**2 * c / _gaussian_det(q1, q2, c, b) ** sp.Rational(3, 2),
        citation=_WILLIAMS_1998 + "; neural-tangents' Gaussian (Novak et al. 2020)",
        doc="a·exp(b·x²) (finite dual for b < 1/(4q); default b = −1 is finite everywhere)",
        mean=lambda q, a, b: a / sp.sqrt(1 - 2 * b * q),
    )
)


def _gabor_parts(q1, q2, c):
    S = q1 + q2
    D = 4 * perp(c, q1 * q2) ** 2
    d = 1 + 2 * S + D
    return S, D, d, sp.exp(-(S + D - 2 * c) / (2 * d)), sp.exp(-(S + D + 2 * c) / (2 * d))


def _gabor_nngp(q1, q2, c):
    """e^{−m/(2d)}·(e^{2c/d} − 1)/(2√d) = (E₋ − E₊)/(2√d) = −E₋·expm1(−2c/d)/(2√d), E∓ = e^{−(S + D ∓ 2c)/(2d)}
    (expm1: E₋ − E₊ cancels to O(c) at small variances)."""
    from sympy.codegen.cfunctions import expm1

    S, D, d, e_minus, e_plus = _gabor_parts(q1, q2, c)
    return -e_minus * expm1(-2 * c / d) / (2 * sp.sqrt(d))


def _gabor_nngp_dot(q1, q2, c):
    """∂K/∂c in closed form (∂D/∂c = ∂d/∂c = −8c): [E₋·(A + B) + E₊·(A − B)]/(2d^{5/2}) with
    A = 1 + 2S + D + 8c² and B = 4c(D + 3S + 2) (as neural-tangents' Gabor); a test checks it against
    sympy's derivative of K."""
    S, D, d, e_minus, e_plus = _gabor_parts(q1, q2, c)
    A = 1 + 2 * S + D + 8 * c**2
    B = 4 * c * (D + 3 * S + 2)
    return (e_minus * (A + B) + e_plus * (A - B)) / (2 * d ** sp.Rational(5, 2))


REGISTRY.add(
    ActivationRow(
        name="gabor",
        params=(),
        fn=lambda x: sp.exp(-x**2) * sp.sin(x),
        nngp=_gabor_nngp,
        nngp_dot=_gabor_nngp_dot,  # = ∂K/∂c (Price's theorem), written out: deriving it per layer is slow
        citation=_HAN,
        doc="exp(−x²)·sin(x)",
        mean=lambda q: sp.S.Zero,  # odd
    )
)
