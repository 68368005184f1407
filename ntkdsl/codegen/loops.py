"""What the two numba generators share (:mod:`.fused` for vector networks, :mod:`.fused_spatial` for
image and signal networks): the scalar printer of their loop bodies, the compile setting, and when
a program cannot be fused.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import sympy as sp

from ..algebra.functions import GaussianExpectation
from ..algebra.points import has_same_point
from ..algebra.spatial import attention_weights, graph_aggregate
from ..arraycode.printer import ArrayPrinter, CodegenError, conditional_chain
from ..arraycode.sources import support_sources
from ..symbolic.program import KernelProgram
from .prologue import parameter_table, point_helpers

FASTMATH = "False"  # no FMA contraction: q1·q2 − c² must stay exactly 0 on the diagonal, as on the NumPy path


class NotFusable(Exception):
    """The program has a step that the fused kernel cannot evaluate; the message says which."""


# numpy/scipy names that the shared printer asks for -> the scalar code of the loop body
_SCALAR = {
    "numpy.sqrt": "math.sqrt", "numpy.exp": "math.exp", "numpy.expm1": "math.expm1", "numpy.log": "math.log",
    "numpy.log1p": "math.log1p", "numpy.sin": "math.sin", "numpy.cos": "math.cos", "numpy.tan": "math.tan",
    "numpy.arctan": "math.atan", "numpy.tanh": "math.tanh", "numpy.sinh": "math.sinh", "numpy.cosh": "math.cosh",
    "numpy.floor": "math.floor", "numpy.ceil": "math.ceil", "numpy.pi": "math.pi", "numpy.e": "math.e",
    "scipy.constants.pi": "math.pi",
    "numpy.abs": "abs", "numpy.maximum": "max", "numpy.minimum": "min",
    "numpy.arctan2": "atan2", "numpy.hypot": "hypot",  # vectorisable helpers (fused_support)
    "scipy.special.erf": "math.erf", "scipy.special.erfc": "math.erfc", "scipy.special.gamma": "math.gamma",
    "scipy.special.gammaln": "math.lgamma",
}
_HELPERS = ("atan2", "asin", "hypot", "perp_scaled", "pow2_scale")


class ScalarPrinter(ArrayPrinter):
    """The shared printer with a scalar namespace: the statements of one entry (i, j) of a layer loop.

    Symbols print as the loop sees them: a variance of x1 as ``cov1_3_i`` (loaded once per row), of
    x2 as ``cov2_3_j`` (loaded at the top of the layer's loop), the input Gram matrix as
    ``nngp_0[i, j]``, a quantity that a later layer reads as its row buffer ``nngp_3[j]``, any other
    by its SSA name (a local of the layer's loop). Functions without a scalar translation raise
    :class:`CodegenError` (the program is then not fusable).
    """

    def __init__(self, rows, cols, matrices):
        super().__init__()
        self.rows, self.cols, self._matrices = set(rows), set(cols), set(matrices)  # per-point symbols of x1, x2
        self.buffered = set()  # quantities kept in a row buffer (read by a later layer or the output)
        self.arrays: Dict[str, str] = {}  # per-point inputs of the kernel: name -> "row" | "col" | "matrix"
        self.cols_used: List[str] = []  # column numbers the current layer reads (loaded at its loop's top)
        self.hoisted: Dict[str, str] = {}  # name -> NumPy expression computed before the loop
        self.helpers = set()
        self.cast: Optional[str] = None  # the loop's number type (F: float32 or float64); None: Python floats

    def _number(self, text: str) -> str:
        """A constant in the loop's number type: Python's float or int literals would make numba
        promote float32 arithmetic to float64."""
        return f"{self.cast}({text})" if self.cast else text

    def _module_format(self, fqn, register=True):
        if fqn not in _SCALAR:
            raise CodegenError(f"{fqn} has no scalar translation for the fused kernel")
        name = _SCALAR[fqn]
        if name.startswith("math."):
            self.modules_used.add("math")
            if name in ("math.pi", "math.e"):
                return self._number(name)
        elif name in _HELPERS:
            self.helpers.add(name)
        return name

    def _print_Symbol(self, expr):
        name = expr.name
        if expr in self.rows:
            return self._row(name)
        if expr in self.cols:
            return self._column(name)
        if expr in self._matrices:
            self.arrays[name] = "matrix"
            return f"{name}[i, j]"
        if expr in self.buffered:
            return f"{name}[j]"
        return name

    def _row(self, name: str) -> str:
        """A per-point number of x1 (a variance or a scale): a local loaded once per row i."""
        self.arrays[name] = "row"
        return f"{name}_i"

    def _column(self, name: str) -> str:
        """A per-point number of x2: a local loaded at the top of the layer's loop over j."""
        self.arrays[name] = "col"
        if name not in self.cols_used:
            self.cols_used.append(name)
        return f"{name}_j"

    def _print_Rational(self, expr):
        return self._number(f"{expr.p}/{expr.q}") if self.cast else f"({expr.p}/{expr.q})"

    def _print_Integer(self, expr):
        return self._number(str(expr.p))

    def _print_Float(self, expr):
        return self._number(super()._print_Float(expr))

    def _print_Pow(self, expr, rational=False):
        """Integer powers as ``x**n`` (numba keeps a float32 x in float32), others in the loop's type."""
        base, exp = expr.base, expr.exp
        if not self.cast or not (exp.is_Integer or abs(exp) == sp.S.Half):
            return super()._print_Pow(expr, rational)
        base_text = self._print(base)
        if exp.is_Integer:
            power = f"{self.parenthesize(base, sp.printing.precedence.PRECEDENCE['Pow'])}**{abs(exp.p)}"
        else:
            power = f"{self._module_format('numpy.sqrt')}({base_text})"
        return power if exp > 0 else f"({self._number('1')}/{power})"

    def _print_asin(self, expr):
        self.helpers.add("asin")
        return f"asin({self._print(expr.args[0])})"

    def _print_perp(self, expr):  # √max(q1·q2 − c², 0) with the overflow-safe scales hoisted out of the loop
        c, p = expr.args
        factors = p.as_ordered_factors() if p.is_Mul else []
        if len(factors) != 2:
            return f"math.sqrt(max({self._print(p - c**2)}, {self._number('0.0')}))"
        self.helpers.add("perp_scaled")
        self.modules_used.add("math")
        q1, q2 = factors
        scales = ", ".join(self._scale(q, inverse) for inverse in (False, True) for q in (q1, q2))
        return f"perp_scaled({self._print(c)}, {self._print(q1)}, {self._print(q2)}, {scales})"

    def _scale(self, q, inverse: bool) -> str:
        """The exact power-of-two scale of a variance (or its inverse): hoisted where q is a per-point
        variance, else computed in the loop."""
        if q in self.rows or q in self.cols:
            name = f"{'inv_' if inverse else ''}scale_{q.name}"
            self.hoisted[name] = f"1 / scale_{q.name}" if inverse else f"_pow2_scale({q.name})"
            return self._row(name) if q in self.rows else self._column(name)
        if q.func.__name__ in ("smaller", "larger") and all(a in self.rows or a in self.cols for a in q.args):
            a, b = q.args
            op = "<=" if q.func.__name__ == "smaller" else ">="
            return f"({self._scale(a, inverse)} if {self._print(a)} {op} {self._print(b)} else {self._scale(b, inverse)})"
        self.helpers.add("pow2_scale")
        return f"{'1 / ' if inverse else ''}pow2_scale({self._print(q)})"

    def _print_smaller(self, expr):
        return f"min({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_larger(self, expr):
        return f"max({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_Piecewise(self, expr):  # Python's conditional expressions, nested
        return conditional_chain(self, expr, lambda condition, value, rest: f"(({value}) if {condition} else {rest})")

    def _print_Relational(self, expr):
        if expr.rel_op not in ("==", "!=", "<", "<=", ">", ">="):
            raise CodegenError(f"relation {expr.rel_op}")
        return f"({self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)})"

    def _print_wedge_routine(self, expr):  # the ELU dual's wedge integrals: numba versions (wedge_support)
        self.helpers.add("wedge_support")
        self.modules_used.add("math")
        args = (self._print(a) for a in expr.args)  # in float64 whatever the loop's type (their series and
        args = (f"numba.float64({a})" for a in args) if self.cast else args  # continued fractions: float64 constants)
        return f"{type(expr).__name__}_scalar({', '.join(args)})"

    _print_mills = _print_mills_rem = _print_wedge = _print_wedge_rem = _print_wedge_routine

    def _print_GaussianExpectation(self, expr):  # emit_fused_module replaces them (mehler_fused.FusedDuals)
        raise CodegenError("a numerical dual inside an expression that the fused loop cannot split off")

    def _print_SamePoint(self, expr):  # δ(x, x′) of the vector loop: the pair (i, i) of a self request (j from lo = i)
        return f"({self._number('1')} if same and j == lo else {self._number('0')})"

    def _print_Heaviside(self, expr):
        raise CodegenError("Heaviside in a kernel formula")


def structural_reason(program: KernelProgram) -> Optional[str]:
    """Why the program's layers cannot be fused (position masks; for a vector network, a layer that is
    not elementwise after the Gram matrix; for an image network, a numerical dual; per-point graphs,
    attention weights), or None."""
    if program.masked:
        return "it is evaluated with position masks (mask1/mask2), which the fused kernels lack"
    vector = len(program.network.input_shape) == 1
    if program.output.shape:
        return ("the network ends in an image or signal (readout = none); the fused kernels return one number "
                "per input pair")
    numerical = any(expr.has(GaussianExpectation) for step in program.steps for _, expr in step.assignments)
    for step in program.steps[1:]:
        if vector and not all(layer.entrywise for layer in (step.layer, *step.merged)):
            return f"layer {step.index} ({step.label}) is not elementwise after the input Gram matrix"
        if not vector and any(expr.has(GaussianExpectation) for _, expr in step.assignments):
            return f"layer {step.index} ({step.label}) has a numerical dual (quadrature)"
        if any(expr.has(graph_aggregate) for _, expr in step.assignments):
            return f"layer {step.index} ({step.label}) reads per-point graphs, which the fused kernels lack"
        if any(expr.has(attention_weights) for _, expr in step.assignments):
            return f"layer {step.index} ({step.label}) computes attention weights, which the fused kernels lack"
        if has_same_point(expr for _, expr in step.assignments) and vector and numerical:
            return (f"layer {step.index} ({step.label}) reads the same-point indicator, which the fused "
                    "refill of numerical duals lacks")
    return None


def module_start(program: KernelProgram, header: str, vector: ArrayPrinter, imports=()) -> str:
    """The first part of a numba module: ``header``, the imports (``imports`` besides those every
    numba module has), FASTMATH, the NumPy routines that ``vector`` printed the per-point statements
    with, the checks of the input points and the table of run-time parameters."""
    lines = ["import concurrent.futures", "import math", "import os", "", "import numba", "import numpy as xp", *imports]
    if "xps" in vector.modules_used:
        lines.append("import scipy.special as xps")
    return (header + "\n".join(lines) + "\n\n" + f"FASTMATH = {FASTMATH}\n" + support_sources(vector.functions)
            + point_helpers(program.network.input_shape) + parameter_table(program))


__all__ = ["FASTMATH", "NotFusable", "ScalarPrinter", "module_start", "structural_reason"]
