"""The activation registry: one table of parametric families, filled by the family modules.

A row holds only mathematics and its citation: the elementwise function σ (for finite networks,
quadrature and composition), the dual K_σ(q1, q2, c) = E[σ(u)σ(v)] for
(u, v) ~ N(0, [[q1, c], [c, q2]]) when a closed form exists, and, where published, its derivative
kernel K̇_σ = E[σ'(u)σ'(v)]; otherwise K̇_σ = ∂K_σ/∂c (Price's theorem, kernel-math.md §3). A row
without a closed form gets a numerical dual (:mod:`.numerical`). Real parameters reach the
formulas as sympy symbols (so kernels can be differentiated with respect to them); integer
parameters (``monomial(n)``) are structural and arrive as Python ints, word parameters
(``gelu(approximate = tanh)``) as one of their words (a str). A row whose closed form holds only for
some words names them in ``closed_form_when``; the other settings get the numerical dual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Tuple

import sympy as sp

from ..errors import did_you_mean


@dataclass(frozen=True)
class ActivationParam:
    """A parameter of an activation family.

    Attributes:
        name: its keyword.
        default: its default (None: required).
        kind: "real" (a sympy symbol in the formulas), "natural" (an int ≥ 0 fixed at compile
            time, e.g. the degree of a monomial) or "word" (one of ``words``, fixed at compile time).
        words: the words a "word" parameter accepts (its default among them).
    """

    name: str
    default: Optional[object] = None
    kind: str = "real"
    words: Tuple[str, ...] = ()

    def __post_init__(self):
        if (self.kind == "word") != bool(self.words) or (self.words and self.default not in self.words):
            raise ValueError(f"parameter {self.name!r}: a word parameter names its words and defaults to one")


@dataclass(frozen=True)
class ActivationRow:
    """One activation: σ, its dual kernel and (optionally) its derivative kernel.

    Attributes:
        name: the name used in .ntk files.
        params: the family's parameters, in positional order.
        fn: σ(x, **params) as a sympy expression.
        nngp: K_σ(q1, q2, c, **params), or None when there is no closed form (numerical dual).
        nngp_dot: K̇_σ(q1, q2, c, **params) when a closed form is published; None derives ∂K/∂c.
        citation: where the closed form comes from.
        doc: σ in words, for the catalog.
        jumps: σ has jump discontinuities: backpropagation sees σ' = 0 a.e., so K̇ := 0, not ∂K/∂c.
        mean: E[σ(u)] for u ~ N(0, q), as mean(q, **params), when known (affine wrappers use it).
        breakpoints: x where σ is not smooth (kinks, jumps), for kink-aware quadrature.
        variadic: the name of a parameter taking all positional arguments as a tuple
            (``polynomial(c0, c1, ...)``), or None.
        closed_form_when: the settings of the word parameters where ``nngp`` holds, as pairs
            ``(parameter, words)`` (None: every setting); the others get the numerical dual of σ.
    """

    name: str
    params: Tuple[ActivationParam, ...]
    fn: Callable[..., sp.Expr]
    nngp: Optional[Callable[..., sp.Expr]]
    nngp_dot: Optional[Callable[..., sp.Expr]]
    citation: str
    doc: str = ""
    jumps: bool = False
    mean: Optional[Callable[..., sp.Expr]] = None
    breakpoints: Tuple[float, ...] = ()
    variadic: Optional[str] = None
    closed_form_when: Optional[Tuple[Tuple[str, Tuple[str, ...]], ...]] = None

    @property
    def exact(self) -> bool:
        """Whether the row has a closed-form dual (for its default words at least)."""
        return self.nngp is not None

    def exact_for(self, params: Mapping[str, object]) -> bool:
        """Whether the closed form holds for these parameter values (words missing: their defaults)."""
        if self.nngp is None or self.closed_form_when is None:
            return self.nngp is not None
        defaults = {p.name: p.default for p in self.params}
        return all(params.get(name, defaults[name]) in words for name, words in self.closed_form_when)

    def dual(self, q1, q2, cov, /, **params) -> Tuple[sp.Expr, sp.Expr]:
        """(K_σ, K̇_σ) at the given variances and covariance (sympy expressions); closed-form settings only."""
        if not self.exact_for(params):
            raise ValueError(f"activation {self.name!r} has no closed-form dual for {params}")
        k = self.nngp(q1, q2, cov, **params)
        if self.nngp_dot is not None:
            return k, self.nngp_dot(q1, q2, cov, **params)
        if self.jumps:
            return k, sp.S.Zero
        return k, price_derivative(k, cov)


def price_derivative(k: sp.Expr, c: sp.Expr) -> sp.Expr:
    """∂K/∂c (Price's theorem), through a dummy so that c may be any expression."""
    d = sp.Dummy("c")
    return sp.diff(k.subs(c, d), d).subs(d, c)


@dataclass
class Registry:
    """Name -> row; refuses duplicates and answers unknown names with a suggestion."""

    rows: Dict[str, ActivationRow] = field(default_factory=dict)
    aliases: Dict[str, str] = field(default_factory=dict)

    def add(self, row: ActivationRow, aliases: Tuple[str, ...] = ()) -> ActivationRow:
        for name in (row.name, *aliases):
            if name in self.rows or name in self.aliases:
                raise ValueError(f"activation {name!r} is registered twice")
        self.rows[row.name] = row
        for alias in aliases:
            self.aliases[alias] = row.name
        return row

    def get(self, name: str) -> Optional[ActivationRow]:
        return self.rows.get(self.aliases.get(name, name))

    def names(self):
        return list(self.rows) + list(self.aliases)

    def suggestion(self, name: str) -> str:
        return did_you_mean(name, self.names())

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __iter__(self):
        return iter(self.rows.values())


REGISTRY = Registry()
