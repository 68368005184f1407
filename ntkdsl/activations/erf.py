"""The error function family a·erf(b·x) + c (neural-tangents' Erf(a, b, c)).

Dual (Williams 1997, 'Computing with infinite networks'), with q, c scaled by b² (erf is odd, so
the offset c₀ only adds c₀²):

    K = a²·(2/π)·arcsin(2b²c / √((1 + 2b²q1)(1 + 2b²q2))) + c₀²
    K̇ = a²b²·(4/π) / √((1 + 2b²q1)(1 + 2b²q2) − 4b⁴c²)

Also here: ``sigmoid_like`` (the erf row at neural-tangents' fixed a, b, c) and ``sign``, the limit of
erf(b·x) as b → ∞: K = (2/π)·arcsin ρ (Sheppard), K̇ := 0 (a jump, kernel-math.md §3).
"""

from __future__ import annotations

import sympy as sp

from ..algebra.functions import hypot, perp
from .registry import REGISTRY, ActivationParam, ActivationRow

_WILLIAMS = "Williams 1997, 'Computing with infinite networks' (NIPS 9)"


def _root_det(q1, q2, c, s):
    """√((1 + 2sq1)(1 + 2sq2) − 4s²c²) = hypot(√(1 + 2s(q1 + q2)), 2s·perp), perp² = q1q2 − c²: no
    cancellation on the diagonal or at ρ = ±1 (the first form subtracts two numbers of size q²) and
    no overflow of the squares for huge variances."""
    return hypot(sp.sqrt(1 + 2 * s * (q1 + q2)), 2 * s * perp(c, q1 * q2))


def _nngp(q1, q2, c, a, b, c0):
    # arcsin(2sc/√((1 + 2sq1)(1 + 2sq2))) = atan2(2sc, √det): stable where the argument nears ±1
    s = b**2
    return a**2 * 2 / sp.pi * sp.atan2(2 * s * c, _root_det(q1, q2, c, s)) + c0**2


def _nngp_dot(q1, q2, c, a, b, c0):
    s = b**2
    return a**2 * s * 4 / sp.pi / _root_det(q1, q2, c, s)


REGISTRY.add(
    ActivationRow(
        name="erf",
        params=(
            ActivationParam("a", sp.S.One),
            ActivationParam("b", sp.S.One),
            ActivationParam("c", sp.S.Zero),
        ),
        fn=lambda x, a, b, c: a * sp.erf(b * x) + c,
        nngp=lambda q1, q2, cov, a, b, c: _nngp(q1, q2, cov, a, b, c),
        nngp_dot=lambda q1, q2, cov, a, b, c: _nngp_dot(q1, q2, cov, a, b, c),
        citation=_WILLIAMS,
        doc="a·erf(b·x) + c",
        mean=lambda q, a, b, c: c,  # erf is odd
    )
)

# neural-tangents' Sigmoid_like: the constant minimises the squared distance to the logistic sigmoid on [−5, 5]
SIGMOID_LIKE_SCALE = sp.Float("2.4020563531719796", 17)

REGISTRY.add(
    ActivationRow(
        name="sigmoid_like",
        params=(),
        fn=lambda x: sp.erf(x / SIGMOID_LIKE_SCALE) / 2 + sp.S.Half,
        nngp=lambda q1, q2, cov: _nngp(q1, q2, cov, sp.S.Half, 1 / SIGMOID_LIKE_SCALE, sp.S.Half),
        nngp_dot=lambda q1, q2, cov: _nngp_dot(q1, q2, cov, sp.S.Half, 1 / SIGMOID_LIKE_SCALE, sp.S.Half),
        citation=_WILLIAMS + " (the erf row with a = c = 1/2, b = 1/2.4020563531719796: neural-tangents' Sigmoid_like)",
        doc="erf(x/2.4020563531719796)/2 + 1/2",
        mean=lambda q: sp.S.Half,
    )
)


def _sign_nngp(q1, q2, c):
    """(2/π)·arcsin ρ (Sheppard's formula), as (2/π)·atan2(c, √max(q1q2 − c², 0)): clamped at ρ = ±1 and
    0 at a zero-norm input, where sign(0) = 0 makes K vanish (arcsin(c/√(q1q2)) would divide by 0)."""
    return 2 / sp.pi * sp.atan2(c, perp(c, q1 * q2))


REGISTRY.add(
    ActivationRow(
        name="sign",
        params=(),
        fn=lambda x: sp.sign(x),
        nngp=_sign_nngp,
        nngp_dot=None,  # a jump: K̇ := 0 (kernel-math.md §3), as neural-tangents' Sign
        citation="Sheppard 1899, 'On the application of the theory of error to cases of normal distribution "
                 "and normal correlation' (orthant probability); the limit of erf(b·x) as b → ∞",
        doc="sign(x) (0 at 0)",
        jumps=True,
        mean=lambda q: sp.S.Zero,
        breakpoints=(0.0,),
    )
)
