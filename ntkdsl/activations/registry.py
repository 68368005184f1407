"""The activation registry: one table of parametric families, filled by the family modules.

A row holds only mathematics and its citation: the elementwise function σ (for finite networks and
quadrature), the dual K_σ(q1, q2, c) = E[σ(u)σ(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]), and,
where published, its derivative kernel K̇_σ = E[σ'(u)σ'(v)]; otherwise K̇_σ = ∂K_σ/∂c (Price's
theorem, kernel-math.md §3). Parameters reach the formulas as sympy symbols, so that a kernel can
be differentiated with respect to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import sympy as sp

from ..errors import did_you_mean


@dataclass(frozen=True)
class ActivationParam:
    """A real parameter of an activation family, with its default (None: required)."""

    name: str
    default: Optional[sp.Expr] = None


@dataclass(frozen=True)
class ActivationRow:
    """One activation: σ, its dual kernel and (optionally) its derivative kernel.

    Attributes:
        name: the name used in .ntk files.
        params: the family's parameters, in positional order.
        fn: σ(x, **params) as a sympy expression.
        nngp: K_σ(q1, q2, c, **params).
        nngp_dot: K̇_σ(q1, q2, c, **params) when a closed form is published; None derives ∂K/∂c.
        citation: where the closed form comes from.
    """

    name: str
    params: Tuple[ActivationParam, ...]
    fn: Callable[..., sp.Expr]
    nngp: Callable[..., sp.Expr]
    nngp_dot: Optional[Callable[..., sp.Expr]]
    citation: str
    doc: str = ""

    def dual(self, q1, q2, cov, /, **params) -> Tuple[sp.Expr, sp.Expr]:
        """(K_σ, K̇_σ) at the given variances and covariance (sympy expressions)."""
        k = self.nngp(q1, q2, cov, **params)
        if self.nngp_dot is not None:
            return k, self.nngp_dot(q1, q2, cov, **params)
        return k, _price_derivative(k, cov)


def _price_derivative(k: sp.Expr, c: sp.Expr) -> sp.Expr:
    """∂K/∂c (Price's theorem), through a dummy so that c may be any expression."""
    d = sp.Dummy("c")
    return sp.diff(k.subs(c, d), d).subs(d, c)


@dataclass
class Registry:
    """Name -> row; refuses duplicates and answers unknown names with a suggestion."""

    rows: Dict[str, ActivationRow] = field(default_factory=dict)

    def add(self, row: ActivationRow) -> ActivationRow:
        if row.name in self.rows:
            raise ValueError(f"activation {row.name!r} is registered twice")
        self.rows[row.name] = row
        return row

    def get(self, name: str) -> Optional[ActivationRow]:
        return self.rows.get(name)

    def suggestion(self, name: str) -> str:
        return did_you_mean(name, self.rows)

    def __contains__(self, name: str) -> bool:
        return name in self.rows

    def __iter__(self):
        return iter(self.rows.values())


REGISTRY = Registry()
