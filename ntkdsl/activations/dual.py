"""The dual kernel of any elementwise function σ: exact whenever ntkdsl can derive it, numerical otherwise.

Strategies, tried in order (kernel-math.md §3):

1. a catalog row with a closed form;
2. a polynomial in x: the Hermite re-expansion, exact for every variance;
3. α·A(β·x) + γ for a recognised catalog atom A (relu, abs, step, sign, erf, sin/cos, exp):
   K = α²·K_A(β²q1, β²q2, β²c) + αγ·(m_A(q1) + m_A(q2)) + γ², with m_A(q) = E[A(βu)];
4. a sum of odd terms and even terms that are each exact: the cross terms vanish, because
   (u, v) and (−u, −v) have the same law, so E[f_odd(u)·g_even(v)] = 0 (each part has fewer terms
   than the sum, so the split always makes progress);
   failing those, products and powers of sines and cosines rewritten product-to-sum, and an
   exponential polynomial Σ c·x^n·e^{βx} (β complex: x·sin x, e^x·sin x), exact by :mod:`.exppoly`;
5. a piecewise-constant σ (step/sign of any function of x): exact through bivariate normal orthant
   probabilities (:mod:`.steps`), its breakpoints found numerically (:mod:`.breakpoints`);
6. otherwise the numerical dual E[σ(u)σ(v)] (Mehler series with a per-entry truncation bound, a
   kink-aware 2-D Gauss–Legendre quadrature where the bound is not met), its kinks and jumps located
   symbolically where sympy solves for them and numerically otherwise.

An exact strategy that fails (an exception, an expression too large to manipulate) falls back to
the numerical dual. Each Dual says how it was obtained and its error bound (``ntkdsl check``).

K̇ is the row's published form, else ∂K/∂c (Price's theorem); for σ with jumps K̇ := 0 (what
backpropagation sees), never a DiracDelta.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial
from typing import Optional, Tuple

import sympy as sp

from ..arraycode.mehler import MEHLER_DEGREES, MEHLER_TOLERANCE
from ..algebra.functions import GaussianExpectation, angle, number
from . import exppoly, steps
from .breakpoints import is_resolvable
from .registry import REGISTRY, ActivationRow, price_derivative

ROUNDING = "error: float64 rounding"
QUADRATURE = (f"numerical (Mehler series, per entry the least degree ≤ {MEHLER_DEGREES[-1]} whose truncation bound "
              f"|ρ|^(L+1)·√(T_L(q1)·T_L(q2)) is ≤ MEHLER_TOLERANCE = {MEHLER_TOLERANCE:g} of √(E[σ(u)²]·E[σ(v)²]), else a "
              "kink-aware 2-D Gauss–Legendre quadrature); error ≤ 1e-9·√(E[σ(u)²]·E[σ(v)²]) (measured against "
              "mpmath for variances 1e-6…1e6, docs/numerical-duals.md)")
MAX_OPS = 400  # larger custom expressions skip the symbolic strategies (sympy's cost grows fast)


@dataclass(frozen=True)
class Dual:
    """K_σ, K̇_σ and how they were obtained (shown by ``ntkdsl check``)."""

    nngp: sp.Expr
    nngp_dot: sp.Expr
    method: str


def row_dual(row: ActivationRow, args: dict, q1, q2, c) -> Dual:
    """The dual of a catalog row: its closed form where it holds for ``args``, else the numerical dual of its σ."""
    if row.exact_for(args):
        k, kdot = row.dual(q1, q2, c, **args)
        return Dual(k, kdot, f"closed form ({row.citation.split(';')[0].split(',')[0]}); {ROUNDING}")
    x = sp.Symbol("x", real=True)
    return numerical_dual(sp.Lambda(x, row.fn(x, **args)), q1, q2, c, row.breakpoints, jumps=row.jumps)


def function_dual(fn: sp.Lambda, q1, q2, c) -> Dual:
    """The dual of an arbitrary one-variable σ (a custom or composed activation)."""
    (x,) = fn.variables
    expr = fn.expr
    try:
        exact = _exact(expr, x, q1, q2, c) if sp.count_ops(expr) <= MAX_OPS else None
    except Exception:  # noqa: BLE001 - a failed exact strategy costs speed, never correctness
        exact = None
    if exact is not None:
        k, kdot, method = exact
        return Dual(k, kdot, f"{method}; {ROUNDING}")
    locators = steps.jump_locators(expr, x)
    if locators is not None:
        return _step_dual(fn, locators, q1, q2, c)
    return numerical_dual(fn, q1, q2, c, kinks(expr, x), jumps=_has_jumps(expr))


def _step_dual(fn: sp.Lambda, locators, q1, q2, c) -> Dual:
    """A piecewise-constant σ: the orthant-probability closed form (:mod:`.steps`), now when its
    breakpoints are numbers, else when the parameters get values (GaussianExpectation resolves it)."""
    method = "exact (step functions of x: bivariate normal orthant probabilities, Owen's T)"
    where = " at breakpoints found numerically" if any(not _polynomial(loc) for loc in locators) else ""
    if is_resolvable(locators) and not fn.expr.free_symbols - set(fn.variables):
        found = steps.pieces(fn, tuple(locators))
        if found is not None:
            return Dual(steps.step_dual(*found, q1, q2, c), sp.S.Zero, f"{method}{where}; {ROUNDING}")
    dual = numerical_dual(fn, q1, q2, c, tuple(locators), jumps=True)
    return Dual(dual.nngp, sp.S.Zero, f"{method}{where or ' at breakpoints'} found once parameters have values; {ROUNDING}")


def _polynomial(loc: sp.Lambda) -> bool:
    return loc.expr.is_polynomial(*loc.variables)


def numerical_dual(fn: sp.Lambda, q1, q2, c, breakpoints=(), jumps: bool = False) -> Dual:
    """E[σ(u)σ(v)] by quadrature; K̇ = E[σ'(u)σ'(v)] from the symbolic σ' (0 where σ jumps).

    ``breakpoints``: numbers, expressions in parameters, or locators ``Lambda(x, a(x))`` whose sign
    changes are breakpoints (resolved numerically once every parameter has a value)."""
    marks = sp.Tuple(*sorted({number(b) for b in breakpoints}, key=sp.default_sort_key))
    k = GaussianExpectation(fn, fn, q1, q2, c, marks)
    return Dual(k, GaussianExpectation(*k.args).fdiff(5) if isinstance(k, GaussianExpectation) else sp.S.Zero, QUADRATURE)


# ---------------------------------------------------------------- exact strategies
def _exact(expr: sp.Expr, x: sp.Symbol, q1, q2, c) -> Optional[Tuple[sp.Expr, sp.Expr, str]]:
    """(K, K̇, how) by strategies 2–4 of the module docstring, or None."""
    if expr.is_polynomial(x):
        coeffs = sp.Poly(expr, x).all_coeffs()[::-1]
        k = hermite_dual(coeffs, q1, q2, c)
        return k, price_derivative(k, c), "exact (Hermite re-expansion of a polynomial)"
    affine = _affine_atom(expr, x)
    if affine is not None:
        alpha, atom, gamma = affine
        k_atom, kdot_atom, mean, name, jumps = atom(q1, q2, c)
        if gamma != 0 and mean is None:
            return None
        k = alpha**2 * k_atom + (alpha * gamma * (mean(q1) + mean(q2)) if gamma != 0 else 0) + gamma**2
        return k, alpha**2 * kdot_atom, f"exact ({name} with affine input and output)"
    split = _odd_even(expr, x)
    if split is not None:
        parts = [_exact(part, x, q1, q2, c) for part in split]
        if all(p is not None for p in parts):
            return (parts[0][0] + parts[1][0], parts[0][1] + parts[1][1],
                    "exact (odd + even parts; their cross terms vanish by symmetry)")
    if expr.has(sp.sin, sp.cos):  # products and powers of sines and cosines as sums (sin²x = (1 − cos 2x)/2)
        from sympy.simplify.fu import TR8

        reduced = sp.expand(TR8(expr))
        if reduced != expr:
            found = _exact(reduced, x, q1, q2, c)
            if found is not None:
                return found[0], found[1], found[2].replace("exact (", "exact (product-to-sum, then ", 1)
    found = exppoly.terms(expr, x)  # Σ c·x^n·e^(βx), β complex: x·sin x, e^x·sin x (activations/exppoly.py)
    if found is not None:
        k = exppoly.dual(found, q1, q2, c)
        return k, price_derivative(k, c), "exact (exponential polynomial: derivatives of the Gaussian moment generating function)"
    return None


def _odd_even(expr: sp.Expr, x: sp.Symbol):
    """(odd terms, even terms) of a sum whose every term is odd or even in x, both non-empty; else None."""
    if not isinstance(expr, sp.Add):
        return None
    odd, even = [], []
    for term in expr.args:
        mirrored = term.xreplace({x: -x})
        if mirrored == term or sp.expand(mirrored - term) == 0:
            even.append(term)
        elif sp.expand(mirrored + term) == 0:
            odd.append(term)
        else:
            return None
    return (sp.Add(*odd), sp.Add(*even)) if odd and even else None


def hermite_dual(coeffs, q1, q2, c) -> sp.Expr:
    """E[P(u)P(v)] for P(x) = Σ a_m x^m: Σ_ℓ s_ℓ(q1)·s_ℓ(q2)·c^ℓ with
    s_ℓ(q) = Σ_i a_{ℓ+2i}·(ℓ+2i)!·q^i / (2^i·i!·√(ℓ!)) (Mehler / Hermite re-expansion, kernel-math.md §3)."""
    n = len(coeffs) - 1

    def s(l, q):
        return sum(coeffs[l + 2 * i] * factorial(l + 2 * i) * q**i / (2**i * factorial(i))
                   for i in range((n - l) // 2 + 1)) / sp.sqrt(factorial(l))

    return sum(s(l, q1) * s(l, q2) * c**l for l in range(n + 1))


def _affine_atom(expr: sp.Expr, x: sp.Symbol):
    """(α, atom, γ) with expr = α·atom(β·x) + γ for a recognised atom, else None."""
    gamma, rest = expr.as_coeff_Add()
    alpha, core = rest.as_coeff_Mul()
    atom = _atom(core, x)
    return None if atom is None else (alpha, atom, gamma)


def _linear(arg: sp.Expr, x: sp.Symbol):
    """β with arg = β·x (β ≠ 0, a number or an expression in parameter symbols), else None."""
    beta = sp.simplify(arg / x)
    return beta if beta != 0 and not beta.has(x) and beta.is_finite is not False else None


def _atom(core: sp.Expr, x: sp.Symbol):
    """A builder (q1, q2, c) -> (K, K̇, mean or None, name, jumps) for core = A(β·x), else None."""
    if isinstance(core, sp.Max) and len(core.args) == 2 and 0 in core.args:
        beta = _linear(next(a for a in core.args if a != 0), x)
        if beta is not None:
            return _scaled_abrelu(beta, sp.S.Zero, sp.S.One, "relu")
    if isinstance(core, sp.Abs) and (beta := _linear(core.args[0], x)) is not None:
        return _scaled_abrelu(beta, -sp.S.One, sp.S.One, "abs")
    if isinstance(core, sp.Heaviside) and _linear(core.args[0], x) is not None:
        # Cho & Saul 2009 (n = 0); step(βx) and step(x) have the same dual for either sign of β
        return lambda q1, q2, c: ((sp.pi - angle(c, q1 * q2)) / (2 * sp.pi), sp.S.Zero, lambda q: sp.S.Half, "step", True)
    if isinstance(core, sp.sign) and _linear(core.args[0], x) is not None:
        # (2/π)·arcsin ρ = 1 − 2θ/π (Sheppard)
        return lambda q1, q2, c: (1 - 2 * angle(c, q1 * q2) / sp.pi, sp.S.Zero, lambda q: sp.S.Zero, "sign", True)
    if isinstance(core, sp.erf) and (beta := _linear(core.args[0], x)) is not None:
        row = REGISTRY.get("erf")
        return lambda q1, q2, c: (*row.dual(q1, q2, c, a=1, b=beta, c=0), lambda q: sp.S.Zero, "erf", False)
    if isinstance(core, (sp.sin, sp.cos)) and (affine := _affine_argument(core.args[0], x)) is not None:
        beta, phase = affine
        row = REGISTRY.get(core.func.__name__)  # Pearce et al. 2019 (activations/trig.py)
        params = {"a": sp.S.One, "b": beta, "c": phase}
        return lambda q1, q2, c: (*row.dual(q1, q2, c, **params), lambda q: row.mean(q, **params),
                                  core.func.__name__, False)
    if isinstance(core, sp.exp) and (affine := _affine_argument(core.args[0], x)) is not None:
        beta, shift = affine
        # E[e^{βu+γ}e^{βv+γ}] = e^{2γ + β²(q1 + q2 + 2c)/2}, E[e^{βu+γ}] = e^{γ + β²q/2}
        # (the Gaussian moment generating function)
        def exp_dual(q1, q2, c):
            k = sp.exp(2 * shift + beta**2 * (q1 + q2 + 2 * c) / 2)
            return k, beta**2 * k, lambda q: sp.exp(shift + beta**2 * q / 2), "exp", False

        return exp_dual
    return None


def _affine_argument(arg: sp.Expr, x: sp.Symbol):
    """(β, γ) with arg = β·x + γ (β ≠ 0; β, γ numbers or parameter expressions), else None."""
    if not arg.is_polynomial(x):
        return None
    poly = sp.Poly(arg, x)
    if poly.degree() != 1:
        return None
    beta, gamma = poly.all_coeffs()
    return beta, gamma


def _scaled_abrelu(beta, a, b, name):
    """a·min(βx, 0) + b·max(βx, 0) = |β|·ABReLU(a, b) for β > 0 (positive homogeneity), and for β < 0
    |β|·ABReLU(−b, −a) (min(−y, 0) = −max(y, 0)); K, K̇ and the mean (b − a)·|β|·√(q/(2π)) are the
    same for both signs, so β may stay a symbol."""
    from .relu import abrelu_dual

    k, kdot = abrelu_dual(a, b)
    scale2 = beta**2
    mean = lambda q: (b - a) * sp.Abs(beta) * sp.sqrt(q / (2 * sp.pi))  # noqa: E731 - E[a·min(u,0) + b·max(u,0)]
    return lambda q1, q2, c: (scale2 * k(q1, q2, c), scale2 * kdot(q1, q2, c), mean, name, False)


# ---------------------------------------------------------------- kinks and jumps
def kinks(expr: sp.Expr, x: sp.Symbol) -> Tuple[sp.Expr, ...]:
    """Where σ is not smooth: the sign changes of the arguments of Max/Min/Abs/Heaviside/sign.

    Exact zeros where the argument is a polynomial that sympy solves (possibly in parameter
    symbols); otherwise the argument itself as a locator ``Lambda(x, a(x))``, resolved numerically
    (:func:`ntkdsl.activations.breakpoints.sign_changes`) once every parameter has a value."""
    points = set()
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Max, sp.Min)):  # sympy flattens max(0, max(p, x)): every pair may cross
            args = [a - b for i, a in enumerate(node.args) for b in node.args[i + 1:]]
        elif isinstance(node, (sp.Abs, sp.Heaviside, sp.sign)):
            args = [node.args[0]]
        elif isinstance(node, sp.log) or (isinstance(node, sp.Pow) and node.exp.is_negative):
            # σ may be singular where a log's argument or a negative power's base vanishes: polynomial
            # ones become points the quadrature grades (others are refused by activations/finiteness.py)
            base = node.args[0]
            while isinstance(base, sp.Abs):
                base = base.args[0]
            args = [base] if base.is_polynomial(x) else []
        else:
            continue
        for arg in args:
            if arg.has(x):
                points.update(_real_zeros(arg, x))
    return tuple(sorted(points, key=sp.default_sort_key))


def _real_zeros(arg: sp.Expr, x: sp.Symbol):
    poly = sp.Poly(arg, x) if arg.is_polynomial(x) else None
    if poly is not None and poly.degree() == 1:  # β·x + γ, β and γ possibly parameter symbols
        beta, gamma = poly.all_coeffs()
        return [sp.nsimplify(-gamma / beta) if (-gamma / beta).is_number else -gamma / beta]
    if poly is not None and poly.degree() <= 4 and not poly.free_symbols - {x}:
        return [sp.Float(float(r)) for r in sp.real_roots(poly)] if poly.degree() > 0 else []
    return [sp.Lambda(x, arg)]


def _has_jumps(expr: sp.Expr) -> bool:
    return expr.has(sp.Heaviside, sp.sign)
