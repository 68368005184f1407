"""GELU, x·Φ(x) with Φ the standard normal CDF (Hendrycks & Gimpel 2016; neural-tangents' Gelu).

Dual (Tsuchida et al. 2021, eq. for the GELU NNGP kernel), with P = (1 + q1)(1 + q2),
Δ = √(P − c²) ≥ 1 and A = arcsin(c/√P) = atan2(c, Δ):

    K = c/4 + [c·A + (c² + q1q2·Δ²)/(P·Δ)]/(2π)
    K̇ = 1/4 + A/(2π) + (c/(2πΔ))·[1 + 1/Δ² + (1 − q1q2)/P]

Δ² ≥ 1 + q1 + q2, so nothing divides by zero at ρ = ±1 or at zero-norm inputs.
"""

from __future__ import annotations

import sympy as sp

from .registry import REGISTRY, ActivationRow

_TSUCHIDA_2021 = ("Tsuchida, Pearce, van der Heide, Roosta & Gallagher 2021, 'Avoiding kernel fixed points: "
                  "computing with ELU and GELU infinite networks' (AAAI)")


def _parts(q1, q2, c):
    P = (1 + q1) * (1 + q2)
    delta = sp.sqrt(P - c**2)
    return P, delta, sp.atan2(c, delta)


def _nngp(q1, q2, c):
    P, delta, A = _parts(q1, q2, c)
    return c / 4 + (c * A + (c**2 + q1 * q2 * delta**2) / (P * delta)) / (2 * sp.pi)


def _nngp_dot(q1, q2, c):
    P, delta, A = _parts(q1, q2, c)
    return sp.Rational(1, 4) + A / (2 * sp.pi) + c / (2 * sp.pi * delta) * (1 + 1 / delta**2 + (1 - q1 * q2) / P)


REGISTRY.add(
    ActivationRow(
        name="gelu",
        params=(),
        fn=lambda x: x * (1 + sp.erf(x / sp.sqrt(2))) / 2,
        nngp=_nngp,
        nngp_dot=_nngp_dot,
        citation=_TSUCHIDA_2021,
        doc="x·Φ(x) (exact, not the tanh approximation)",
        mean=lambda q: q / sp.sqrt(2 * sp.pi * (1 + q)),  # E[uΦ(u)] = q·E[φ(u)] (Stein's lemma)
    )
)
