"""Whether a numerical dual exists and is resolved: E[σ(u)²] must be finite, which fails for every
variance when σ is undefined on an interval or has a non-square-integrable singularity (1/x, |x|^(−1/2)).

Singular points are the sign changes and exact zeros of the bases of negative powers and of the
arguments of logarithms (:mod:`.breakpoints`, plus polynomial roots), and any grid point with
|x| ≤ 20 where σ is not finite (farther out, inf/inf in floating point is not a property of σ). At
such a point s, with t = max(1, |s|):

* σ is unbounded there when it is not finite at s ± 1e-12·t or larger there than 1.001 times its
  size at s ± 1e-6·t: the same test by which the quadrature chooses the points it grades
  geometrically (:func:`ntkdsl.arraycode.mehler._singular`);
* σ(x)² ~ |x − s|^p is integrable iff p > −1; p is measured as the slope of log σ(s ± τ)² against
  log τ between τ = 1e-6·t and 1e-10·t: ≤ −0.98 is refused as infinite;
* an integrable unbounded singularity is integrated when s is one of the points the quadrature
  grades (a kink of the dual: :func:`ntkdsl.activations.dual.kinks` adds the real zeros of polynomial
  log arguments and negative-power bases) and the error of the 16-node rule on its finest panel
  [s, s ± τ] (τ = 1e-24 at s = 0, 2⁻⁴⁰·|s| elsewhere: how close graded panels and float64 arguments
  get to s) is at most 1e-11·max(1, σ(s ± 1)²), a tenth of the stated bound: with σ(x)² ≈ C·|x − s|^p
  there (p measured between τ and 1e4·τ), that panel holds τ·σ(s ± τ)²/(p + 1) of E[σ²], integrated
  with the relative error of Gauss–Legendre on x^p over [0, 1]. log|x|, log²|x|, |x|^(−1/4) and
  log|x − 0.3| pass; |x|^(−0.35) (4e-8 off, measured) and |x − 0.3|^(−1/4) (2e-8 off) are refused.

Growth at infinity depends on the variance (e^{x²} has E[σ(u)²] < ∞ only for q < 1/4): the
quadrature refuses it at run time, naming the variance (:func:`ntkdsl.arraycode.mehler._decays`).
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from ..errors import SpecError
from .breakpoints import grid, is_resolvable, numeric_function, resolve, sign_changes

SLOPE_LIMIT = -0.98
OFFSETS = (1e-6, 1e-10)
UNBOUNDED = (1e-6, 1e-12, 1.001)  # |σ(s ± 1e-12)| > 1.001·|σ(s ± 1e-6)|: log|x| gives 2, bounded σ ≤ 1
RESOLVED = (1e-24, 2.0 ** -40, 1e-11)  # the finest panel at s = 0 and relative to s; its allowed error (bound/10)
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


def singularity(fn: sp.Lambda, name: str = "σ", graded=None) -> str | None:
    """Why E[σ(u)²] is infinite, undefined or not resolved for every variance, or None (fn without
    parameter symbols). ``graded``: the points the quadrature grades (the dual's kinks; None: any)."""
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
            at = "|x|" if s == 0 else f"|x − {s:.6g}|"
            if slope <= SLOPE_LIMIT:
                return f"E[{name}(u)²] is infinite: {name}(x)² grows like {at}^{slope:.3g} near x = {s:.6g}, which is not integrable"
            reason = _unresolved(sigma, s, side, name, at, graded)
            if reason is not None:
                return reason
    return None


def _unresolved(sigma, s: float, side: float, name: str, at: str, graded) -> str | None:
    """Why an integrable singularity at s (approached from ``side``) is not integrated to the stated
    bound, or None (σ bounded there, or graded and resolved: see the module docstring)."""
    scale = max(1.0, abs(s))
    near, far = (abs(sigma(np.array([s + side * t * scale]))[0]) for t in UNBOUNDED[1::-1])
    if near <= UNBOUNDED[2] * far:
        return None
    if graded is not None and not any(abs(s - g) <= 1e-12 * scale for g in graded):
        return (f"{name} is unbounded near x = {s:.6g}, an integrable singularity that the quadrature does not "
                "locate (only real zeros of polynomial log arguments and negative-power bases are graded)")
    tau = RESOLVED[0] if s == 0 else RESOLVED[1] * abs(s)
    inner, outer = (sigma(np.array([s + side * t]))[0] ** 2 for t in (tau, 1e4 * tau))
    p = max(np.log(inner / outer) / np.log(1e-4), -0.99) if inner > 0 and outer > 0 else 0.0  # σ² ~ τ^p there
    nodes, weights = np.polynomial.legendre.leggauss(16)
    error = abs(np.sum(weights / 2 * ((nodes + 1) / 2) ** p) * (p + 1) - 1)  # Gauss–Legendre on x^p over [0, 1]
    part = tau * inner / (p + 1)  # ∫ σ² over the finest panel [s, s ± τ]
    if not part * error <= RESOLVED[2] * max(1.0, sigma(np.array([s + side]))[0] ** 2):
        return (f"E[{name}(u)²] is finite, but {name}(x)² grows too fast near x = {s:.6g} (like {at}^{p:.3g}) for the "
                f"quadrature to reach its stated bound (its finest panel there, {tau:.2g} wide, holds {part:.2g} of "
                "E[σ²] at the 16-node rule's accuracy)")
    return None


def verify(program) -> None:
    """Refuse, with the layer's location, a numerical dual whose expectation is infinite for every
    variance: E[σ(u)²] (the NNGP) or E[σ'(u)²] (K̇, the NTK)."""
    from ..algebra.functions import GaussianExpectation

    for step in program.steps:
        values = dict(step.parameters)
        for target, expr in step.assignments:
            for node in expr.atoms(GaussianExpectation):
                f = node.args[0].xreplace(values)
                if f.expr.free_symbols - set(f.variables):
                    continue
                which = "σ'" if str(target).startswith("nngp_dot") else "σ"
                marks = node.args[5].xreplace(values)
                graded = resolve(marks) if is_resolvable(marks) else None
                reason = singularity(f, which, graded)
                if reason is None:
                    continue
                kernel = "the NTK needs E[σ'(u)σ'(v)]" if which == "σ'" else "the NNGP needs E[σ(u)σ(v)]"
                raise SpecError(f"{reason}, for {which} = {f.expr} ({kernel})",
                                step.layer.span if step.layer is not None else None)
