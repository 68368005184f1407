"""GELU, x·Φ(x) with Φ the standard normal CDF (Hendrycks & Gimpel 2016; neural-tangents' Gelu), and
its tanh approximation ``gelu(approximate = tanh)``: σ(x) = x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
(Hendrycks & Gimpel 2016, §2; ``jax.nn.gelu(x, approximate=True)``), whose dual has no closed form and
is computed numerically (:func:`ntkdsl.activations.dual.numerical_dual`, docs/numerical-duals.md).
neural-tangents 0.6.5's ``Gelu(approximate=True)`` changes only its finite network: its kernel_fn
returns the exact GELU kernel below for either setting.

Dual (Tsuchida et al. 2021, eq. for the GELU NNGP kernel), with P = (1 + q1)(1 + q2),
Δ = √(P − c²) ≥ 1 and A = arcsin(c/√P) = atan2(c, Δ):

    K = c/4 + [c·A + (c² + q1q2·Δ²)/(P·Δ)]/(2π)
    K̇ = 1/4 + A/(2π) + (c/(2πΔ))·[1 + 1/Δ² + (1 − q1q2)/P]

evaluated in a form that neither overflows nor cancels at large variances (P ~ q² overflows float64
for q ≳ 1e154): Δ = hypot(√(1 + q1 + q2), √(q1q2)·sin θ) (P − c² = 1 + q1 + q2 + q1q2 − c²), π/2 + A =
atan2(Δ, −c), q1q2/P = (q1/(1 + q1))·(q2/(1 + q2)), c²/P = (c/(√(1 + q1)√(1 + q2)))² (each factor
as sin(atan2(·)), :class:`~ntkdsl.algebra.functions.polar_sin`) and
1 + 1/P − q1q2/P = 1/(1 + q1) + 1/(1 + q2):

    K = [c·atan2(Δ, −c) + (c/(√(1 + q1)√(1 + q2)))²/Δ + (q1/(1 + q1))·(q2/(1 + q2))·Δ]/(2π)
    K̇ = atan2(Δ, −c)/(2π) + (c/(2πΔ))·[1/Δ² + 1/(1 + q1) + 1/(1 + q2)]

Δ² ≥ 1 + q1 + q2, so nothing divides by zero at ρ = ±1 or at zero-norm inputs. Near ρ = −1 at large
variances K and K̇ are small differences of terms of size √(q1q2) and 1: the error bound there is
absolute (tests/test_dual_extremes.py).
"""

from __future__ import annotations

import sympy as sp

from ..algebra.functions import hypot, ordered_variances, perp, polar_sin
from .registry import REGISTRY, ActivationParam, ActivationRow

_TSUCHIDA_2021 = ("Tsuchida, Pearce, van der Heide, Roosta & Gallagher 2021, 'Avoiding kernel fixed points: "
                  "computing with ELU and GELU infinite networks' (AAAI)")


def _parts(q1, q2, c):
    """(q1, q2) ordered (bitwise-symmetric evaluation), Δ and π/2 + A = atan2(Δ, −c)."""
    q1, q2 = ordered_variances(q1, q2)
    delta = hypot(sp.sqrt(1 + q1 + q2), perp(c, q1 * q2))
    return q1, q2, delta, sp.atan2(delta, -c)


def _exact_only(approximate):
    if approximate != "none":
        raise ValueError(f"the closed-form GELU dual is that of x·Φ(x), not of approximate = {approximate}")


def _nngp(q1, q2, c, approximate="none"):
    _exact_only(approximate)
    # c/√P = sin(atan2(c, Δ)) and q/(1 + q) = sin²(atan2(√q, 1)), as functions sympy cannot merge into
    # c²/P or q1q2/P (products that overflow)
    q1, q2, delta, angle = _parts(q1, q2, c)
    ratio = polar_sin(c, delta)
    return (c * angle + ratio**2 / delta + polar_sin(sp.sqrt(q1), 1) ** 2 * polar_sin(sp.sqrt(q2), 1) ** 2 * delta) / (2 * sp.pi)


def _nngp_dot(q1, q2, c, approximate="none"):
    _exact_only(approximate)
    q1, q2, delta, angle = _parts(q1, q2, c)
    return angle / (2 * sp.pi) + c / (2 * sp.pi * delta) * (1 / delta**2 + 1 / (1 + q1) + 1 / (1 + q2))


def _sigma(x, approximate="none"):
    if approximate == "tanh":  # Hendrycks & Gimpel 2016, §2: 0.044715 exactly, as jax.nn.gelu
        return x * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (x + sp.Rational(44715, 10**6) * x**3))) / 2
    return x * (1 + sp.erf(x / sp.sqrt(2))) / 2


def _mean(q, approximate="none"):
    _exact_only(approximate)
    return q / sp.sqrt(2 * sp.pi * (1 + q))  # E[uΦ(u)] = q·E[φ(u)] (Stein's lemma)


REGISTRY.add(
    ActivationRow(
        name="gelu",
        params=(ActivationParam("approximate", "none", kind="word", words=("none", "tanh")),),
        fn=_sigma,
        nngp=_nngp,
        nngp_dot=_nngp_dot,
        citation=_TSUCHIDA_2021 + "; approximate = tanh: σ of Hendrycks & Gimpel 2016, numerical dual "
                 "(neural-tangents 0.6.5 gives it the exact GELU kernel)",
        doc="x·Φ(x) (approximate = none); x/2·(1 + tanh(√(2/π)·(x + 0.044715x³))) (approximate = tanh)",
        mean=_mean,
        closed_form_when=(("approximate", ("none",)),),
    )
)
