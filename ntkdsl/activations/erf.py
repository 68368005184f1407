"""The error function family a·erf(b·x) + c (neural-tangents' Erf(a, b, c)).

Dual (Williams 1997, 'Computing with infinite networks'), with q, c scaled by b² (erf is odd, so
the offset c₀ only adds c₀²):

    K = a²·(2/π)·arcsin(2b²c / √((1 + 2b²q1)(1 + 2b²q2))) + c₀²
    K̇ = a²b²·(4/π) / √((1 + 2b²q1)(1 + 2b²q2) − 4b⁴c²)
"""

from __future__ import annotations

import sympy as sp

from .registry import REGISTRY, ActivationParam, ActivationRow

_WILLIAMS = "Williams 1997, 'Computing with infinite networks' (NIPS 9)"


def _nngp(q1, q2, c, a, b, c0):
    s = b**2
    return a**2 * 2 / sp.pi * sp.asin(2 * s * c / sp.sqrt((1 + 2 * s * q1) * (1 + 2 * s * q2))) + c0**2


def _nngp_dot(q1, q2, c, a, b, c0):
    s = b**2
    return a**2 * s * 4 / sp.pi / sp.sqrt((1 + 2 * s * q1) * (1 + 2 * s * q2) - 4 * s**2 * c**2)


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
    )
)
