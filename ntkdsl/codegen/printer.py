"""The one expression printer: sympy -> array code over a module parameter ``xp`` (and ``xps`` for
special functions), so one printer serves NumPy, CuPy and any array module with their API.

Unknown functions are errors, never silently printed Python (sympy's strict mode), and the
numerically delicate primitives print in their safe forms (kernel-math.md §3): ``perp`` with a
clamp at 0, ``asin`` with its argument clipped to [−1, 1].
"""

from __future__ import annotations

from typing import Set

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

    def _print_Abs(self, expr):
        return f"{self._module_format('numpy.abs')}({self._print(expr.args[0])})"
