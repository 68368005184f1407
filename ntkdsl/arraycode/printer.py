"""The one expression printer: sympy -> array code over a module parameter ``xp`` (and ``xps`` for
special functions), so one printer serves NumPy, CuPy and any array module with their API.

Unknown functions are errors, never silently printed Python (sympy's strict mode), and the
numerically delicate primitives print in their safe forms (kernel-math.md §3): ``perp`` with a
clamp at 0, ``asin`` with its argument clipped to [−1, 1]; the one-variable functions σ, σ' of
numerical duals in the overflow-safe forms of :func:`ntkdsl.algebra.stable.stabilize`.
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

    def _print_GaussianExpectation(self, expr):  # a numerical dual: Mehler series, quadrature where it is not within bound
        return f"{self.expectations(expr)}[0]"

    def expectations(self, *exprs) -> str:
        """One ``mehler_expectations`` call for numerical duals over the same (q1, q2, c, kinks), e.g.
        K and K̇ of one activation: they share the per-point coefficient integrals (a list of arrays)."""
        q1, q2, c, kinks = exprs[0].args[2:]
        assert all(e.args[2:] == exprs[0].args[2:] for e in exprs)
        pairs = "".join(f"({self._elementwise(e.args[0])}, {self._elementwise(e.args[1])}), " for e in exprs)
        self.functions.setdefault("gaussian_expectation", "")
        marks = ", ".join(repr(float(k)) for k in kinks)
        return (f"mehler_expectations(({pairs.rstrip(' ')}), {self._print(q1)}, {self._print(q2)}, {self._print(c)}, "
                f"kinks=({marks}{',' if len(kinks) == 1 else ''}))")

    def _elementwise(self, fn: sp.Lambda) -> str:
        """Define (once) a module-level function evaluating the one-variable Lambda; return its name."""
        from ..algebra.stable import stabilize

        (x,) = fn.variables
        body = self._print(stabilize(fn.expr).xreplace({x: sp.Symbol("x")}))
        for name, source in self.functions.items():
            if source.endswith(f"    return {body}\n"):
                return name
        name = f"_sigma_{len([n for n in self.functions if n.startswith('_sigma_')])}"
        self.functions[name] = f"def {name}(x):\n    return {body}\n"
        return name

    def _print_Logistic(self, expr):  # 1/(1 + e^(−a)) without overflow (algebra.stable)
        return f"{self._module_format('scipy.special.expit')}({self._print(expr.args[0])})"

    def _print_Softplus(self, expr):  # log(1 + e^a) = logaddexp(0, a) without overflow (algebra.stable)
        return f"{self._module_format('numpy.logaddexp')}(0.0, {self._print(expr.args[0])})"

    def _module_format(self, fqn, register=True):
        fqn = _CONSTANTS.get(fqn, fqn)
        for prefix, alias in _MODULES:
            if fqn.startswith(prefix):
                self.modules_used.add(alias)
                return f"{alias}.{fqn[len(prefix):]}"
        raise CodegenError(f"{fqn} has no array-module equivalent")

    def _print_perp(self, expr):  # √max(q1·q2 − c², 0), rescaled so that q1·q2 cannot overflow
        c, p = expr.args
        factors = p.as_ordered_factors() if p.is_Mul else []
        if len(factors) != 2:
            return f"{self._module_format('numpy.sqrt')}({self._module_format('numpy.maximum')}({self._print(p - c**2)}, 0))"
        self.functions.setdefault("perp", "")
        return f"perp({self._print(c)}, {self._print(factors[0])}, {self._print(factors[1])})"

    def _print_angle(self, expr):  # θ = atan2(√max(p − c², 0), c) ∈ [0, π]
        from ..algebra.functions import perp

        c, p = expr.args
        return f"{self._module_format('numpy.arctan2')}({self._print(perp(c, p))}, {self._print(c)})"

    def _print_asin(self, expr):
        (arg,) = expr.args
        return f"{self._module_format('numpy.arcsin')}({self._module_format('numpy.clip')}({self._print(arg)}, -1, 1))"

    def _print_hypot(self, expr):
        a, b = expr.args
        return f"{self._module_format('numpy.hypot')}({self._print(a)}, {self._print(b)})"

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

    def _print_smaller(self, expr):  # min of two variances (ordered_variances)
        return self._nested(expr.args, "numpy.minimum")

    def _print_larger(self, expr):
        return self._nested(expr.args, "numpy.maximum")

    def _print_cos_angle(self, expr):  # cos θ = cos(atan2(√max(p − c², 0), c)): 1, not 0/0, at p = 0
        from ..algebra.functions import angle

        return f"{self._module_format('numpy.cos')}({self._print_angle(angle(*expr.args))})"

    def _print_sin_angle(self, expr):  # sin θ, 0 at p = 0
        from ..algebra.functions import angle

        return f"{self._module_format('numpy.sin')}({self._print_angle(angle(*expr.args))})"

    def _print_owens_t_angle(self, expr):  # Owen's T(h, tan φ); φ ∈ [−π/2, π/2] keeps ρ = ±1 finite
        h, phi = (self._print(a) for a in expr.args)
        return f"{self._module_format('scipy.special.owens_t')}({h}, {self._module_format('numpy.tan')}({phi}))"

    def _print_polar_cos(self, expr):  # cos θ = cos(atan2(perp, c)) (algebra.functions.to_atan2)
        y, x = (self._print(a) for a in expr.args)
        return f"{self._module_format('numpy.cos')}({self._module_format('numpy.arctan2')}({y}, {x}))"

    def _print_polar_sin(self, expr):
        y, x = (self._print(a) for a in expr.args)
        return f"{self._module_format('numpy.sin')}({self._module_format('numpy.arctan2')}({y}, {x}))"

    def _print_wedge_routine(self, expr):  # the scaled wedge integrals of the ELU dual (arraycode/wedge_support.py)
        from . import wedge_support

        self.functions["wedge_support"] = wedge_support.array_source()
        self.modules_used.update(("xp", "xps"))
        return f"{type(expr).__name__}({', '.join(self._print(a) for a in expr.args)})"

    _print_mills = _print_mills_rem = _print_wedge = _print_wedge_rem = _print_wedge_routine


    # structural operations of image kernels (ntkdsl.algebra.spatial): calls of the run-time
    # routines of ntkdsl.arraycode.spatial_support, their static settings as Python literals
    def _spatial_call(self, expr, names):
        """``name(K, key=value, ...)``; a layout word becomes ``full=<bool>``, a true/false word a bool."""
        from ..algebra.spatial import static

        name = type(expr).__name__
        self.functions.setdefault(name, "")
        settings = []
        for key, arg in zip(names, expr.args[1:]):
            value = static(arg)
            if key == "layout":
                key, value = "full", value == "full"
            elif key == "antialias":
                value = value == "true"
            settings.append(f"{key}={value!r}")
        return f"{name}({self._print(expr.args[0])}, {', '.join(settings)})"

    def _print_conv_taps(self, expr):
        return self._spatial_call(expr, ("shape", "kernel", "stride", "padding", "layout"))

    _print_conv_transpose_taps = _print_conv_taps

    def _print_spatial_index(self, expr):
        return self._spatial_call(expr, ("shape", "picks", "drops", "layout"))

    def _print_resize_map(self, expr):
        return self._spatial_call(expr, ("shape", "size", "method", "antialias", "layout"))

    def _print_pool_window(self, expr):
        return self._spatial_call(expr, ("shape", "window", "stride", "padding", "mode"))

    def _print_flatten_mean(self, expr):
        return self._spatial_call(expr, ("shape", "layout"))

    def _print_global_pool(self, expr):
        return self._spatial_call(expr, ("shape", "mode"))

    def _print_pixel_variance(self, expr):
        return self._spatial_call(expr, ("shape", "side"))

    def _print_spatial_diagonal(self, expr):
        return self._spatial_call(expr, ("shape",))

    def _print_diagonal_embed(self, expr):
        return self._spatial_call(expr, ("shape",))

    def _print_time_shift(self, expr):
        return self._spatial_call(expr, ("shape", "layout"))

    def _print_graph_aggregate(self, expr):  # graph1, graph2: the adjacencies kernels() receives
        from ..algebra.spatial import static

        self.functions.setdefault("graph_aggregate", "")
        return f"graph_aggregate({self._print(expr.args[0])}, graph1, graph2, side={static(expr.args[2])!r})"

    def _print_attention_weights(self, expr):
        return self._spatial_call(expr, ("shape", "mechanism"))

    def _print_attention_map(self, expr):  # the kernel, then the weights of the two sides
        from ..algebra.spatial import static

        self.functions.setdefault("attention_map", "")
        k, left, right, shape = expr.args
        return f"attention_map({self._print(k)}, {self._print(left)}, {self._print(right)}, shape={static(shape)!r})"

    def _print_position_covariance(self, expr):  # p_norm and rate are real numbers, printed as floats
        from ..algebra.spatial import static

        self.functions.setdefault("position_covariance", "")
        shape, p_norm, decay, rate = expr.args
        return (f"position_covariance(shape={static(shape)!r}, p_norm={float(p_norm)!r}, decay={static(decay)!r}, "
                f"rate={float(rate)!r})")

    def _mask_call(self, expr, key: str):  # keep1, keep2: 1 - the masks kernels() receives (algebra.masking)
        from ..algebra.spatial import static

        name = type(expr).__name__
        self.functions.setdefault(name, "")
        value = static(expr.args[2])
        setting = f"full={value == 'full'!r}" if key == "layout" else f"{key}={value!r}"
        return (f"{name}({self._print(expr.args[0])}, keep1, keep2, shape={static(expr.args[1])!r}, {setting}, "
                f"side={static(expr.args[3])!r})")

    def _print_remask(self, expr):
        return self._mask_call(expr, "layout")

    _print_masked_mean = _print_remask

    def _print_masked_pool(self, expr):
        return self._mask_call(expr, "mode")

    def _print_masked_keys(self, expr):
        return self._mask_call(expr, "mechanism")


def conditional_chain(printer, expr, choose) -> str:
    """A Piecewise as nested conditional expressions, its default (last) piece innermost;
    ``choose(condition, value, rest)`` writes one level in the target language."""
    *pieces, (last, cond) = expr.args
    if cond != sp.true:
        raise CodegenError("a Piecewise without a default piece")
    out = f"({printer._print(last)})"
    for value, condition in reversed(pieces):
        out = choose(printer._print(condition), printer._print(value), out)
    return out


def array_function(expr: sp.Expr, args):
    """A NumPy function of ``args`` (sympy symbols) evaluating ``expr`` through this printer.

    The same printing and loading path as generated modules (σ helpers, perp, the quadrature and
    spatial routines included by :func:`.sources.support_sources`, the module run by :func:`.loader.load_module`),
    for tests and numerical tools. Only ever called on expressions ntkdsl built, never on user text.
    """
    from ..algebra.functions import to_atan2
    from .backends import BACKENDS
    from .sources import support_sources
    from .loader import load_module

    printer = ArrayPrinter()
    names = [f"a{i}" for i in range(len(args))]
    body = printer.doprint(to_atan2(expr).xreplace(dict(zip(args, sp.symbols(names)))))
    source = (BACKENDS["numpy"].imports(printer.modules_used | {"xp"}) + support_sources(printer.functions)
              + f"\n\ndef function({', '.join(names)}):\n    return {body}\n")
    return load_module(source, "array_function").function
