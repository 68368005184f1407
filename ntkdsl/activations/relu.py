"""The ReLU family: ABReLU a·min(u, 0) + b·max(u, 0) and its members.

Dual (Tsuchida et al. 2018; for ReLU, a = 0, b = 1, the arc-cosine kernel of Cho & Saul 2009):

    K = ((a − b)²/(2π))·√(q1q2)·sin θ + [(a² + b²)/2 − (a − b)²·θ/(2π)]·c
    K̇ = (a² + b²)/2 − (a − b)²·θ/(2π)
"""

from __future__ import annotations

import sympy as sp

from ..symbolic.functions import angle, perp
from .registry import REGISTRY, ActivationRow

_TSUCHIDA = "Tsuchida, Roosta & Gallagher 2018, 'Invariance of weight distributions in rectified MLPs'"
_CHO_SAUL = "Cho & Saul 2009, 'Kernel methods for deep learning' (arc-cosine kernel, n = 1)"


def abrelu_dual(a, b):
    """(K, K̇) builders of a·min(u, 0) + b·max(u, 0)."""

    def nngp(q1, q2, c, **_):
        p = q1 * q2
        return (a - b) ** 2 / (2 * sp.pi) * perp(c, p) + nngp_dot(q1, q2, c) * c

    def nngp_dot(q1, q2, c, **_):
        return (a**2 + b**2) / 2 - (a - b) ** 2 * angle(c, q1 * q2) / (2 * sp.pi)

    return nngp, nngp_dot


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
    )
)
