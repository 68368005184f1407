"""The CUDA side of the CuPy backend's printing (:mod:`.cuda`): sympy's C99 printer for the bodies
of fused kernels, and the array printer for what stays CuPy array operations.

Only expressions that ntkdsl derived are printed (never user text); a function without a CUDA form
raises :class:`~.printer.CodegenError`, and :mod:`.cuda` then evaluates that subexpression with
CuPy array operations outside the kernel.
"""

from __future__ import annotations

from typing import Set

import sympy as sp
from sympy.printing.c import C99CodePrinter
from sympy.printing.precedence import PRECEDENCE

from . import cuda_support
from ..arraycode.printer import ArrayPrinter, CodegenError, conditional_chain

# sympy function classes that CudaPrinter prints (everything else is hoisted out of the kernel)
_C_FUNCTIONS = {"exp": "exp", "expm1": "expm1", "log": "log", "sin": "sin", "cos": "cos", "tan": "tan", "atan": "atan",
                "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "erf": "erf", "erfc": "erfc",
                "floor": "floor", "ceiling": "ceil", "gamma": "tgamma", "loggamma": "lgamma",
                "Abs": "fabs", "atan2": "atan2"}
CUDA_PRINTABLE = set(_C_FUNCTIONS) | {"perp", "angle", "asin", "hypot", "Max", "Min", "smaller", "larger",
                                      "cos_angle", "sin_angle", "polar_cos", "polar_sin", "Piecewise", "ExprCondPair"}


class CudaPrinter(C99CodePrinter):
    """sympy's C99 printer for the body of a CUDA kernel: double arithmetic, CUDA's math library.

    Numbers print as double literals (``2.0``, ``3.141592653589793``: no ``M_PI``, which NVRTC
    lacks, and no ``sqrt(2)`` of an int, which is ambiguous in CUDA C++), small integer powers as
    products, and ntkdsl's functions in their safe forms (:mod:`ntkdsl.algebra.functions`):
    ``perp`` as the overflow-safe device helper, ``asin`` with its argument clamped, θ as
    ``atan2``. A function without a CUDA form raises :class:`CodegenError`.
    """

    def __init__(self):
        super().__init__({"math_macros": {}})
        self.helpers: Set[str] = set()

    def _print_not_supported(self, expr):
        raise CodegenError(f"{type(expr).__name__} has no CUDA form")

    def _print_SamePoint(self, expr):  # δ(x, x′) is an (N1, N2) array: the layer runs as CuPy array code
        raise CodegenError("the same-point indicator has no CUDA form")

    def _print_Function(self, expr):
        name = type(expr).__name__
        if name not in _C_FUNCTIONS:
            raise CodegenError(f"{name} has no CUDA form")
        return f"{_C_FUNCTIONS[name]}({', '.join(self._print(a) for a in expr.args)})"

    def _print_Integer(self, expr):
        return f"{int(expr)}.0"

    def _print_NumberSymbol(self, expr):
        return repr(float(expr))

    _print_Pi = _print_Exp1 = _print_EulerGamma = _print_NumberSymbol

    def _print_Pow(self, expr):
        base, e = expr.args
        if e.is_Float and float(e).is_integer():
            e = sp.Integer(int(e))
        if e == sp.S.Half:
            return f"sqrt({self._print(base)})"
        if e == -sp.S.Half:
            return f"(1.0/sqrt({self._print(base)}))"
        if e.is_Integer and 2 <= int(e) <= 4 and isinstance(base, sp.Function):  # not the call written twice
            return f"pow({self._print(base)}, {int(e)}.0)"
        if e.is_Integer and 2 <= int(e) <= 4:
            b = self.parenthesize(base, PRECEDENCE["Mul"], strict=True)
            return "(" + "*".join([b] * int(e)) + ")"
        if e == -1:
            return f"(1.0/{self.parenthesize(base, PRECEDENCE['Mul'], strict=True)})"
        if e.is_Integer and -4 <= int(e) <= -1:
            return f"(1.0/{self.parenthesize(sp.Pow(base, -e, evaluate=False), PRECEDENCE['Mul'], strict=True)})"
        exponent = repr(float(e)) if e.is_number else self._print(e)
        return f"pow({self._print(base)}, {exponent})"

    def _print_perp(self, expr):  # √max(q1·q2 − c², 0), rescaled so that q1·q2 cannot overflow
        c, p = expr.args
        factors = p.as_ordered_factors() if p.is_Mul else []
        if len(factors) != 2:
            return f"sqrt(fmax({self._print(p - c**2)}, 0.0))"
        self.helpers.add("perp")
        return f"perp({self._print(c)}, {self._print(factors[0])}, {self._print(factors[1])})"

    def _print_angle(self, expr):  # θ = atan2(√max(p − c², 0), c) ∈ [0, π]
        from ..algebra.functions import perp

        c, p = expr.args
        return f"atan2({self._print(perp(c, p))}, {self._print(c)})"

    def _print_cos_angle(self, expr):  # cos θ as cos(atan2(...)): 1, not 0/0, at p = 0
        from ..algebra.functions import angle

        return f"cos({self._print_angle(angle(*expr.args))})"

    def _print_sin_angle(self, expr):
        from ..algebra.functions import angle

        return f"sin({self._print_angle(angle(*expr.args))})"

    def _print_polar_cos(self, expr):  # cos(atan2(y, x)) (algebra.functions.to_atan2)
        return f"cos(atan2({self._print(expr.args[0])}, {self._print(expr.args[1])}))"

    def _print_polar_sin(self, expr):
        return f"sin(atan2({self._print(expr.args[0])}, {self._print(expr.args[1])}))"

    def _print_asin(self, expr):
        return f"asin(fmin(fmax({self._print(expr.args[0])}, -1.0), 1.0))"

    def _print_hypot(self, expr):
        return f"hypot({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _nested(self, args, name):
        first, *rest = args
        return self._print(first) if not rest else f"{name}({self._print(first)}, {self._nested(rest, name)})"

    def _print_Max(self, expr):
        return self._nested(expr.args, "fmax")

    def _print_Min(self, expr):
        return self._nested(expr.args, "fmin")

    _print_larger = _print_Max
    _print_smaller = _print_Min

    def _print_Piecewise(self, expr):  # C's conditional expressions, nested on one line
        return conditional_chain(self, expr, lambda condition, value, rest: f"(({condition}) ? ({value}) : {rest})")


class CupyArrayPrinter(ArrayPrinter):
    """The shared array printer, with Owen's T through the module's host helper (CuPy has none)."""

    def _print_owens_t_angle(self, expr):
        h, phi = (self._print(a) for a in expr.args)
        self.functions["owens_t"] = cuda_support.OWENS_T
        return f"owens_t({h}, {self._module_format('numpy.tan')}({phi}))"


def c_comment(text: str) -> str:
    """``text`` (a layer's comment; its file name already :func:`inert`) as a one-line ASCII C++
    comment that no backslash can continue onto the next line."""
    text = text.encode("ascii", "backslashreplace").decode("ascii").replace("\n", "\\n")
    return "// " + text + ("." if text.rstrip().endswith("\\") else "")


__all__ = ["CUDA_PRINTABLE", "CudaPrinter", "CupyArrayPrinter", "c_comment"]
