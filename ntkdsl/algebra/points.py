"""The same-point indicator δ(x, x′) of a kernel request: 1 where an input point meets itself (the
pair (i, i) of a self-kernel request, x2 None, or every pair of a diagonal request), 0 otherwise.

Decided by index, never by value: two equal rows i ≠ j of x1, or x1 against a copy of itself, are
different points (neural-tangents' Dropout keys on the same fact, its ``x1_is_x2``). A kernel rule
that differs on the pairs (x, x) of one point with itself (dropout's fresh mask per forward pass,
kernel-math.md §2) multiplies by :data:`SAME_POINT`; every code generator defines it per pair: an
(N1, N2) identity or 0 in the array modules, ``i == j`` within a self request in the fused loops,
1 in ``kernels_diagonal``.
"""

from __future__ import annotations

import sympy as sp


class SamePoint(sp.Symbol):
    """The symbol δ(x, x′) (a printer case of its own: each backend writes its per-pair definition)."""

    def _latex(self, printer):
        return r"\delta_{x x'}"


SAME_POINT = SamePoint("same_point", nonnegative=True)


def has_same_point(exprs) -> bool:
    """Whether any of ``exprs`` reads the same-point indicator."""
    return any(isinstance(e, sp.Basic) and e.has(SAME_POINT) for e in exprs)


__all__ = ["SAME_POINT", "SamePoint", "has_same_point"]
