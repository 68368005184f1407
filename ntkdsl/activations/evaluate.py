"""Numerical evaluation of any registry row's dual kernels, for tests, tools and the catalog."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import sympy as sp

from ..arraycode.printer import array_function
from .registry import REGISTRY, ActivationRow


def _row(row) -> ActivationRow:
    return REGISTRY.get(row) if isinstance(row, str) else row


def _kwargs(row: ActivationRow, params: dict) -> dict:
    """Parameter values as the row's formulas take them: exact sympy numbers, ints for natural ones, words."""
    out = {}
    for p in row.params:
        value = params.get(p.name, p.default)
        if value is None:
            raise TypeError(f"activation {row.name!r} needs the parameter {p.name!r}")
        if p.kind == "word" and value not in p.words:
            raise ValueError(f"activation {row.name!r}: {p.name} must be one of {', '.join(p.words)}, not {value!r}")
        out[p.name] = int(value) if p.kind == "natural" else value if p.kind == "word" else sp.nsimplify(value)
    if row.variadic is not None:
        out[row.variadic] = tuple(sp.nsimplify(v) for v in params[row.variadic])
    return out


def evaluate_dual(row, q1, q2, c, /, **params) -> Tuple[np.ndarray, np.ndarray]:
    """(K_σ, K̇_σ) of a row at arrays of variances q1, q2 and covariances c (broadcast together).

    Args:
        row: a registry row or its name.
        q1, q2, c: array-likes.
        **params: the row's parameters (defaults where omitted).

    Returns:
        Two float64 arrays.
    """
    from .dual import row_dual

    row = _row(row)
    args = _kwargs(row, params)
    q1, q2, c = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (q1, q2, c)))
    s1, s2 = sp.symbols("q1 q2", nonnegative=True)
    sc = sp.Symbol("c", real=True)
    dual = row_dual(row, args, s1, s2, sc)
    return tuple(np.broadcast_to(array_function(e, (s1, s2, sc))(q1, q2, c), q1.shape).astype(np.float64)
                 for e in (dual.nngp, dual.nngp_dot))


def evaluate_sigma(row, x, derivative: bool = False, **params) -> np.ndarray:
    """σ(x) (or σ'(x), with the derivative of a jump taken as 0) of a row, elementwise."""
    row = _row(row)
    args = _kwargs(row, params)
    t = sp.Symbol("x", real=True)
    expr = row.fn(t, **args)
    if derivative:
        expr = sp.diff(expr, t).replace(sp.DiracDelta, lambda *a: sp.S.Zero)
    x = np.asarray(x, dtype=np.float64)
    return np.broadcast_to(array_function(expr, (t,))(x), x.shape).astype(np.float64)
