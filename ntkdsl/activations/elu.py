"""ELU (Clevert et al. 2016) and SELU (Klambauer et al. 2017): closed-form duals through scaled
Gaussian wedge integrals, finite and accurate for every variance (1e-300 … 1e300).

σ(u) = max(u, 0) + α·g(u), g(u) = (e^u − 1)·1{u < 0}. With (u, v) ~ N(0, [[q1, c], [c, q2]]),
s_i = √q_i, θ = arccos(c/√(q1q2)), r = cos θ, s = sin θ, write u = s1·ρ·cos ψ, v = s2·ρ·cos(ψ − θ) in
polar coordinates of two independent standard normals. Every exponential term is then

    E[e^{L(ψ)ρ}·1{ψ in a range}] = (1/2π)·∫ M(−L(ψ)) dψ,   M(x) = ∫₀^∞ ρe^{−ρ²/2 − xρ}dρ = 1 − x·R(x)

(R = Φ(−x)/φ(x), Mills' ratio), and L(ψ) = A·cos(ψ − ψ0) is a cosine: each term is a difference of
the wedge function W(A, β) = (1/2π)∫₀^β M(A cos b) db (:class:`~ntkdsl.algebra.functions.wedge`;
Owen's T scaled by e^{A²/2}, Owen 1956; the reduction of the ELU dual to bivariate normal orthant
integrals is Tsuchida et al. 2021). With β1 = θ − π/2, A12 = √(q1 + q2 + 2c) = √((s1 − s2)² +
4s1s2·cos²(θ/2)), ψ0 = atan2(s2·s, s1 + s2·r), βh = π/2 − ψ0, βl = θ − π/2 − ψ0:

    H_i = E[e^{u_i}·1{u_i < 0, u_j > 0}] = R(s_i)/(2√(2π)) + W(s_i, β1)
    E12 = E[e^{u+v}·1{u < 0, v < 0}]     = W(A12, βh) − W(A12, βl)
    B12 = E[max(u, 0)·g(v)]              = s1·[erfcx(s·s2/√2) − 1]/(2√(2π)) + c·H2   (Stein's lemma)
    G   = E[g(u)·g(v)]                   = E12 − Σ_i E[e^{u_i}1{u < 0, v < 0}] + (π − θ)/(2π)
    K   = (√(q1q2)·s + (π − θ)·c)/(2π) + α·(B12 + B21) + α²·G
    K̇   = (π − θ)/(2π) + α·(H1 + H2) + α²·E12

G's terms are O(1) while G = O(q) at small variances: it is evaluated from the expansions of W and R
past first order (:class:`~ntkdsl.algebra.functions.wedge_rem`, :class:`~ntkdsl.algebra.functions.mills_rem`),
whose orders 0 and 1 cancel exactly (E[(u + v)·1] = E[u·1] + E[v·1]), so

    G = W̃(A12, βh) − W̃(A12, βl) + W̃(s1, β1) + W̃(s2, β1) − ẽ(s1) − ẽ(s2)

(W̃ = W − (β − √(π/2)·A·sin β)/(2π), ẽ(x) = (R(x) + x)/(2√(2π)) − 1/4), and erfcx(x/√2) − 1 =
4ẽ(x) − x·√(2/π). Nothing divides by s, s_i or ρ, and W ≤ |β|/(2π), R ≤ 1/x: no overflow and no
underflow at any variance; measured against mpmath (tests/test_dual_extremes.py): relative error
below 1e-12 for variances 1e-300 … 1e300 and every ρ (where K ≈ 0, absolute error ≲ 1e-15·(1 + √(q1q2))).
A zero-norm input (q = c = 0) reads as θ = 0 (:class:`~ntkdsl.algebra.functions.cos_angle`), a
valid description of the degenerate Gaussian, and gives K = 0 = σ(0)·E[σ(v)] exactly.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

from ..algebra.functions import angle, cos_angle, ordered_variances, perp, sin_angle
from ..algebra.special import mills, mills_rem, wedge, wedge_rem
from .registry import REGISTRY, ActivationParam, ActivationRow

_TSUCHIDA_2021 = ("Tsuchida, Pearce, van der Heide, Roosta & Gallagher 2021, 'Avoiding kernel fixed points: "
                  "computing with ELU and GELU infinite networks' (AAAI); evaluated as Gaussian wedge integrals "
                  "(Owen's T scaled by its exponential, Owen 1956, 'Tables for computing bivariate normal probabilities')")
_CLEVERT = ("Clevert, Unterthiner & Hochreiter 2016, 'Fast and accurate deep network learning by exponential "
            "linear units'")
_KLAMBAUER = "Klambauer, Unterthiner, Mayr & Hochreiter 2017, 'Self-normalizing neural networks' (NIPS)"

# Klambauer et al. 2017 (the same constants as jax.nn.selu and torch.nn.SELU)
SELU_ALPHA = sp.Float("1.6732632423543772848170429916717", 32)
SELU_SCALE = sp.Float("1.0507009873554804934193349852946", 32)


@lru_cache(maxsize=256)  # K and K̇ share the work: the row asks for them one at a time
def elu_dual(q1, q2, c, alpha):
    """(K, K̇) of max(u, 0) + alpha·(e^{min(u, 0)} − 1).

    The formulas are symmetric in (q1, q2) but their float64 evaluation order is not: they are
    evaluated at :func:`ordered_variances` (K(x, x') == K(x', x) bit for bit)."""
    q1, q2 = ordered_variances(q1, q2)
    p = q1 * q2
    s1, s2 = sp.sqrt(q1), sp.sqrt(q2)
    theta, r, s = angle(c, p), cos_angle(c, p), sin_angle(c, p)
    root = 2 * sp.sqrt(2 * sp.pi)
    beta1 = theta - sp.pi / 2
    a12 = sp.sqrt((s1 - s2) ** 2 + 4 * s1 * s2 * sp.cos(theta / 2) ** 2)
    psi0 = sp.atan2(s2 * s, s1 + s2 * r)
    high, low = sp.pi / 2 - psi0, theta - sp.pi / 2 - psi0
    upper = (sp.pi - theta) / (2 * sp.pi)  # P(u > 0, v > 0) = P(u < 0, v < 0)
    h1, h2 = (mills(si) / root + wedge(si, beta1) for si in (s1, s2))
    both = wedge(a12, high) - wedge(a12, low)
    lower = (wedge_rem(a12, high) - wedge_rem(a12, low) + wedge_rem(s1, beta1) + wedge_rem(s2, beta1)
             - mills_rem(s1) - mills_rem(s2))

    def cross(si, tj, hj):  # E[max(u_i, 0)·g(u_j)], tj = s·s_j
        return si * (4 * mills_rem(tj) - tj * sp.sqrt(2 / sp.pi)) / root + c * hj

    relu = (perp(c, p) + (sp.pi - theta) * c) / (2 * sp.pi)
    k = relu + alpha * (cross(s1, s * s2, h2) + cross(s2, s * s1, h1)) + alpha**2 * lower
    kdot = upper + alpha * (h1 + h2) + alpha**2 * both
    return k, kdot


def _elu_fn(x, alpha):
    return sp.Max(x, 0) + alpha * (sp.exp(sp.Min(x, 0)) - 1)


def _elu_mean(q, alpha):
    """E[σ(u)] = √(q/(2π)) + alpha·(e^{q/2}·Φ(−√q) − 1/2) = (1 − alpha)·√(q/(2π)) + 2·alpha·ẽ(√q), with
    e^{q/2}·Φ(−√q) = R(√q)/√(2π) (no overflow) and ẽ = mills_rem (no cancellation at small q)."""
    return (1 - alpha) * sp.sqrt(q / (2 * sp.pi)) + 2 * alpha * mills_rem(sp.sqrt(q))


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
