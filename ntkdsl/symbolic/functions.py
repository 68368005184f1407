"""Numerically safe building blocks of dual kernels, as sympy functions with exact derivatives.

With p = q1·q2 (the product of the two variances) and c the covariance, the arc-cosine family
of duals (Cho & Saul 2009) is written in terms of

* ``perp(c, p)`` = √max(p − c², 0) = √(q1·q2)·sin θ, and
* ``angle(c, p)`` = θ = arccos(c/√p) ∈ [0, π], evaluated as atan2(perp, c).

Writing duals with these instead of ``acos(c/sqrt(q1*q2))`` keeps every generated expression free
of divisions by √(q1·q2) (zero-norm inputs stay finite), clamps the correlation implicitly (the
max), evaluates the diagonal exactly (p = c² gives perp = 0 and θ = 0 symbolically), and still lets
sympy differentiate: ∂θ/∂c = −1/perp, ∂perp/∂c = −c/perp (so ∂K/∂c of the ReLU dual cancels to
(π − θ)/(2π) without simplification: Price's theorem, kernel-math.md §3).
"""

from __future__ import annotations

import sympy as sp


def _is_diagonal(c: sp.Expr, p: sp.Expr) -> bool:
    """p − c² is identically zero (c is a variance and p its square: the kernel's diagonal)."""
    return sp.expand(p - c**2) == 0 and c.is_nonnegative is not False


class perp(sp.Function):  # noqa: N801 - sympy functions are lower-case by convention
    """√max(p − c², 0) = √(q1·q2)·sin θ."""

    nargs = 2

    @classmethod
    def eval(cls, c, p):
        if _is_diagonal(c, p):
            return sp.S.Zero
        return None

    def fdiff(self, argindex=1):
        c, p = self.args
        if argindex == 1:
            return -c / self
        return 1 / (2 * self)

    def _latex(self, printer):
        c, p = (printer._print(a) for a in self.args)
        return rf"\sqrt{{{p} - \left({c}\right)^{{2}}}}"


class angle(sp.Function):  # noqa: N801
    """θ = arccos(c/√p) ∈ [0, π], the angle between the two inputs' features."""

    nargs = 2

    @classmethod
    def eval(cls, c, p):
        if _is_diagonal(c, p):
            return sp.S.Zero
        return None

    def fdiff(self, argindex=1):
        c, p = self.args
        if argindex == 1:
            return -1 / perp(c, p)
        return c / (2 * p * perp(c, p))

    def _latex(self, printer):
        c, p = (printer._print(a) for a in self.args)
        return rf"\arccos\left(\frac{{{c}}}{{\sqrt{{{p}}}}}\right)"


def to_atan2(expr: sp.Expr) -> sp.Expr:
    """Rewrite every ``angle(c, p)`` as ``atan2(perp(c, p), c)`` so that CSE can share ``perp``."""
    return expr.replace(angle, lambda c, p: sp.atan2(perp(c, p), c))
