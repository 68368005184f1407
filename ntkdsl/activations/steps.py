"""The exact dual of a piecewise-constant σ: step and sign of any function of x, and their combinations.

σ is piecewise constant by structure when, with every outermost step/sign node replaced by a
symbol, no x remains (``step(tanh(x))``, ``sign(x**3 − 1)``, ``2*step(erf(x) + 0.2) − 1``). Its
breakpoints r_1 < … < r_n are the sign changes of those nodes' arguments
(:mod:`.breakpoints`), and with L0 = σ(−∞) and the jumps d_k = σ(r_k+) − σ(r_k−),

    σ(x) = L0 + Σ_k d_k·H(x − r_k)
    E[σ(u)σ(v)] = L0² + L0·Σ_k d_k·(P(u > r_k) + P(v > r_k)) + Σ_{k,l} d_k·d_l·P(u > r_k, v > r_l)

(linearity of expectation). P(u > r) = erfc(r/√(2q))/2, and the orthant probability, with
h = a/√q1, k = b/√q2, is Owen's (1956, eq. 2.1) formula for Φ₂(−h, −k; ρ):

    P(u > a, v > b) = ½Φ(−h) + ½Φ(−k) − T(h, a_h) − T(k, a_k) − β,
    a_h = (b·q1 − c·a)/(a·√(q1q2 − c²)),  a_k = (a·q2 − c·b)/(b·√(q1q2 − c²)),
    β = 0 if ab > 0 or (ab = 0 and a + b ≤ 0), else ½;

at a = 0, T(0, a_h) = −sign(b)/4 (Owen's convention for h = 0), likewise at b = 0, and at
a = b = 0 the quadrant probability (π − θ)/(2π) (Sheppard 1899). T takes its second argument as an
angle (:class:`ntkdsl.algebra.functions.owens_t_angle`), so nothing divides by √(q1q2 − c²): the
formula holds at ρ = ±1 and on the diagonal. It is a covariance of bounded features, so the kernel
is positive semi-definite up to rounding (the quadrature of a jump is not). K̇ := 0 (σ' = 0 a.e.).
"""

from __future__ import annotations

from functools import lru_cache
from typing import List, Optional, Tuple

import numpy as np
import sympy as sp

from ..algebra.functions import GaussianExpectation, angle, perp
from ..algebra.special import owens_t_angle
from .breakpoints import MAX_CHANGES, numeric_function, sign_changes

_JUMPS = (sp.Heaviside, sp.sign)


def jump_locators(expr: sp.Expr, x: sp.Symbol) -> Optional[List[sp.Lambda]]:
    """Locators of the outermost step/sign nodes when σ is piecewise constant by structure, else None."""
    nodes = []

    def walk(e):
        if isinstance(e, _JUMPS):
            nodes.append(e)
            return
        for a in e.args:
            walk(a)

    walk(expr)
    if not nodes:
        return None
    rest = expr.xreplace({n: sp.Dummy() for n in nodes})
    if rest.has(x):
        return None
    return [sp.Lambda(x, n.args[0]) for n in nodes if n.args[0].has(x)]


def pieces(fn: sp.Lambda, locators, known=()) -> Optional[Tuple[float, Tuple[Tuple[float, float], ...]]]:
    """(L0, ((r_k, d_k), ...)) of a piecewise-constant σ with numeric locators, or None when the
    breakpoints are too many to trust (an oscillating argument) or a level is not a finite number."""
    roots = set(float(k) for k in known)
    for loc in locators:
        found = sign_changes(loc)
        if len(found) >= MAX_CHANGES:
            return None
        roots.update(found)
    r = np.array(sorted(roots))
    if r.size:
        ends = [r[0] - max(1.0, abs(r[0])), r[-1] + max(1.0, abs(r[-1]))]
        probe = np.concatenate([[ends[0]], (r[:-1] + r[1:]) / 2, [ends[1]]])
    else:
        probe = np.array([0.0])
    levels = numeric_function(fn)(probe)
    if not np.all(np.isfinite(levels)):
        return None
    jumps = tuple((float(rk), float(d)) for rk, d in zip(r, np.diff(levels)) if d != 0)
    return float(levels[0]), jumps


def _upper(r: float, q) -> sp.Expr:
    """P(u > r) for u ~ N(0, q)."""
    return sp.S.Half if r == 0 else sp.erfc(sp.Float(r) / sp.sqrt(2 * q)) / 2


def _owen_term(a: float, b: float, q1, q2, c) -> sp.Expr:
    """T(h, a_h) of the orthant formula (module docstring), h = a/√q1, second argument as an angle."""
    if a == 0:
        return -sp.S(int(np.sign(b))) / 4
    fa, fb = sp.Float(a), sp.Float(b)
    phi = sp.atan2(int(np.sign(a)) * (fb * q1 - c * fa), abs(fa) * perp(c, q1 * q2))
    return owens_t_angle(abs(fa) / sp.sqrt(q1), phi)


def orthant(a: float, b: float, q1, q2, c) -> sp.Expr:
    """P(u > a, v > b) for (u, v) ~ N(0, [[q1, c], [c, q2]]) (Owen 1956; module docstring)."""
    if a == 0 and b == 0:
        return (sp.pi - angle(c, q1 * q2)) / (2 * sp.pi)
    beta = sp.S.Zero if a * b > 0 or (a * b == 0 and a + b <= 0) else sp.S.Half
    return (_upper(a, q1) + _upper(b, q2)) / 2 - _owen_term(a, b, q1, q2, c) - _owen_term(b, a, q2, q1, c) - beta


def step_dual(level0: float, jumps, q1, q2, c) -> sp.Expr:
    """E[σ(u)σ(v)] for σ(x) = L0 + Σ d_k·H(x − r_k) (module docstring)."""
    l0 = sp.Float(level0)
    k = l0**2 + l0 * sum(sp.Float(d) * (_upper(r, q1) + _upper(r, q2)) for r, d in jumps)
    for ra, da in jumps:
        for rb, db in jumps:
            k += sp.Float(da) * sp.Float(db) * orthant(ra, rb, q1, q2, c)
    return k


def resolve(f: sp.Lambda, g: sp.Lambda, q1, q2, c, marks):
    """What E[f(u)·g(v)] becomes once its functions and breakpoints are numeric (every parameter has
    a value): the closed form when f = g is piecewise constant, else the breakpoints as a tuple of
    numbers (locators resolved, :func:`.breakpoints.resolve`); None while parameters remain."""
    from .breakpoints import is_resolvable, resolve as numbers

    free = (f.expr.free_symbols - set(f.variables)) | (g.expr.free_symbols - set(g.variables))
    if free or not is_resolvable(marks):
        return None
    if f == g:
        (x,) = f.variables
        locators = jump_locators(f.expr, x)
        if locators is not None:
            found = _cached_pieces(f, tuple(locators), tuple(m for m in marks if not isinstance(m, sp.Lambda)))
            if found is not None:
                return step_dual(*found, q1, q2, c)
    return sp.Tuple(*(sp.Float(v) for v in numbers(marks)))


@lru_cache(maxsize=256)
def _cached_pieces(fn, locators, known):
    return pieces(fn, locators, known)


GaussianExpectation.resolvers.append(resolve)  # numeric step functions and breakpoints resolve at rebuild
