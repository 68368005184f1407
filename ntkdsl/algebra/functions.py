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
from sympy.core.logic import fuzzy_and, fuzzy_or


def number(value) -> sp.Expr:
    """A number or sympy expression as a sympy object, built without sympify, so that no text is ever
    evaluated (a string, or anything else, is a TypeError)."""
    if isinstance(value, sp.Basic):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number or a sympy expression, not {value!r}")
    return sp.Integer(value) if isinstance(value, int) else sp.Float(value)


def _powered(latex):
    """Let a ``_latex`` method take sympy's ``exp=`` keyword (the function raised to a power)."""

    def wrapper(self, printer, exp=None):
        tex = latex(self, printer)
        return tex if exp is None else rf"\left({tex}\right)^{{{exp}}}"

    return wrapper


def _is_diagonal(c: sp.Expr, p: sp.Expr) -> bool:
    """p − c² is identically zero (c is a variance and p its square: the kernel's diagonal)."""
    return sp.expand(p - c**2) == 0 and c.is_nonnegative is not False


class _AngularFunction(sp.Function):
    """A function of (c, p) = (covariance, q1·q2) with a known value on the kernel's diagonal (θ = 0).

    Subclasses set ``_diagonal`` (that value) and ``_tex`` (c, p printed → LaTeX); printers
    dispatch on the subclass names, so those stay."""

    nargs = 2
    _diagonal = None
    _tex = None

    @classmethod
    def eval(cls, c, p):
        if _is_diagonal(c, p):
            return cls._diagonal
        return None

    @_powered
    def _latex(self, printer):
        return self._tex(*(printer._print(a) for a in self.args))


class perp(_AngularFunction):  # noqa: N801 - sympy functions are lower-case by convention
    """√max(p − c², 0) = √(q1·q2)·sin θ."""

    _diagonal = sp.S.Zero
    _tex = staticmethod(lambda c, p: rf"\sqrt{{{p} - \left({c}\right)^{{2}}}}")

    def fdiff(self, argindex=1):
        c, p = self.args
        if argindex == 1:
            return -c / self
        return 1 / (2 * self)

    def _eval_evalf(self, prec):
        c, p = self.args
        if c.is_number and p.is_number:
            return sp.sqrt(sp.Max(p - c**2, 0))._eval_evalf(prec)
        return None


class angle(_AngularFunction):  # noqa: N801
    """θ = arccos(c/√p) ∈ [0, π], the angle between the two inputs' features."""

    _diagonal = sp.S.Zero
    _tex = staticmethod(lambda c, p: rf"\arccos\left(\frac{{{c}}}{{\sqrt{{{p}}}}}\right)")

    def fdiff(self, argindex=1):
        c, p = self.args
        if argindex == 1:
            return -1 / perp(c, p)
        return c / (2 * p * perp(c, p))

    def _eval_evalf(self, prec):
        c, p = self.args
        if c.is_number and p.is_number:
            return sp.atan2(sp.sqrt(sp.Max(p - c**2, 0)), c)._eval_evalf(prec)
        return None


class hypot(sp.Function):  # noqa: N801
    """√(a² + b²) without overflow of the squares (printed as ``xp.hypot``)."""

    nargs = 2

    def fdiff(self, argindex=1):
        return self.args[argindex - 1] / self

    def _eval_evalf(self, prec):
        a, b = self.args
        if a.is_number and b.is_number:
            return sp.sqrt(a**2 + b**2)._eval_evalf(prec)
        return None

    @_powered
    def _latex(self, printer):
        a, b = (printer._print(x) for x in self.args)
        return rf"\sqrt{{\left({a}\right)^{{2}} + \left({b}\right)^{{2}}}}"


def to_atan2(expr: sp.Expr) -> sp.Expr:
    """Rewrite every ``angle(c, p)`` as ``atan2(perp(c, p), c)`` (and cos θ, sin θ likewise) so that CSE
    shares ``perp(c, p)`` whole: were p = q1·q2 left as an argument of several functions, CSE would
    name it, and perp could no longer rescale q1 and q2 (q1·q2 underflows below q ~ 1e-154)."""
    expr = expr.replace(cos_angle, lambda c, p: polar_cos(perp(c, p), c))
    expr = expr.replace(sin_angle, lambda c, p: polar_sin(perp(c, p), c))
    return expr.replace(angle, lambda c, p: sp.atan2(perp(c, p), c))


