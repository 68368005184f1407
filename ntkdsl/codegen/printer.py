"""The one expression printer: sympy -> array code over a module parameter ``xp`` (and ``xps`` for
special functions), so one printer serves NumPy, CuPy and any array module with their API.

Unknown functions are errors, never silently printed Python (sympy's strict mode), and the
numerically delicate primitives print in their safe forms (kernel-math.md §3): ``perp`` with a
clamp at 0, ``asin`` with its argument clipped to [−1, 1].
"""

from __future__ import annotations

from typing import Dict, Set

import sympy as sp
from sympy.printing.numpy import SciPyPrinter

_MODULES = (("numpy.", "xp"), ("scipy.special.", "xps"))
_CONSTANTS = {"scipy.constants.pi": "numpy.pi"}  # SciPyPrinter's constants, from the array module


class CodegenError(Exception):
    """An expression that has no array-module translation (a bug in a kernel rule, not user error)."""


class ArrayPrinter(SciPyPrinter):
    """SciPyPrinter with the array module as a parameter: prints ``xp.sqrt``, ``xps.erf``."""

    def __init__(self):
        super().__init__({"fully_qualified_modules": True, "strict": True, "inline": True})
        self.modules_used: Set[str] = set()
        self.functions: Dict[str, str] = {}  # support definitions the printed code calls: name -> source

    def _print_GaussianExpectation(self, expr):  # a numerical dual: quadrature over σ's printed code
        f, g, q1, q2, c, kinks = expr.args
        names = [self._elementwise(h) for h in (f, g)]
        self.functions.setdefault("gaussian_expectation", "")
        marks = ", ".join(repr(float(k)) for k in kinks)
        return (f"gaussian_expectation({names[0]}, {names[1]}, {self._print(q1)}, {self._print(q2)}, "
                f"{self._print(c)}, kinks=({marks}{',' if len(kinks) == 1 else ''}))")

    def _elementwise(self, fn: sp.Lambda) -> str:
        """Define (once) a module-level function evaluating the one-variable Lambda; return its name."""
        (x,) = fn.variables
        body = self._print(fn.expr.xreplace({x: sp.Symbol("x")}))
        for name, source in self.functions.items():
            if source.endswith(f"    return {body}\n"):
                return name
        name = f"_sigma_{len([n for n in self.functions if n.startswith('_sigma_')])}"
        self.functions[name] = f"def {name}(x):\n    return {body}\n"
        return name

    def _module_format(self, fqn, register=True):
        fqn = _CONSTANTS.get(fqn, fqn)
        for prefix, alias in _MODULES:
            if fqn.startswith(prefix):
                self.modules_used.add(alias)
                return f"{alias}.{fqn[len(prefix):]}"
        raise CodegenError(f"{fqn} has no array-module equivalent")

    def _print_perp(self, expr):  # √max(p − c², 0)
        c, p = expr.args
        return f"{self._module_format('numpy.sqrt')}({self._module_format('numpy.maximum')}({self._print(p - c**2)}, 0))"

    def _print_angle(self, expr):  # θ = atan2(√max(p − c², 0), c) ∈ [0, π]
        from ..symbolic.functions import perp

        c, p = expr.args
        return f"{self._module_format('numpy.arctan2')}({self._print(perp(c, p))}, {self._print(c)})"

    def _print_asin(self, expr):
        (arg,) = expr.args
        return f"{self._module_format('numpy.arcsin')}({self._module_format('numpy.clip')}({self._print(arg)}, -1, 1))"

    def _print_Max(self, expr):
        return self._nested(expr.args, "numpy.maximum")

    def _print_Min(self, expr):
        return self._nested(expr.args, "numpy.minimum")

    def _nested(self, args, fqn):
        first, *rest = args
        if not rest:
            return self._print(first)
        return f"{self._module_format(fqn)}({self._print(first)}, {self._nested(rest, fqn)})"

    def _print_Abs(self, expr):
        return f"{self._module_format('numpy.abs')}({self._print(expr.args[0])})"


def array_function(expr: sp.Expr, args):
    """A NumPy function of ``args`` (sympy symbols) evaluating ``expr`` through this printer.

    The same printing path as generated modules (σ helpers and the quadrature routine included),
    for tests and numerical tools. Only ever called on expressions ntkdsl built, never on user text.
    """
    import numpy
    import scipy.special

    from ..symbolic.functions import to_atan2
    from . import support

    printer = ArrayPrinter()
    names = [f"a{i}" for i in range(len(args))]
    body = printer.doprint(to_atan2(expr).xreplace(dict(zip(args, sp.symbols(names)))))
    namespace = {"xp": numpy, "xps": scipy.special, "gaussian_expectation": support.gaussian_expectation}
    for name, source in printer.functions.items():
        if name != "gaussian_expectation":
            exec(compile(source, "<ntkdsl array_function>", "exec"), namespace)  # noqa: S102 - printed by us
    code = compile(f"lambda {', '.join(names)}: {body}", "<ntkdsl array_function>", "eval")
    return eval(code, namespace)  # noqa: S307 - printed from a sympy expression we built
