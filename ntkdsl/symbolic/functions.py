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


class GaussianExpectation(sp.Function):
    """E[f(u)·g(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]): a numerical dual kernel.

    Arguments: ``(f, g, q1, q2, c, kinks)`` with f, g one-variable ``sp.Lambda``s and ``kinks`` a
    ``sp.Tuple`` of σ-argument values where f or g is not smooth. Price's theorem gives the
    derivative in c: E[f'(u)·g'(v)] (derivatives of jumps taken as 0, as backpropagation sees them,
    kernel-math.md §3). Printed as a call to the generated module's quadrature routine.
    """

    nargs = 6

    @classmethod
    def eval(cls, f, g, q1, q2, c, kinks):
        return None

    def fdiff(self, argindex=1):
        f, g, q1, q2, c, kinks = self.args
        if argindex != 5:
            raise sp.ArgumentIndexError(self, argindex)
        return GaussianExpectation(derivative(f), derivative(g), q1, q2, c, kinks)

    def _eval_derivative(self, s):
        f, g, q1, q2, c, _ = self.args
        if any(a.has(s) for a in (f, g, q1, q2)):  # only ∂/∂c has a closed form (Price)
            return sp.Derivative(self, s, evaluate=False)
        return self.fdiff(5) * sp.diff(c, s)

    def _latex(self, printer):
        f, g, q1, q2, c, _ = self.args
        u, v = sp.Symbol("u"), sp.Symbol("v")
        return (rf"\mathbb{{E}}\left[\left({printer._print(f(u))}\right) \left({printer._print(g(v))}\right)\right]_{{(u, v) \sim \mathcal{{N}}"
                rf"\left(0, \begin{{smallmatrix}} {printer._print(q1)} & {printer._print(c)} \\ {printer._print(c)} & "
                rf"{printer._print(q2)} \end{{smallmatrix}}\right)}}")


def derivative(f: sp.Lambda) -> sp.Lambda:
    """f' as a Lambda, with the derivative of every jump (DiracDelta) taken as 0 (σ' a.e.)."""
    (x,) = f.variables
    d = sp.diff(f.expr, x).replace(sp.DiracDelta, lambda *a: sp.S.Zero)
    return sp.Lambda(x, d)
