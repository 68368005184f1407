"""Whether a numerical dual exists: E[σ(u)²] must be finite, which fails for every variance when σ is
undefined on an interval or has a non-square-integrable singularity (1/x, |x|^(−1/2)).

Singular points are the sign changes and exact zeros of the bases of negative powers and of the
arguments of logarithms (:mod:`.breakpoints`, plus polynomial roots), and any grid point with
|x| ≤ 20 where σ is not finite (farther out, inf/inf in floating point is not a property of σ). At such a point s, σ(x)² ~ |x − s|^p is integrable iff p > −1; p is measured as the
slope of log σ(s ± t)² against log t between t = 1e-6 and t = 1e-10 (times max(1, |s|)): ≤ −0.98
is refused (a power of −0.98 or below is not integrated to the stated accuracy either). Logarithmic
singularities (slope → 0) are integrable but refused too, as not resolved by the quadrature
(|σ(s ± 1e-10)| > 1.2·max(1, |σ(s ± 1e-6)|)). Growth at infinity depends on the variance (e^{x²} has
E[σ(u)²] < ∞ only for q < 1/4): the quadrature refuses it at run time, naming the variance
(:func:`ntkdsl.codegen.support._decayed`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import sympy as sp

from ..errors import SpecError
from .breakpoints import grid, numeric_function, sign_changes

SLOPE_LIMIT = -0.98
OFFSETS = (1e-6, 1e-10)
UNBOUNDED = 1.2  # |σ(s ± 1e-10)| over |σ(s ± 1e-6)|: log|x| gives 1.67, a bounded σ about 1
NAN_RADIUS = 20.0  # grid values beyond it may be overflow artefacts (inf/inf in e^{−x}-type terms)


def _candidates(expr: sp.Expr, x: sp.Symbol, values: np.ndarray, points: np.ndarray):
    """Points where σ may be infinite: zeros of negative-power bases and log arguments, non-finite grid values."""
    bad = ~np.isfinite(values)
    isolated = bad & ~np.roll(bad, 1) & ~np.roll(bad, -1)  # a run of them is overflow in the tails
    found = set(points[isolated].tolist())
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Pow) and node.exp.is_negative:
            base = node.base
        elif isinstance(node, sp.log):
            base = node.args[0]
        else:
            continue
        while isinstance(base, sp.Abs):
            base = base.args[0]
        if not base.has(x):
            continue
        if base.is_polynomial(x) and sp.Poly(base, x).degree() > 0:
            found.update(float(r) for r in sp.real_roots(sp.Poly(base, x)))
        else:
            found.update(sign_changes(sp.Lambda(x, base)))
    return sorted(found)


def singularity(fn: sp.Lambda, name: str = "σ") -> Optional[str]:
    """Why E[σ(u)²] is infinite, undefined or unresolved for every variance, or None (fn without
    parameter symbols)."""
    (x,) = fn.variables
    sigma = numeric_function(fn)
    points = grid()
    points = points[np.abs(points) <= NAN_RADIUS]
    values = sigma(points)
    nan = np.isnan(values)
    if nan.sum() > 1:  # a single NaN node is a removable or singular point, handled below
        at = points[nan][np.argmin(np.abs(points[nan]))]
        return f"E[{name}(u)²] is undefined: {name}(x) is not a real number for some x ({name}({at:.6g}) is not)"
    for s in _candidates(fn.expr, x, values, points):
        scale = max(1.0, abs(s))
        for side in (-1.0, 1.0):
            near, far = (sigma(np.array([s + side * t * scale]))[0] for t in OFFSETS[::-1])
            if not (np.isfinite(near) and np.isfinite(far)):
                return f"E[{name}(u)²] is infinite: {name} is infinite or undefined next to x = {s:.6g}"
            if near == 0 or far == 0:
                continue
            slope = (np.log(near**2) - np.log(far**2)) / (np.log(OFFSETS[1]) - np.log(OFFSETS[0]))
            if slope <= SLOPE_LIMIT:
                at = "|x|" if s == 0 else f"|x − {s:.6g}|"
                return f"E[{name}(u)²] is infinite: {name}(x)² grows like {at}^{slope:.3g} near x = {s:.6g}, which is not integrable"
            if abs(near) > UNBOUNDED * max(1.0, abs(far)):
                return (f"{name} is unbounded near x = {s:.6g}, an integrable singularity (such as a logarithm) that "
                        "the quadrature does not resolve to its stated bound")
    return None


def verify(program) -> None:
    """Refuse, with the layer's location, a numerical dual whose expectation is infinite for every
    variance: E[σ(u)²] (the NNGP) or E[σ'(u)²] (K̇, the NTK)."""
    from ..symbolic.functions import GaussianExpectation

    for step in program.steps:
        values = dict(step.parameters)
        for target, expr in step.assignments:
            for node in expr.atoms(GaussianExpectation):
                f = node.args[0].xreplace(values)
                if f.expr.free_symbols - set(f.variables):
                    continue
                which = "σ'" if str(target).startswith("nngp_dot") else "σ"
                reason = singularity(f, which)
                if reason is None:
                    continue
                kernel = "the NTK needs E[σ'(u)σ'(v)]" if which == "σ'" else "the NNGP needs E[σ(u)σ(v)]"
                raise SpecError(f"{reason}, for {which} = {f.expr} ({kernel})",
                                step.layer.span if step.layer is not None else None)
