"""Overflow-safe forms of elementwise functions written with exp: the logistic function and softplus.

Activations and their derivatives are written with exp (SiLU x/(1 + e^(−x)), its derivative
x·e^(−x)/(1 + e^(−x))² + 1/(1 + e^(−x)), softplus log(1 + e^x)); printed as written they overflow
once |x| passes log(float64 max) ≈ 709.8 (e^(−x) = inf, inf/inf = NaN), so a numerical dual would be
refused at pre-activation variances above ~3e3. :func:`stabilize` rewrites them in terms of

* the logistic function L(a) = 1/(1 + e^(−a)) ∈ [0, 1] (:class:`Logistic`), by the substitution
  e^a = L(a)/L(−a), i.e. e^a = s/(1 − s) with s = L(a) (so 1 + e^a = 1/(1 − s)): a rational function
  of e^a whose rewritten denominator does not depend on s becomes a polynomial in s, its factors s
  and 1 − s printed as L(a) and L(−a) (e.g. e^(−a)/(1 + e^(−a))² = L(a)·L(−a));
* softplus S(a) = log(1 + e^a) = max(a, 0) + log1p(e^(−|a|)) (:class:`Softplus`),

which stay finite for every finite a. Their derivatives (L' = L(a)·L(−a), S' = L(a); Goodfellow,
Bengio & Courville, Deep Learning, §3.10) keep the stable forms. Expressions without such patterns
come back unchanged; a rewrite whose denominator would depend on s (e.g. e^a − 1) is not made.
"""

from __future__ import annotations

import sympy as sp

from .functions import _powered


class Logistic(sp.Function):
    """L(a) = 1/(1 + e^(−a)), the logistic function; L(−a) = 1 − L(a), L'(a) = L(a)·L(−a)."""

    nargs = 1

    def fdiff(self, argindex=1):
        (a,) = self.args
        return Logistic(a) * Logistic(-a)

    def _eval_rewrite_as_exp(self, a, **kwargs):
        return 1 / (1 + sp.exp(-a))

    def _eval_evalf(self, prec):
        return self._eval_rewrite_as_exp(*self.args)._eval_evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real

    @_powered
    def _latex(self, printer):
        return rf"\frac{{1}}{{1 + e^{{-{printer.parenthesize(self.args[0], 1000)}}}}}"


class Softplus(sp.Function):
    """S(a) = log(1 + e^a); S'(a) = L(a)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return Logistic(self.args[0])

    def _eval_rewrite_as_exp(self, a, **kwargs):
        return sp.log(1 + sp.exp(a))

    def _eval_evalf(self, prec):
        return self._eval_rewrite_as_exp(*self.args)._eval_evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real

    @_powered
    def _latex(self, printer):
        return rf"\log\left(1 + e^{{{printer._print(self.args[0])}}}\right)"


def stabilize(expr: sp.Expr) -> sp.Expr:
    """expr with log(1 + e^a) as :class:`Softplus` and rational functions of e^a as polynomials in
    :class:`Logistic` where that removes e^a from every denominator; otherwise expr itself."""
    if not expr.has(sp.exp):
        return expr
    expr = expr.replace(lambda e: isinstance(e, sp.log) and _softplus_argument(e.args[0]) is not None,
                        lambda e: Softplus(_softplus_argument(e.args[0])))
    return _walk(expr)


def _softplus_argument(e):
    """a where e = 1 + e^a, else None."""
    if isinstance(e, sp.Add) and len(e.args) == 2 and sp.S.One in e.args:
        (other,) = [t for t in e.args if t is not sp.S.One]
        if isinstance(other, sp.exp):
            return other.args[0]
    return None


def _walk(e):
    """Rewrite the rational skeletons (Add, Mul, integer Pow) of e, arguments of functions first."""
    if e.is_Atom or not e.has(sp.exp):
        return e
    if isinstance(e, (sp.Add, sp.Mul)) or (isinstance(e, sp.Pow) and e.exp.is_Integer):
        return _skeleton(e)
    return e.func(*[_walk(a) for a in e.args])


def _skeleton(e):
    """e (an Add, Mul or integer Pow) with each base a of its e^(±a) rewritten in Logistic(a) where
    the result has no denominator in L(a); every non-rational subterm is opaque (rewritten on its own)."""
    opaque = {}

    def hide(node):
        if node.is_Atom or isinstance(node, sp.exp):
            return node.func(*[_walk(a) for a in node.args]) if isinstance(node, sp.exp) else node
        if isinstance(node, (sp.Add, sp.Mul)) or (isinstance(node, sp.Pow) and node.exp.is_Integer):
            return node.func(*[hide(a) for a in node.args])
        key = _walk(node)
        return opaque.setdefault(key, sp.Dummy("o"))

    body = hide(e)
    groups = {}  # e^(k·r) for rational k, by r: the base a = g·r, g the gcd of the k (e^(2x) alone: a = 2x)
    for atom in body.atoms(sp.exp):
        k, r = atom.args[0].as_coeff_Mul()
        if r.could_extract_minus_sign():
            k, r = -k, -r
        if r.free_symbols:
            groups.setdefault(r, []).append((atom, k))
    for r, members in groups.items():
        g = abs(sp.gcd([k for _, k in members]))
        body = _logistic(body, g * r, {atom: k / g for atom, k in members})
    return body.xreplace({d: k for k, d in opaque.items()})


def _logistic(body, a, powers):
    """body with each e^(n·a) of ``powers`` (atom -> integer n) as (s/(1 − s))^n, s = L(a), if the
    cancelled result has no denominator in s; its numerator's factors in s and 1 − s (whichever has
    fewer terms) as products of L(a) and L(−a) = 1 − L(a)."""
    s, u = sp.Dummy("s"), sp.Dummy("u")
    trial = sp.cancel(sp.together(body.xreplace({atom: (s / (1 - s)) ** n for atom, n in powers.items()})))
    numerator, denominator = sp.fraction(trial)
    if denominator.has(s):
        return body
    coefficient, factors = sp.factor_list(numerator)
    out = coefficient / denominator
    for factor, power in factors:
        forms = (sp.expand(factor).xreplace({s: Logistic(a)}),
                 sp.expand(factor.xreplace({s: 1 - u})).xreplace({u: Logistic(-a)}))
        out *= min(forms, key=lambda f: (len(sp.Add.make_args(f)), sp.count_ops(f))) ** power
    return out


__all__ = ["Logistic", "Softplus", "stabilize"]
