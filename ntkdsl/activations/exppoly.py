"""Exact duals of exponential polynomials: σ(x) = Σ_k c_k·x^(n_k)·e^(β_k·x) with complex β_k, which
covers polynomials times sines, cosines and exponentials of affine arguments (x·sin x, e^x·cos 2x).

For (u, v) ~ N(0, [[q1, c], [c, q2]]) the moment generating function M(t1, t2) = E[e^(t1·u + t2·v)]
= e^((t1²·q1 + 2·t1·t2·c + t2²·q2)/2) is entire in (t1, t2), so E[u^m·v^n·e^(β·u + γ·v)] = ∂^m_t1 ∂^n_t2 M
at (β, γ) (differentiation under the integral), and

    K = Σ_j Σ_k c_j·c_k·∂^(n_j)_t1 ∂^(n_k)_t2 M(β_j, β_k).

Each term is P·e^(A + iB) with P a polynomial in (q1, q2, c) and A, B real linear forms; σ is real,
so K is the sum of the real parts e^A·(Re P·cos B − Im P·sin B) (q1, q2, c real). Every exponential
stays one e^A: for sin/cos terms A = −(q1 + q2 ∓ 2c)·ω²/2 ≤ 0 (no overflow at any variance).
"""

from __future__ import annotations

import sympy as sp

MAX_DEGREE = 4  # polynomial factors up to x⁴ (the derivatives of M grow quickly beyond)


def terms(expr: sp.Expr, x: sp.Symbol):
    """[(c, n, β)] with expr = Σ c·x^n·e^(β·x), c and β numbers, or None."""
    if not expr.has(sp.sin, sp.cos, sp.exp) or expr.free_symbols - {x}:
        return None
    out = []
    for term in sp.Add.make_args(sp.expand(sp.expand(expr.rewrite(sp.exp)), power_exp=True)):
        coeff, n, beta = sp.S.One, 0, sp.S.Zero
        for factor in sp.Mul.make_args(term):
            if factor.is_number:
                coeff *= factor
            elif factor == x:
                n += 1
            elif factor.is_Pow and factor.base == x and factor.exp.is_Integer and factor.exp > 0:
                n += int(factor.exp)
            elif isinstance(factor, sp.exp) and factor.args[0].is_polynomial(x) and sp.degree(factor.args[0], x) <= 1:
                beta_k, shift = sp.Poly(factor.args[0], x).all_coeffs() if sp.degree(factor.args[0], x) == 1 \
                    else (sp.S.Zero, factor.args[0])
                beta += beta_k
                coeff *= sp.exp(shift)
            else:
                return None
        if n > MAX_DEGREE:
            return None
        out.append((sp.nsimplify(coeff) if coeff.is_Rational else coeff, n, beta))
    return out if any(beta != 0 for _, _, beta in out) else None


def dual(found, q1, q2, c) -> sp.Expr:
    """K = E[σ(u)σ(v)] for σ = Σ c·x^n·e^(β·x) (``found`` from :func:`terms`), real."""
    t1, t2 = sp.symbols("t1 t2")
    real = sp.symbols("q1_ q2_ c_", real=True)
    exponent = (t1**2 * real[0] + 2 * t1 * t2 * real[2] + t2**2 * real[1]) / 2
    total = sp.S.Zero
    for cj, nj, bj in found:
        for ck, nk, bk in found:
            prefactor = sp.diff(sp.exp(exponent), t1, nj, t2, nk) / sp.exp(exponent)
            prefactor = sp.expand(cj * ck * prefactor.subs({t1: bj, t2: bk}))
            power = sp.expand(exponent.subs({t1: bj, t2: bk}))
            a, b = (sp.Add(*[f(power.coeff(v)) * v for v in real]) for f in (sp.re, sp.im))
            poly = sp.Poly(prefactor, *real)
            re_p = sum(sp.re(k) * sp.Mul(*[v**e for v, e in zip(real, m)]) for m, k in poly.terms())
            im_p = sum(sp.im(k) * sp.Mul(*[v**e for v, e in zip(real, m)]) for m, k in poly.terms())
            total += sp.exp(a) * (re_p * sp.cos(b) - im_p * sp.sin(b))
    return total.subs(dict(zip(real, (q1, q2, c))), simultaneous=True)
