"""Where an elementwise σ is not smooth, found numerically when symbolic solving cannot.

σ has a kink or a jump only where the argument a(x) of one of its max/min/abs/step/sign nodes
changes sign (a zero without a sign change leaves |a|, max(a, 0), H(a) smooth or changes them on a
set of measure zero). Those arguments are kept as *locators* ``Lambda(x, a(x))``; once every
parameter has a value, :func:`sign_changes` finds their sign changes on a fine grid and refines
each by bisection.

Grid: x = sinh(t) with t uniform over [−asinh(1e8), asinh(1e8)] (2¹⁵ + 1 points, so x = 0 is a
node): spacing 1.2e-3 near 0 and 1.2e-3·|x| elsewhere. Bisection on "the sign class changed" (60
halvings) locates a change to ~1e-16 relative, for continuous and discontinuous a alike (a pole of
a also counts: σ may jump there). At most MAX_CHANGES changes are kept, those nearest 0.
Limitation (docs/numerical-duals.md): two sign changes closer than the grid spacing cancel and are
missed, unless symbolic solving found them (polynomial arguments are solved exactly,
:func:`ntkdsl.activations.dual.kinks`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import numpy as np
import sympy as sp

SEARCH_RADIUS = 1e8
GRID_POINTS = 2**15 + 1
BISECTIONS = 60
MAX_CHANGES = 32  # more (an oscillating argument such as sin(x)): only the 32 nearest 0 are kept


def grid() -> np.ndarray:
    """The sinh grid over [−SEARCH_RADIUS, SEARCH_RADIUS], x = 0 included."""
    t = np.linspace(-np.arcsinh(SEARCH_RADIUS), np.arcsinh(SEARCH_RADIUS), GRID_POINTS)
    x = np.sinh(t)
    x[GRID_POINTS // 2] = 0.0
    return x


def numeric_function(fn: sp.Lambda):
    """σ as a NumPy function through the generated-code printer (the same arithmetic as the kernels)."""
    from ..arraycode.printer import array_function

    (x,) = fn.variables
    f = array_function(fn.expr, (x,))

    def call(values):
        values = np.asarray(values, dtype=np.float64)
        with np.errstate(all="ignore"):
            return np.broadcast_to(np.asarray(f(values), dtype=np.float64), values.shape)

    return call


def _sign(values: np.ndarray) -> np.ndarray:
    """−1, 0, 1, or 2 for a value that is not a number (a pole or an undefined point)."""
    return np.where(np.isnan(values), 2, np.sign(values)).astype(np.int8)


@lru_cache(maxsize=512)
def sign_changes(locator: sp.Lambda) -> Tuple[float, ...]:
    """Sorted x where the sign of ``locator`` (a Lambda without free symbols) changes, |x| ≤ 1e8."""
    a = numeric_function(locator)
    x = grid()
    s = _sign(a(x))
    cells = np.nonzero(s[1:] != s[:-1])[0]
    roots = []
    for i in cells:
        if (s[i + 1] == 0 and i + 2 < len(s) and s[i + 2] == s[i]) or (s[i] == 0 and i > 0 and s[i - 1] == s[i + 1]):
            continue  # an isolated zero on a grid node between equal signs: no change of sign
        lo, hi, left = x[i], x[i + 1], s[i]
        for _ in range(BISECTIONS):
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):
                break
            if _sign(a(np.array([mid])))[0] == left:
                lo = mid
            else:
                hi = mid
        roots.append(float(hi if s[i + 1] == 0 and hi == x[i + 1] else lo if left == 0 and lo == x[i] else 0.5 * (lo + hi)))
    merged = []
    for r in sorted(roots):  # a zero node between two signs is found from both sides
        if not merged or abs(r - merged[-1]) > 1e-12 * (1 + abs(r)):
            merged.append(r)
    return tuple(sorted(sorted(merged, key=abs)[:MAX_CHANGES]))


def resolve(marks) -> Tuple[float, ...]:
    """Numbers for a tuple of breakpoints: numbers stay, locators become their sign changes."""
    out = set()
    for m in marks:
        if isinstance(m, sp.Lambda):
            out.update(sign_changes(m))
        else:
            out.add(float(m))
    return tuple(sorted(out))


def is_resolvable(marks) -> bool:
    """Every breakpoint is a number or a locator without free parameter symbols."""
    return all((m.expr.free_symbols <= set(m.variables)) if isinstance(m, sp.Lambda) else m.is_number for m in marks)
