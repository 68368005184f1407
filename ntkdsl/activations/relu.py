"""The ReLU family: ABReLU a·min(u, 0) + b·max(u, 0), its members, and the arc-cosine kernels.

Dual of ABReLU (Tsuchida et al. 2018; for ReLU, a = 0, b = 1, the arc-cosine kernel of Cho & Saul
2009):

    K = ((a − b)²/(2π))·√(q1q2)·sin θ + [(a² + b²)/2 − (a − b)²·θ/(2π)]·c
    K̇ = (a² + b²)/2 − (a − b)²·θ/(2π)

Rectified monomials 1{u > 0}·uⁿ (Cho & Saul 2009, arc-cosine kernel of degree n):

    K_n = (q1q2)^{n/2}·J_n(θ)/(2π),   J_n = (−1)ⁿ (sin θ)^{2n+1} ((1/sin θ)∂_θ)ⁿ ((π − θ)/sin θ)
    K̇_n = n²·K_{n−1}   (σ' = n·1{u > 0}·u^{n−1}); step = the case n = 0, with K̇ := 0 (a jump)

J_n is built from a recursion on two polynomials in cos θ (:func:`arc_cosine_polynomials`) and
written in q1q2, c and √(q1q2)·sin θ only, so zero-norm inputs never divide by √(q1q2).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence, Tuple

import sympy as sp

from ..algebra.functions import angle, ordered_variances, perp
from .registry import REGISTRY, ActivationParam, ActivationRow

_TSUCHIDA = "Tsuchida, Roosta & Gallagher 2018, 'Invariance of weight distributions in rectified MLPs'"
_CHO_SAUL = "Cho & Saul 2009, 'Kernel methods for deep learning' (arc-cosine kernel, n = 1)"
_CHO_SAUL_N = "Cho & Saul 2009, 'Kernel methods for deep learning' (arc-cosine kernel of degree n)"


def abrelu_dual(a, b):
    """(K, K̇) builders of a·min(u, 0) + b·max(u, 0)."""

    def nngp(q1, q2, c, **_):
        p = q1 * q2
        return (a - b) ** 2 / (2 * sp.pi) * perp(c, p) + nngp_dot(q1, q2, c) * c

    def nngp_dot(q1, q2, c, **_):
        return (a**2 + b**2) / 2 - (a - b) ** 2 * angle(c, q1 * q2) / (2 * sp.pi)

    return nngp, nngp_dot


def _half_normal_mean(q):
    """E[max(u, 0)] = √(q/(2π)) for u ~ N(0, q)."""
    return sp.sqrt(q / (2 * sp.pi))


_relu_k, _relu_kdot = abrelu_dual(sp.S.Zero, sp.S.One)

REGISTRY.add(
    ActivationRow(
        name="relu",
        params=(),
        fn=lambda x: sp.Max(x, 0),
        nngp=_relu_k,
        nngp_dot=_relu_kdot,
        citation=_CHO_SAUL + "; " + _TSUCHIDA,
        doc="max(x, 0)",
        mean=_half_normal_mean,
        breakpoints=(0.0,),
    )
)

REGISTRY.add(
    ActivationRow(
        name="leaky_relu",
        params=(ActivationParam("alpha", sp.Rational(1, 100)),),
        fn=lambda x, alpha: alpha * sp.Min(x, 0) + sp.Max(x, 0),
        nngp=lambda q1, q2, c, alpha: abrelu_dual(alpha, sp.S.One)[0](q1, q2, c),
        nngp_dot=lambda q1, q2, c, alpha: abrelu_dual(alpha, sp.S.One)[1](q1, q2, c),
        citation=_TSUCHIDA + " (ABReLU with a = alpha, b = 1)",
        doc="alpha·min(x, 0) + max(x, 0)",
        mean=lambda q, alpha: (1 - alpha) * _half_normal_mean(q),
        breakpoints=(0.0,),
    )
)

REGISTRY.add(
    ActivationRow(
        name="abrelu",
        params=(ActivationParam("a"), ActivationParam("b")),
        fn=lambda x, a, b: a * sp.Min(x, 0) + b * sp.Max(x, 0),
        nngp=lambda q1, q2, c, a, b: abrelu_dual(a, b)[0](q1, q2, c),
        nngp_dot=lambda q1, q2, c, a, b: abrelu_dual(a, b)[1](q1, q2, c),
        citation=_TSUCHIDA,
        doc="a·min(x, 0) + b·max(x, 0)",
        mean=lambda q, a, b: (b - a) * _half_normal_mean(q),
        breakpoints=(0.0,),
    )
)

_abs_k, _abs_kdot = abrelu_dual(-sp.S.One, sp.S.One)

REGISTRY.add(
    ActivationRow(
        name="abs",
        params=(),
        fn=lambda x: sp.Abs(x),
        nngp=_abs_k,
        nngp_dot=_abs_kdot,
        citation=_TSUCHIDA + " (ABReLU with a = −1, b = 1)",
        doc="|x|",
        mean=lambda q: 2 * _half_normal_mean(q),
        breakpoints=(0.0,),
    )
)


# ---------------------------------------------------------------- arc-cosine kernels of degree n
@lru_cache(maxsize=None)
def arc_cosine_polynomials(n: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Integer coefficients (lowest degree first) of P_n, Q_n in
    J_n(θ) = (−1)ⁿ[(π − θ)·P_n(cos θ) + sin θ·Q_n(cos θ)].

    With f_k = ((1/sin θ)∂_θ)^k ((π − θ)/sin θ) = [(π − θ)P_k + sin θ·Q_k]/sin^{2k+1} θ, differentiating
    once more gives, in t = cos θ (P_0 = 1, Q_0 = 0):

        P_{k+1} = −(1 − t²)P_k' − (2k + 1)·t·P_k
        Q_{k+1} = −P_k − 2k·t·Q_k − (1 − t²)Q_k'

    P_n has the parity of n and Q_n the other one (so √(q1q2)ⁿ·J_n is a polynomial in c, q1q2 and
    √(q1q2)·sin θ). J_1 = sin θ + (π − θ)cos θ, J_2 = 3 sin θ cos θ + (π − θ)(1 + 2cos²θ).
    """
    t = sp.Symbol("t")
    P, Q = sp.Poly(1, t, domain="ZZ"), sp.Poly(0, t, domain="ZZ")
    one_minus = sp.Poly(1 - t**2, t, domain="ZZ")
    for k in range(n):
        P, Q = (-one_minus * P.diff(t) - (2 * k + 1) * sp.Poly(t, t) * P,
                -P - 2 * k * sp.Poly(t, t) * Q - one_minus * Q.diff(t))
    return tuple(int(a) for a in P.all_coeffs()[::-1]), tuple(int(a) for a in Q.all_coeffs()[::-1])