class polar_cos(sp.Function):  # noqa: N801
    """cos(atan2(y, x)) as printed (sympy would rewrite it to x/√(x² + y²): 0/0 at the origin, and
    x², y² overflow for |x|, |y| ≳ 1e154)."""

    nargs = 2

    def fdiff(self, argindex=1):
        y, x = self.args
        return (-1 if argindex == 1 else 1) * polar_sin(y, x) * (x if argindex == 1 else y) / (x**2 + y**2)

    def _eval_evalf(self, prec):
        return sp.cos(sp.atan2(*self.args)).evalf(prec) if all(a.is_number for a in self.args) else None


class polar_sin(sp.Function):  # noqa: N801
    """sin(atan2(y, x)) as printed (y/√(x² + y²) without overflow or 0/0)."""

    nargs = 2

    def fdiff(self, argindex=1):
        y, x = self.args
        return polar_cos(y, x) * (x if argindex == 1 else -y) / (x**2 + y**2)

    def _eval_evalf(self, prec):
        return sp.sin(sp.atan2(*self.args)).evalf(prec) if all(a.is_number for a in self.args) else None


class GaussianExpectation(sp.Function):
    """E[f(u)·g(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]): a numerical dual kernel.

    Arguments: ``(f, g, q1, q2, c, kinks)`` with f, g one-variable ``sp.Lambda``s and ``kinks`` a
    ``sp.Tuple`` of σ-argument values where f or g is not smooth: numbers, expressions in parameter
    symbols, or locators ``Lambda(x, a(x))`` standing for the sign changes of a(x). Price's theorem
    gives the derivative in c: E[f'(u)·g'(v)] (derivatives of jumps taken as 0, as backpropagation
    sees them, kernel-math.md §3). Printed as a call to the generated module's quadrature routine.

    Once f, g and the breakpoints hold no parameter symbols (the code generator substitutes their
    values), it evaluates: to 0 when f or g is 0, to the exact orthant-probability form when f = g is
    piecewise constant, and otherwise to itself with every locator replaced by the numbers it locates
    (the resolver :func:`ntkdsl.activations.steps.resolve` installs in :attr:`resolvers`, so the
    algebra imports nothing above it).
    """

    nargs = 6
    resolvers: list = []  # (f, g, q1, q2, c, kinks) -> closed form, resolved kinks, or None

    @classmethod
    def eval(cls, f, g, q1, q2, c, kinks):
        if f.expr.is_zero or g.expr.is_zero:
            return sp.S.Zero
        if not any(isinstance(k, sp.Lambda) for k in kinks) and not kinks.has(sp.Heaviside, sp.sign) \
                and not f.expr.has(sp.Heaviside, sp.sign):
            return None  # nothing to resolve (the common case: no work at every rebuild)
        resolved = next((r for r in (rule(f, g, q1, q2, c, kinks) for rule in cls.resolvers) if r is not None), None)
        if resolved is None or resolved == kinks:
            return None
        if isinstance(resolved, sp.Tuple):
            return cls(f, g, q1, q2, c, resolved, evaluate=False)
        return resolved

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

    @_powered
    def _latex(self, printer):
        f, g, q1, q2, c, _ = self.args
        u, v = sp.Symbol("u"), sp.Symbol("v")
        return (rf"\mathbb{{E}}\left[\left({printer._print(f(u))}\right) \left({printer._print(g(v))}\right)\right]"
                rf"_{{(u, v) \sim \mathcal{{N}}"
                rf"\left(0, \begin{{smallmatrix}} {printer._print(q1)} & {printer._print(c)} \\ {printer._print(c)} & "
                rf"{printer._print(q2)} \end{{smallmatrix}}\right)}}")


def derivative(f: sp.Lambda) -> sp.Lambda:
    """f' as a Lambda, with the derivative of every jump (DiracDelta) taken as 0 (σ' a.e.)."""
    (x,) = f.variables
    d = sp.diff(f.expr, x).replace(sp.DiracDelta, lambda *a: sp.S.Zero)
    return sp.Lambda(x, d)


