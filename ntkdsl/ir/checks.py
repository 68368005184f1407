"""Value limits the lowering enforces on sympy values: the float64 range and polynomial degree.

Every number a spec computes becomes a float64 in generated code, so each intermediate value of a
constant expression must lie within the float64 range (±1.797e308; a value that small would be 0
is fine); exact rationals are bounded in digits too (:func:`ntkdsl.frontend.limits.check_exact`),
which keeps exact arithmetic fast. A custom activation's structural degree in its variable is
bounded by :data:`~ntkdsl.frontend.limits.MAX_DEGREE` (the Hermite re-expansion of a polynomial
dual costs and grows with it: E[u^(2n)] = (2n − 1)!!·q^n).
"""

from __future__ import annotations

import math
import sys
from typing import Optional

import sympy as sp

from ..errors import LimitSpecError, Span
from ..frontend.limits import MAX_DEGREE, MAX_DIGITS, check_exact

FLOAT_MAX = sys.float_info.max
_FLOAT_MAX_INT = int(FLOAT_MAX)


def in_float_range(v: sp.Expr, span: Optional[Span], what: str = "the value") -> sp.Expr:
    """``v`` unchanged; a LimitSpecError naming it (by its source text where it has one) when it is a
    number beyond the float64 range, or an exact rational with too many digits."""
    if not v.is_number:
        return v
    def label() -> str:  # only for an error: quoting the source splits the text into lines
        return f"{what} {_source(span) or _short(v)}"

    if v.is_Rational:
        if abs(v.p) > _FLOAT_MAX_INT * v.q:
            raise LimitSpecError(f"{label()} is beyond the float64 range (±{FLOAT_MAX:.4g})", span)
        if max(abs(v.p), v.q).bit_length() > 3 * MAX_DIGITS:  # 2^(3·400) < 10^400: only then can it fail
            check_exact(v.p, v.q, span, label())
        return v
    try:
        approx = v.evalf(15)
        big = not approx.is_finite or abs(approx) > FLOAT_MAX
    except (ArithmeticError, ValueError, TypeError):  # mpmath cannot even represent its magnitude
        approx, big = None, True
    if big:
        about = _approximately(approx)
        raise LimitSpecError(f"{label()}{about} is beyond the float64 range (±{FLOAT_MAX:.4g})", span)
    return v


def check_degree(expr: sp.Expr, x: sp.Symbol, span: Optional[Span], what: str) -> None:
    """A LimitSpecError when ``expr`` has a structural degree in ``x`` above :data:`MAX_DEGREE`."""
    d = degree(expr, x)
    if d > MAX_DEGREE:
        raise LimitSpecError(f"{what} has degree {d} in {x} (at most {MAX_DEGREE})", span)


def degree(expr: sp.Expr, x: sp.Symbol) -> int:
    """An upper bound of the polynomial degree of ``expr`` in ``x``, without expanding it.

    Sums take the maximum, products the sum, integer powers multiply; a function's degree is its
    argument's (so sin(x**40) counts 40); a power with a non-integer or symbolic exponent counts
    its base's degree times the exponent's magnitude where that is a number.
    """
    if not expr.has(x):
        return 0
    if expr == x:
        return 1
    if expr.is_Add:
        return max(degree(a, x) for a in expr.args)
    if expr.is_Mul:
        return sum(degree(a, x) for a in expr.args)
    if expr.is_Pow:
        base, exponent = expr.args
        d = degree(base, x)
        if exponent.has(x):
            return max(d, degree(exponent, x))
        scale = math.ceil(abs(float(exponent))) if exponent.is_number else 1
        return d * max(scale, 1)
    return max(degree(a, x) for a in expr.args)


def _approximately(approx) -> str:
    """' ≈ 1.9701E+434' for a sympy Float, '' when there is none or it cannot be printed."""
    try:
        text = str(approx.evalf(5)) if approx is not None and approx.is_finite else ""
        return f" ≈ {text}" if text and len(text) <= 24 else ""  # not exponents of a thousand digits
    except (ArithmeticError, ValueError, TypeError):
        return ""


def _source(span: Optional[Span]) -> str:
    """The source text a one-line span covers ('' when it spans lines or is unknown)."""
    if span is None or span.line != span.end_line or span.line < 1:
        return ""
    text = span.source_line()[span.col - 1:span.end_col - 1]
    return text if len(text) <= 40 else ""


def _short(v) -> str:
    text = str(v)
    return text if len(text) <= 40 else f"{text[:18]}…{text[-18:]}"
