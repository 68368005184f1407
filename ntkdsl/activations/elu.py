"""ELU (Clevert et al. 2016) and SELU (Klambauer et al. 2017), with closed-form duals through the
bivariate normal CDF (Tsuchida et al. 2021), evaluated with Owen's T function.

σ(u) = max(u, 0) + α·(e^{min(u, 0)} − 1). With (u, v) ~ N(0, [[q1, c], [c, q2]]), s_i = √q_i,
r = cos θ = ρ, s = sin θ, Φ/φ the standard normal CDF/density, and

    F(m1, m2) = P(u + m1 < 0, v + m2 < 0)

every term of E[σ(u)σ(v)] is a Gaussian integral of e^{tᵀ(u,v)} (or u·e^{t·v}) over a quadrant,
which a change of measure (E[e^{tᵀz}g(z)] = e^{tᵀΣt/2}·E[g(z + Σt)]) and Stein's lemma reduce to F
and Φ:

    K = K_relu + α·(B12 + B21) + α²·D
    B12 = e^{q2/2}·[c·(Φ(−s2) − F(c, q2)) + s1·φ(r·s2)·Φ(−s·s2) − r·s1·φ(s2)/2]
          − s1(1 − r)/(2√(2π))
    D   = e^{(q1+q2+2c)/2}·F(q1 + c, q2 + c) − e^{q1/2}·F(q1, c) − e^{q2/2}·F(c, q2) + (π − θ)/(2π)
    K̇  = (π − θ)/(2π) + α·[e^{q2/2}(Φ(−s2) − F(c, q2)) + e^{q1/2}(Φ(−s1) − F(q1, c))]
          + α²·e^{(q1+q2+2c)/2}·F(q1 + c, q2 + c)

(B21: swap 1 ↔ 2). The three F are bivariate normal probabilities Φ₂(h, k; r) with special
arguments, written with Owen's T (Owen 1956) so that no term divides by s, s1, s2 or ρ:

    F(q1, c)          = ½Φ(−s1) − ½Φ(−s·s1) + Φ(−r·s1)·Φ(−s·s1) + T(s·s1, tan(π/2 − θ))
    F(q1 + c, q2 + c) = Φ(h)Φ(−s·s2) + Φ(k)Φ(−s·s1) − ½Φ(−s·s2) − ½Φ(−s·s1)
                        + T(s·s2, tan φ1) + T(s·s1, tan φ2)
    h = −(s1 + r·s2), k = −(s2 + r·s1), φ_i = atan2(q_i + c, √(q1q2 − c²))

(the first from Owen's Φ₂ = ½Φ(h) + ½Φ(k) − T(h, a_h) − T(k, a_k) − β with a_h = 0, the second with
both T's turned around by T(h, a) + T(ah, 1/a) = ½Φ(h) + ½Φ(ah) − Φ(h)Φ(ah) − [a < 0]/2; the
indicator terms cancel against β because c ≥ −max(q1, q2)). T takes its second argument as an angle
(:class:`owens_t_angle`), finite at ρ = ±1.

Numerical safety: r, s are cos θ and sin θ of θ = atan2(√(q1q2 − c²), c) (:class:`cos_angle`,
:class:`sin_angle`), so a zero-norm input (q = 0, c = 0, θ = 0) reads as ρ = 1, a valid description of
the degenerate Gaussian (u = √q1·z1 = 0 for any ρ), and K = 0 = σ(0)·E[σ(v)] comes out exactly; φ1, φ2
at 0/0 (ρ = −1 with q1 = q2, or q1 = q2 = 0) take the limit from the side of the sign of c. The diagonal
simplifies symbolically (θ = 0) to q/2 + α²[e^{2q}Φ(−2√q) − 2e^{q/2}Φ(−√q) + 1/2]. The exponentials
overflow float64 once q1 + q2 + 2c exceeds ~1400 (variances beyond ~350).
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

from ..symbolic.functions import angle, cos_angle, ordered_variances, owens_t_angle, perp, sin_angle
from .registry import REGISTRY, ActivationParam, ActivationRow

_TSUCHIDA_2021 = ("Tsuchida, Pearce, van der Heide, Roosta & Gallagher 2021, 'Avoiding kernel fixed points: "
                  "computing with ELU and GELU infinite networks' (AAAI); bivariate normal CDF via Owen's T "
                  "(Owen 1956, 'Tables for computing bivariate normal probabilities')")
_CLEVERT = ("Clevert, Unterthiner & Hochreiter 2016, 'Fast and accurate deep network learning by exponential "
            "linear units'")
_KLAMBAUER = "Klambauer, Unterthiner, Mayr & Hochreiter 2017, 'Self-normalizing neural networks' (NIPS)"

# Klambauer et al. 2017 (the same constants as jax.nn.selu and torch.nn.SELU)
SELU_ALPHA = sp.Float("1.6732632423543772848170429916717", 32)
SELU_SCALE = sp.Float("1.0507009873554804934193349852946", 32)


def _Phi(x):
    return sp.erfc(-x / sp.sqrt(2)) / 2


def _phi(x):
    return sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)


def _T(h, phi):
    return owens_t_angle(h, phi)


def _orthant(q1, q2, c):
    """The pieces shared by K and K̇: (s1, s2, θ, F(q1, c), F(c, q2), F(q1 + c, q2 + c))."""
    p = q1 * q2
    s1, s2 = sp.sqrt(q1), sp.sqrt(q2)
    w, theta = perp(c, p), angle(c, p)
    r, s = cos_angle(c, p), sin_angle(c, p)  # not sp.cos(θ): sympy would turn cos(atan2) into a 0/0 ratio

    def f_single(si):  # F(q1, c) with si = s1, F(c, q2) with si = s2: Φ₂(h, r·h; r), h = −si
        return _Phi(-si) / 2 - _Phi(-s * si) / 2 + _Phi(-r * si) * _Phi(-s * si) + _T(s * si, sp.pi / 2 - theta)

    def turned(qi):  # atan2(qi + c, w): at 0/0 the limit from the side of sign(c)
        return sp.Piecewise((sp.pi / 2 - sp.atan2(w, qi + c), c >= 0), (sp.atan2(qi + c, w), True))

    h, k = -(s1 + r * s2), -(s2 + r * s1)
    x1, x2 = s * s2, s * s1
    f_both = (_Phi(h) * _Phi(-x1) + _Phi(k) * _Phi(-x2) - _Phi(-x1) / 2 - _Phi(-x2) / 2
              + _T(x1, turned(q1)) + _T(x2, turned(q2)))
    return s1, s2, r, s, theta, f_single(s1), f_single(s2), f_both


@lru_cache(maxsize=256)  # K and K̇ share the work: the row asks for them one at a time
def elu_dual(q1, q2, c, alpha):
    """(K, K̇) of max(u, 0) + alpha·(e^{min(u, 0)} − 1).

    The formulas are symmetric in (q1, q2) but are long sums whose float64 evaluation order would
    change under the swap: they are evaluated at :func:`ordered_variances` (K(x, x') == K(x', x) bit
    for bit)."""
    q1, q2 = ordered_variances(q1, q2)
    s1, s2, r, s, theta, f1, f2, f12 = _orthant(q1, q2, c)
    upper = (sp.pi - theta) / (2 * sp.pi)  # P(u > 0, v > 0) = P(u < 0, v < 0)
    relu = (perp(c, q1 * q2) + (sp.pi - theta) * c) / (2 * sp.pi)
    root = sp.sqrt(2 * sp.pi)

    def cross(c_term_f, si, sj, qj):  # E[max(u_i, 0)·(e^{u_j} − 1)·1{u_j < 0}]
        m = c * (_Phi(-sj) - c_term_f) + si * _phi(r * sj) * _Phi(-s * sj) - r * si * _phi(sj) / 2
        return sp.exp(qj / 2) * m - si * (1 - r) / (2 * root)

    both = sp.exp((q1 + q2 + 2 * c) / 2) * f12
    lower = both - sp.exp(q1 / 2) * f1 - sp.exp(q2 / 2) * f2 + upper
    k = relu + alpha * (cross(f2, s1, s2, q2) + cross(f1, s2, s1, q1)) + alpha**2 * lower
    kdot = upper + alpha * (sp.exp(q2 / 2) * (_Phi(-s2) - f2) + sp.exp(q1 / 2) * (_Phi(-s1) - f1)) + alpha**2 * both
    return k, kdot


def _elu_fn(x, alpha):
    return sp.Max(x, 0) + alpha * (sp.exp(sp.Min(x, 0)) - 1)


def _elu_mean(q, alpha):
    """E[σ(u)] = √(q/(2π)) + alpha·(e^{q/2}·Φ(−√q) − 1/2)."""
    return sp.sqrt(q / (2 * sp.pi)) + alpha * (sp.exp(q / 2) * _Phi(-sp.sqrt(q)) - sp.S.Half)


REGISTRY.add(
    ActivationRow(
        name="elu",
        params=(ActivationParam("alpha", sp.S.One),),
        fn=_elu_fn,
        nngp=lambda q1, q2, c, alpha: elu_dual(q1, q2, c, alpha)[0],
        nngp_dot=lambda q1, q2, c, alpha: elu_dual(q1, q2, c, alpha)[1],
        citation=_TSUCHIDA_2021 + "; σ: " + _CLEVERT,
        doc="x for x > 0, alpha·(eˣ − 1) for x ≤ 0",
        mean=_elu_mean,
        breakpoints=(0.0,),
    )
)

REGISTRY.add(
    ActivationRow(
        name="selu",
        params=(),
        fn=lambda x: SELU_SCALE * _elu_fn(x, SELU_ALPHA),
        nngp=lambda q1, q2, c: SELU_SCALE**2 * elu_dual(q1, q2, c, SELU_ALPHA)[0],
        nngp_dot=lambda q1, q2, c: SELU_SCALE**2 * elu_dual(q1, q2, c, SELU_ALPHA)[1],
        citation=_TSUCHIDA_2021 + "; σ and constants: " + _KLAMBAUER,
        doc="λ·elu(x, α), λ = 1.0507009873554805, α = 1.6732632423543773",
        mean=lambda q: SELU_SCALE * _elu_mean(q, SELU_ALPHA),
        breakpoints=(0.0,),
    )
)