def _homogeneous(coeffs: Sequence[int], degree: int, c, p) -> sp.Expr:
    """Σ_j a_j·c^j·p^{(degree − j)/2}: √p^degree·Σ a_j (c/√p)^j with integer powers of p only."""
    assert all(a == 0 for j, a in enumerate(coeffs) if (degree - j) % 2), "parity of the arc-cosine polynomials"
    return sp.Add(*[a * c**j * p ** ((degree - j) // 2) for j, a in enumerate(coeffs) if a])


def arc_cosine_kernel(n: int, q1, q2, c, *, step_form: bool = False) -> sp.Expr:
    """E[1{u>0}uⁿ·1{v>0}vⁿ] = (q1q2)^{n/2}·J_n(θ)/(2π) (Cho & Saul 2009), division-free.

    ``step_form`` (n = 0 only) writes π − θ as π/2 + atan2(c, √(q1q2 − c²)) = π/2 + arcsin ρ: the
    same function wherever q1q2 > 0, and at a zero-norm input (c = q1q2 = 0) it gives 1/4 = E[H(0)]·E[H(v)]
    with Heaviside(0) = 1/2 (sympy's and NumPy's convention for σ), where π − θ would give 1/2.
    """
    if n >= 2:  # products like 9·c·q1·q2: evaluate at the ordered pair for bitwise symmetry
        q1, q2 = ordered_variances(q1, q2)
    p = q1 * q2
    P, Q = arc_cosine_polynomials(n)
    if n == 0 and step_form:
        return sp.S.One / 4 + sp.atan2(c, perp(c, p)) / (2 * sp.pi)
    j = (sp.pi - angle(c, p)) * _homogeneous(P, n, c, p) + perp(c, p) * _homogeneous(Q, n - 1, c, p)
    return (-1) ** n * j / (2 * sp.pi)


def _rectified_monomial_mean(q, n):
    """E[max(u, 0)ⁿ] = q^{n/2}·2^{n/2}·Γ((n + 1)/2)/(2√π) (half the absolute moment)."""
    if n == 0:
        return sp.S.Half
    return q ** sp.Rational(n, 2) * 2 ** sp.Rational(n, 2) * sp.gamma(sp.Rational(n + 1, 2)) / (2 * sp.sqrt(sp.pi))


def _rectified_monomial_dot(q1, q2, c, n):
    if n == 0:
        return sp.S.Zero  # a jump: backpropagation sees σ' = 0 (kernel-math.md §3)
    return n**2 * arc_cosine_kernel(n - 1, q1, q2, c)


REGISTRY.add(
    ActivationRow(
        name="step",
        params=(),
        fn=lambda x: sp.Heaviside(x),
        nngp=lambda q1, q2, c: arc_cosine_kernel(0, q1, q2, c, step_form=True),
        nngp_dot=None,
        citation=_CHO_SAUL_N + " (n = 0)",
        doc="1 for x > 0, 0 for x < 0 (1/2 at 0)",
        jumps=True,
        mean=lambda q: sp.S.Half,
        breakpoints=(0.0,),
    )
)

REGISTRY.add(
    ActivationRow(
        name="rectified_monomial",
        params=(ActivationParam("n", kind="natural"),),
        fn=lambda x, n: sp.Heaviside(x) * x**n,
        nngp=lambda q1, q2, c, n: arc_cosine_kernel(n, q1, q2, c, step_form=True),
        # K̇ = n²·K_{n−1} by Price's theorem for n ≥ 1; n = 0 is step, with a jump: K̇ := 0. (The row's
        # ``jumps`` flag is per family, so it stays False here and K̇ is given explicitly.)
        nngp_dot=_rectified_monomial_dot,
        citation=_CHO_SAUL_N,
        doc="max(x, 0)ⁿ (n = 0: step)",
        mean=_rectified_monomial_mean,
        breakpoints=(0.0,),
    )
)
