"""Elementwise layers: an activation of the registry (``relu``, ``erf(a = 2)``) or a custom one
(``activation NAME(x, p = ...) = EXPR``), both lowered from the activation tables, not from the layer
table (their names are the activations').

Kernel rule (kernel-math.md §3): Σ' = K_σ(q1, q2, c), Θ' = Θ·K̇_σ, the dual from the activation
registry or derived from the expression (:mod:`ntkdsl.activations.dual`). Finite width: y = σ(z),
backward g·σ'(z) with σ' = 0 at jumps (§3, §5), σ and σ' compiled by :mod:`.sigma`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Dict, Iterable, Mapping, Optional, Tuple

import numpy as np
import sympy as sp

from ..activations import REGISTRY, ActivationRow
from ..activations.dual import function_dual, row_dual
from ..algebra.state import KernelState, elementwise_kernel
from ..errors import Span, StructureSpecError
from ..ir.checks import degree
from ..ir.layer import Layer, span_field
from ..ir.printer import format_value
from .arrays import namespace, to_numpy
from .sigma import Elementwise, compile_elementwise


class _Elementwise(Layer):
    """What every elementwise σ shares: the facts of §3 and the finite-width rules."""

    elementwise = True
    entrywise = True
    # with position masks σ(0)² may reach masked positions (neural-tangents remasks some activations): every
    # reader excludes them (the next affine layer remasks, pools and layer norm weigh by the mask, flatten masks)
    masking = "keep"

    def gaussian_input_needed(self) -> Optional[str]:
        return f"activation '{self.name}' needs a Gaussian input (an affine layer such as dense before it)"

    def verified(self, shape, gaussian, why, check):
        return False, f"the output of activation '{self.name}'"

    def parameter_prefix(self) -> str:
        return f"{self.name}_"

    def forward(self, params, x):
        return elementwise_forward(self, x)

    def backward(self, params, cache, g):
        return elementwise_backward(self, cache, g)


@dataclass(frozen=True)
class Activation(_Elementwise):
    """An elementwise nonlinearity σ from the activation registry, with its parameter values.

    ``args`` holds every parameter of the row in order: a sympy number, a word (str) for a word
    parameter, or for a variadic parameter (``polynomial(c0, c1, ...)``) a tuple of numbers.
    """

    name: str
    args: Tuple[Tuple[str, object], ...] = ()
    span: Optional[Span] = span_field()

    @property
    def row(self) -> ActivationRow:
        return REGISTRY.rows[self.name]

    def parameters(self) -> Dict[str, sp.Expr]:
        """The real parameters, which the symbolic program keeps as symbols (variadic ones numbered)."""
        kinds = {p.name: p.kind for p in self.row.params}
        out: Dict[str, sp.Expr] = {}
        for name, value in self.args:
            if isinstance(value, tuple):
                out.update({f"{name}{i}": v for i, v in enumerate(value)})
            elif kinds.get(name, "real") == "real":
                out[name] = value
        return out

    def row_arguments(self, p: Mapping[str, sp.Symbol]) -> Dict[str, object]:
        """The keyword arguments of the row's formulas: symbols for real parameters, ints for natural
        ones, words (str) for word ones."""
        kinds = {q.name: q.kind for q in self.row.params}
        out: Dict[str, object] = {}
        for name, value in self.args:
            if isinstance(value, tuple):
                out[name] = tuple(p[f"{name}{i}"] for i in range(len(value)))
            elif kinds.get(name, "real") == "real":
                out[name] = p[name]
            else:
                out[name] = value if kinds[name] == "word" else int(value)
        return out

    def elementwise(self, p: Mapping[str, sp.Symbol]) -> sp.Lambda:
        """σ as a one-variable Lambda, parameters as the given symbols."""
        x = sp.Symbol("x", real=True)
        return sp.Lambda(x, self.row.fn(x, **self.row_arguments(p)))

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """kernel-math.md §3: Σ' = K_σ(q1, q2, c), Θ' = Θ·K̇_σ(q1, q2, c); diagonals at c = q."""
        params = self.row_arguments(p)
        return elementwise_kernel(s, lambda q1, q2, c: row_dual(self.row, params, q1, q2, c))

    def check(self) -> None:
        if self.name not in REGISTRY:
            raise StructureSpecError(f"unknown activation '{self.name}'", self.span)

    def structural_degree(self) -> int:
        """The structural degree (:func:`ntkdsl.ir.checks.degree`) of σ in its variable."""
        x = sp.Symbol("x", real=True)
        kinds = {p.name: p.kind for p in self.row.params}
        args = {name: int(v) if kinds.get(name) == "natural" else v for name, v in self.args}
        return degree(self.row.fn(x, **args), x)

    def format(self, indent: str = "") -> str:
        if not self.args:
            return self.name
        args = []
        for k, v in self.args:
            if isinstance(v, tuple):  # a variadic parameter: positional values
                args += [format_value(x) for x in v]
            elif isinstance(v, str):  # a word parameter (gelu(approximate = tanh))
                args.append(f"{k} = {v}")
            else:
                args.append(f"{k} = {format_value(v)}")
        return f"{self.name}({', '.join(args)})"

    def with_parameters(self, values: Mapping[str, sp.Expr]) -> "Activation":
        return replace(self, args=tuple((p, values.get(p, v)) for p, v in self.args))


@dataclass(frozen=True)
class CustomActivation(_Elementwise):
    """A user-defined elementwise σ: ``activation NAME(x, p = ...) = EXPR`` applied with values for p.

    ``body`` is a sympy expression over real symbols named ``variable`` and each parameter.
    """

    name: str
    variable: str
    body: sp.Expr
    args: Tuple[Tuple[str, sp.Expr], ...] = ()
    span: Optional[Span] = span_field()

    def parameters(self) -> Dict[str, sp.Expr]:
        return dict(self.args)

    def elementwise(self, p: Mapping[str, sp.Symbol]) -> sp.Lambda:
        x = sp.Symbol("x", real=True)
        swap = {sp.Symbol(self.variable, real=True): x}
        swap.update({sp.Symbol(name, real=True): p[name] for name, _ in self.args})
        return sp.Lambda(x, self.body.xreplace(swap))

    def kernel(self, s: KernelState, p: Mapping[str, sp.Symbol]) -> KernelState:
        """The dual of σ: exact when ntkdsl can derive it, numerical otherwise (activations/dual.py)."""
        fn = self.elementwise(p)
        return elementwise_kernel(s, lambda q1, q2, c: function_dual(fn, q1, q2, c))

    def structural_degree(self) -> int:
        return degree(self.body, sp.Symbol(self.variable, real=True))

    def format(self, indent: str = "") -> str:
        if not self.args:
            return self.name
        return f"{self.name}({', '.join(f'{k} = {format_value(v)}' for k, v in self.args)})"

    def definitions(self) -> Iterable[str]:
        """``activation NAME(x, p, ...) = BODY``: parameters without defaults (every call names them)."""
        params = ", ".join([self.variable] + [k for k, _ in self.args])
        return (f"activation {self.name}({params}) = {format_value(self.body)}",)

    def with_parameters(self, values: Mapping[str, sp.Expr]) -> "CustomActivation":
        return replace(self, args=tuple((p, values.get(p, v)) for p, v in self.args))


@lru_cache(maxsize=None)
def _sigma(node) -> Elementwise:
    """σ, σ' of an activation node (frozen, hashable), its parameters replaced by their values."""
    return compile_elementwise(node.elementwise(node.parameters()))


def _on_host(fn, x):
    """fn (a NumPy/SciPy function from :mod:`.functions`) at x, on the host for a device array.

    σ and σ' are lambdified over NumPy and SciPy (with an mpmath fallback for overflow), so a CuPy
    array makes a round trip; the layers with parameters, where the time goes, stay on the device.
    """
    xp = namespace(x)
    return fn(x) if xp is np else xp.asarray(fn(to_numpy(x)))


def elementwise_forward(node, x: np.ndarray):
    """y = σ(x); the cache is the pre-activation x (σ' is evaluated only when needed)."""
    return _on_host(_sigma(node).sigma, x), x


def elementwise_backward(node, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """g·σ'(x), σ' broadcast over the m axis; σ' = 0 at jumps (kernel-math.md §3)."""
    return g * namespace(g).expand_dims(_on_host(_sigma(node).sigma_prime, x), 1)