class _Extremum(sp.Function):
    """min/max of two variances, lighter than sp.Min/sp.Max: those search for redundant arguments
    every time they are built, which made rebuilding a large dual (xreplace, subs) take seconds."""

    nargs = 2
    _pick = None

    @classmethod
    def eval(cls, a, b):
        if a == b:
            return a
        if a.is_number and b.is_number and a.is_comparable and b.is_comparable:
            return cls._pick(a, b)
        return None

    def _eval_is_real(self):
        return fuzzy_and(a.is_real for a in self.args)

    def _eval_is_nonnegative(self):  # min: both are; max: either is
        return self._sign_rule(a.is_nonnegative for a in self.args)

    def _eval_is_positive(self):
        return self._sign_rule(a.is_positive for a in self.args)


class smaller(_Extremum):  # noqa: N801
    """min(a, b); ∂/∂a = H(b − a)."""

    _pick = staticmethod(lambda a, b: sp.Min(a, b))
    _sign_rule = staticmethod(fuzzy_and)

    def fdiff(self, argindex=1):
        a, b = self.args
        return sp.Heaviside(b - a) if argindex == 1 else sp.Heaviside(a - b)

    @_powered
    def _latex(self, printer):
        return rf"\min\left({printer._print(self.args[0])}, {printer._print(self.args[1])}\right)"


class larger(_Extremum):  # noqa: N801
    """max(a, b); ∂/∂a = H(a − b)."""

    _pick = staticmethod(lambda a, b: sp.Max(a, b))
    _sign_rule = staticmethod(fuzzy_or)

    def fdiff(self, argindex=1):
        a, b = self.args
        return sp.Heaviside(a - b) if argindex == 1 else sp.Heaviside(b - a)

    @_powered
    def _latex(self, printer):
        return rf"\max\left({printer._print(self.args[0])}, {printer._print(self.args[1])}\right)"


def ordered_variances(q1: sp.Expr, q2: sp.Expr):
    """(min(q1, q2), max(q1, q2)), for dual kernels that are symmetric in (q1, q2) only mathematically.

    Float64 sums and products are not associative: a printed formula such as 9*c*q1*q2 evaluates
    (9·c·q1)·q2, so K(q1, q2, c) and K(q2, q1, c) can differ in the last bit and a self-kernel is not
    exactly symmetric. Evaluating the formula at the ordered pair makes it symmetric bit for bit;
    min(q, q) = q keeps the diagonal form unchanged."""
    return smaller(q1, q2), larger(q1, q2)


class cos_angle(_AngularFunction):  # noqa: N801
    """cos θ = c/√p = ρ, as cos(atan2(perp, c)): 1 at a zero-norm input (p = c = 0, θ = 0) instead of 0/0.

    A separate function because sympy rewrites cos(atan2(y, x)) to x/√(x² + y²), which divides by
    zero there. At p = 0 any ρ describes the same degenerate Gaussian, so formulas that are valid for
    every ρ (the ELU dual) stay exact with this choice."""

    _diagonal = sp.S.One
    _tex = staticmethod(lambda c, p: rf"\frac{{{c}}}{{\sqrt{{{p}}}}}")

    def fdiff(self, argindex=1):
        c, p = self.args
        if argindex == 1:
            return 1 / sp.sqrt(p)
        return -c / (2 * p ** sp.Rational(3, 2))


class sin_angle(_AngularFunction):  # noqa: N801
    """sin θ = √max(p − c², 0)/√p = √(1 − ρ²), as sin(atan2(perp, c)): 0 at a zero-norm input."""

    _diagonal = sp.S.Zero
    _tex = staticmethod(lambda c, p: rf"\frac{{\sqrt{{{p} - \left({c}\right)^{{2}}}}}}{{\sqrt{{{p}}}}}")

    def fdiff(self, argindex=1):
        c, p = self.args
        if argindex == 1:
            return -c / (sp.sqrt(p) * perp(c, p))
        return c**2 / (2 * p ** sp.Rational(3, 2) * perp(c, p))
