"""Polynomial activations: xⁿ, Σ aᵢxⁱ and the normalised Hermite polynomials He_k(x)/√(k!)
(neural-tangents' Monomial, Polynomial, Hermite), all exact for every variance.

A polynomial in u ~ N(0, q1) re-expands in Hermite polynomials of z = u/√q1, and E[He_ℓ(z1)He_m(z2)] =
ℓ!·ρ^ℓ·δ_ℓm (Mehler), so for P(u) = Σ a_m u^m (kernel-math.md §3, the lead's
:func:`ntkdsl.activations.dual.hermite_dual`)

    K = Σ_ℓ s_ℓ(q1)·s_ℓ(q2)·c^ℓ,   s_ℓ(q) = Σ_i a_{ℓ+2i}·(ℓ+2i)!·q^i / (2^i·i!·√(ℓ!))

— a polynomial in q1, q2 and c (no √(q1q2) in a denominator: zero-norm inputs are exact). For the
monomial uⁿ this is (Isserlis) K = Σ_{j ≡ n (mod 2)} j!·[n!/(j!·i!·2^i)]²·c^j·(q1q2)^i with i = (n − j)/2,
and K̇ = n²·K_{n−1} (σ' = n·u^{n−1}). For He_k/√(k!) at q1 = q2 = 1, K = c^k; neural-tangents' Hermite
returns c^k for every variance (with a warning); here the kernel is exact for any q.
"""

from __future__ import annotations

from math import factorial
from typing import Sequence

import sympy as sp

from ..algebra.functions import ordered_variances
from .dual import hermite_dual
from .registry import REGISTRY, ActivationParam, ActivationRow

_ISSERLIS = ("Isserlis 1918, 'On a formula for the product-moment coefficient of any order of a normal "
             "frequency distribution'")
_HERMITE = ("Hermite re-expansion and Mehler's formula; Daniely, Frostig & Singer 2016, 'Toward deeper "
            "understanding of neural networks' (NIPS)")


def _double_factorial(n: int) -> int:
    return 1 if n <= 0 else n * _double_factorial(n - 2)


def monomial_kernel(n: int, q1, q2, c) -> sp.Expr:
    """E[uⁿvⁿ] (Isserlis' theorem), at the ordered variances (bitwise-symmetric evaluation)."""
    q1, q2 = ordered_variances(q1, q2)
    p = q1 * q2
    terms = []
    for j in range(n % 2, n + 1, 2):
        i = (n - j) // 2
        coefficient = factorial(j) * (factorial(n) // (factorial(j) * factorial(i) * 2**i)) ** 2
        terms.append(sp.Integer(coefficient) * c**j * p**i)
    return sp.Add(*terms)


def polynomial_kernel(coefficients: Sequence, q1, q2, c) -> sp.Expr:
    """E[P(u)P(v)] by the Hermite re-expansion, at the ordered variances (bitwise-symmetric evaluation)."""
    return hermite_dual(list(coefficients), *ordered_variances(q1, q2), c)


def polynomial_mean(coefficients: Sequence, q) -> sp.Expr:
    """E[Σ a_m u^m] = Σ_{m even} a_m·(m − 1)!!·q^{m/2}."""
    return sp.Add(*[a * _double_factorial(m - 1) * q ** (m // 2) for m, a in enumerate(coefficients) if m % 2 == 0])


REGISTRY.add(
    ActivationRow(
        name="monomial",
        params=(ActivationParam("n", kind="natural"),),
        fn=lambda x, n: x**n,
        nngp=lambda q1, q2, c, n: monomial_kernel(n, q1, q2, c),
        nngp_dot=lambda q1, q2, c, n: n**2 * monomial_kernel(n - 1, q1, q2, c) if n > 0 else sp.S.Zero,
        citation=_ISSERLIS,
        doc="xⁿ",
        mean=lambda q, n: polynomial_mean([0] * n + [1], q),
    )
)

REGISTRY.add(
    ActivationRow(
        name="polynomial",
        params=(),
        fn=lambda x, coefficients: sp.Add(*[a * x**m for m, a in enumerate(coefficients)]),
        nngp=lambda q1, q2, c, coefficients: polynomial_kernel(coefficients, q1, q2, c),
        nngp_dot=None,  # ∂K/∂c (Price's theorem)
        citation=_HERMITE + "; neural-tangents' Polynomial (Han et al. 2022)",
        doc="c0 + c1·x + c2·x² + ... (coefficients in increasing degree)",
        mean=lambda q, coefficients: polynomial_mean(coefficients, q),
        variadic="coefficients",
    )
)


def hermite_coefficients(k: int):
    """Coefficients (increasing degree) of He_k(x)/√(k!), He_k the probabilists' Hermite polynomial:
    He_k(x) = Σ_i (−1)^i·k!/(i!·(k − 2i)!·2^i)·x^{k−2i}."""
    coeffs = [sp.S.Zero] * (k + 1)
    for i in range(k // 2 + 1):
        coeffs[k - 2 * i] = sp.Integer((-1) ** i * factorial(k) // (factorial(i) * factorial(k - 2 * i) * 2**i))
    norm = sp.sqrt(factorial(k))
    return [a / norm for a in coeffs]


REGISTRY.add(
    ActivationRow(
        name="hermite",
        params=(ActivationParam("k", kind="natural"),),
        fn=lambda x, k: sp.Add(*[a * x**m for m, a in enumerate(hermite_coefficients(k))]),
        nngp=lambda q1, q2, c, k: polynomial_kernel(hermite_coefficients(k), q1, q2, c),
        nngp_dot=None,  # ∂K/∂c (Price's theorem)
        citation=_HERMITE,
        doc="He_k(x)/√(k!), the probabilists' Hermite polynomial normalised under N(0, 1)",
        mean=lambda q, k: polynomial_mean(hermite_coefficients(k), q),
    )
)
