"""Periodic activations: a·sin(b·x + c), a·cos(b·x + c) (neural-tangents' Sin, Cos) and the
random-Fourier-feature activation whose dual is the RBF kernel (neural-tangents' Rbf).

Dual of a·sin(b·u + φ) (Pearce et al. 2019): from sin α sin β = [cos(α − β) − cos(α + β)]/2 and
E[cos(t·w)] = e^{−t²·Var(w)/2},

    K = (a²/2)·[e^{−b²(q1 + q2 − 2c)/2} − cos(2φ)·e^{−b²(q1 + q2 + 2c)/2}]
    K̇ = (a²b²/2)·[e^{−b²(q1 + q2 − 2c)/2} + cos(2φ)·e^{−b²(q1 + q2 + 2c)/2}]

(written so that no exponent is positive: q1 + q2 ± 2c ≥ 0). cos(b·u + φ) = sin(b·u + φ + π/2).
The RBF feature √2·sin(√(2γ)·u + π/4) is the case a = √2, b = √(2γ), φ = π/4:
K = e^{−γ(q1 + q2 − 2c)}.
"""

from __future__ import annotations

import sympy as sp

from ..algebra.functions import larger
from .registry import REGISTRY, ActivationParam, ActivationRow

_PEARCE = ("Pearce, Tsuchida, Zaki, Brintrup & Neely 2019, 'Expressive priors in Bayesian neural networks: "
           "kernel combinations and periodic functions' (UAI)")
_RAHIMI_RECHT = "Rahimi & Recht 2007, 'Random features for large-scale kernel machines' (NIPS)"

_PARAMS = (ActivationParam("a", sp.S.One), ActivationParam("b", sp.S.One), ActivationParam("c", sp.S.Zero))


def _spread(q1, q2, cov, sign):
    """E[(u − sign·v)²] = q1 + q2 − 2·sign·c ≥ 0, clamped at 0: rounding in c near ρ = ±1 would
    otherwise make it negative, and e^{−b²·(…)/2} then grows (inf once b²·q passes ~1e3·|…|⁻¹)."""
    return larger(q1 + q2 - 2 * sign * cov, sp.S.Zero)


def _sin_dual(q1, q2, cov, a, b, phase):
    """(K, K̇) of a·sin(b·u + phase)."""
    near = sp.exp(-b**2 * _spread(q1, q2, cov, 1) / 2)
    far = sp.cos(2 * phase) * sp.exp(-b**2 * _spread(q1, q2, cov, -1) / 2)
    return a**2 / 2 * (near - far), a**2 * b**2 / 2 * (near + far)


REGISTRY.add(
    ActivationRow(
        name="sin",
        params=_PARAMS,
        fn=lambda x, a, b, c: a * sp.sin(b * x + c),
        nngp=lambda q1, q2, cov, a, b, c: _sin_dual(q1, q2, cov, a, b, c)[0],
        nngp_dot=lambda q1, q2, cov, a, b, c: _sin_dual(q1, q2, cov, a, b, c)[1],
        citation=_PEARCE,
        doc="a·sin(b·x + c)",
        mean=lambda q, a, b, c: a * sp.sin(c) * sp.exp(-b**2 * q / 2),
    )
)

REGISTRY.add(
    ActivationRow(
        name="cos",
        params=_PARAMS,
        fn=lambda x, a, b, c: a * sp.cos(b * x + c),
        nngp=lambda q1, q2, cov, a, b, c: _sin_dual(q1, q2, cov, a, b, c + sp.pi / 2)[0],
        nngp_dot=lambda q1, q2, cov, a, b, c: _sin_dual(q1, q2, cov, a, b, c + sp.pi / 2)[1],
        citation=_PEARCE + " (cos(b·x + c) = sin(b·x + c + π/2))",
        doc="a·cos(b·x + c)",
        mean=lambda q, a, b, c: a * sp.cos(c) * sp.exp(-b**2 * q / 2),
    )
)


def _rbf_nngp(q1, q2, cov, gamma):
    return sp.exp(-gamma * _spread(q1, q2, cov, 1))


REGISTRY.add(
    ActivationRow(
        name="rbf",
        params=(ActivationParam("gamma", sp.S.One),),
        fn=lambda x, gamma: sp.sqrt(2) * sp.sin(sp.sqrt(2 * gamma) * x + sp.pi / 4),
        nngp=_rbf_nngp,
        nngp_dot=lambda q1, q2, cov, gamma: 2 * gamma * _rbf_nngp(q1, q2, cov, gamma),
        citation=_RAHIMI_RECHT + "; neural-tangents' Rbf (Novak et al. 2020)",
        doc="√2·sin(√(2·gamma)·x + π/4) (after a dense layer: the RBF kernel e^{−gamma·|x − x'|²/d})",
        mean=lambda q, gamma: sp.exp(-gamma * q),
    )
)
