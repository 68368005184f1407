"""Numerical duals in the fused numba kernels: the Mehler series of :mod:`.mehler`, its per-entry work in the loops.

:mod:`.mehler` evaluates E[f(u)·g(v)] = Σ_ℓ a_ℓ(f, q1)·a_ℓ(g, q2)·ρ^ℓ (Mehler's formula; O'Donnell,
Analysis of Boolean Functions, §11.2) with per-point Hermite coefficients and a truncation bound
|ρ|^(L+1)·√(T_L(f, q1)·T_L(g, q2)) per entry (Cauchy–Schwarz and Parseval; the derivation is in
that module's docstring). The fused kernels split that work the same way:

* per point, in NumPy before the loops (:func:`mehler_points`): the coefficients a_ℓ for ℓ ≤ the
  largest degree of the ladder, the half-log relative tails ½·log(T_L/E) at each degree L of the
  ladder and the diagonal value E[f(√q·z)·g(√q·z)], all by :func:`.mehler.mehler_coefficients`;
* per entry, in the compiled loop (:func:`mehler_series`): ρ, the least degree of the ladder whose
  bound is at most MEHLER_TOLERANCE (the very comparison of ``mehler._block``), and Horner's
  scheme from that degree down, in the order and rounding of ``mehler._block`` (no FMA: the two
  paths agree to rounding); the exact diagonal (q1 = q2 = c) is the 1-D value.

An entry that no degree covers is flagged (``flags[i, j] = 1``) and given 0; after the loops the
generated module evaluates every layer of the flagged entries again with NumPy's formulas, whose
``mehler_expectations`` integrates them by ``mehler._fallback`` (the 2-D quadrature), so their values are
the NumPy path's.

:func:`mehler_points` and :func:`mehler_series` are copied verbatim (:func:`array_source`,
:func:`scalar_source`) into fused modules, next to :func:`.mehler.source`: keep them free of names
other than ``xp``, ``math``, the ``MEHLER_*`` constants and :mod:`.mehler`'s routines.
:class:`FusedDuals` writes the lines of a fused module that call them (for :mod:`.fused`).
"""

import concurrent.futures
import inspect
import math
from collections.abc import Callable

import numpy as xp
import sympy as sp

from ..algebra.functions import GaussianExpectation
from ..arraycode.mehler import MEHLER_DEGREES, MEHLER_TOLERANCE, _functions, mehler_coefficients
from .fused_routines import LOOP, source


def mehler_points(pairs, q1, q2, n1, n2, kinks=(), threads=1):
    """The per-point numbers of the series of each pair (f, g) for the variances q1 of x1's n1
    points (a column (n1, 1) or a constant) and q2 of x2's n2 points (a row or a constant).

    Returns (rows, cols): float64 arrays (n1, len(pairs), W) and (n2, len(pairs), W), W = D + L + 2
    for the largest degree D and the L degrees of MEHLER_DEGREES: [a_0 … a_D of f (rows) or g (cols),
    ½·log(T/E) at each degree of the ladder, E[f(√q·z)·g(√q·z)] (the diagonal value, rows only)].
    The points' integrals run in ``threads`` threads (NumPy releases the GIL in its array operations).
    An expectation that is not finite at some variance is :func:`.mehler._decays`' FloatingPointError."""
    top, ladder = MEHLER_DEGREES[-1], len(MEHLER_DEGREES)
    q1 = xp.broadcast_to(xp.ravel(xp.asarray(q1, dtype=xp.float64)), (n1,))
    q2 = xp.broadcast_to(xp.ravel(xp.asarray(q2, dtype=xp.float64)), (n2,))
    points, inverse = xp.unique(xp.concatenate([q1, q2]), return_inverse=True)
    inverse = inverse.reshape(-1)
    funcs = _functions(pairs)
    coef = [xp.empty((top + 1, points.size)) for _ in funcs]
    logtail = [xp.empty((top + 1, points.size)) for _ in funcs]
    cross = [xp.empty(points.size) for _ in pairs]

    def share(first, step):  # every step-th point from the first: each point's integrals are its own
        got = mehler_coefficients(funcs, pairs, points[first::step], kinks)
        for out, part in zip(coef + logtail + cross, got[0] + got[1] + got[2]):
            out[..., first::step] = part

    threads = max(1, min(threads, points.size // 64))
    if threads == 1:
        share(0, 1)
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for done in [pool.submit(share, first, threads) for first in range(threads)]:
                done.result()
    ladder_rows = xp.asarray(MEHLER_DEGREES)
    out = []
    for side, (at, n) in enumerate(((inverse[:n1], n1), (inverse[n1:], n2))):
        stack = xp.zeros((n, len(pairs), top + ladder + 2))
        for k, pair in enumerate(pairs):
            h = next(m for m, fn in enumerate(funcs) if fn is pair[side])
            stack[:, k, :top + 1] = coef[h][:, at].T
            stack[:, k, top + 1:top + 1 + ladder] = logtail[h][ladder_rows][:, at].T
            stack[:, k, top + 1 + ladder] = cross[k][at]
        out.append(stack)
    return out[0], out[1]


def mehler_rho(q1, q2, c):
    """(ρ, log|ρ|, diagonal) of an entry (u, v) ~ N(0, [[q1, c], [c, q2]]), as mehler._block computes
    them: ρ = c/(√q1·√q2) clipped to [−1, 1] (0 where a variance is 0, log|ρ| then −∞); diagonal:
    q1 = q2 = c, where the series' 1-D value applies. Shared by the series of one entry."""
    r = math.sqrt(q1) * math.sqrt(q2)
    rho = min(max(c / r, -1.0), 1.0) if r > 0.0 else 0.0
    return rho, (math.log(abs(rho)) if rho != 0.0 else -math.inf), (q1 == q2 and c == q1)


def mehler_series(rho, logrho, diagonal, rows, cols, i, j, k, flags):
    """E[f(u)·g(v)] of the k-th series at the entry (i, j), from :func:`mehler_rho`'s numbers and
    rows[i, k], cols[j, k], the per-point numbers of :func:`mehler_points`. The least degree L of
    the ladder with |ρ|^(L+1)·√(T_L(f, q1)·T_L(g, q2)/(E_f·E_g)) ≤ MEHLER_TOLERANCE (compared in
    logarithms, as mehler._block does), then Horner from a_L·b_L down; on the diagonal the 1-D
    value. No degree within the bound: flags[i, j] = 1 and 0 (the caller integrates the entry)."""
    tails = MEHLER_DEGREES[-1] + 1
    if diagonal:
        return rows[i, k, tails + len(MEHLER_DEGREES)]
    log_tol = math.log(MEHLER_TOLERANCE)
    need = -1
    for m in range(len(MEHLER_DEGREES)):
        if logrho * (MEHLER_DEGREES[m] + 1) + (rows[i, k, tails + m] + cols[j, k, tails + m]) <= log_tol:
            need = MEHLER_DEGREES[m]
            break
    if need < 0:
        flags[i, j] = 1
        return 0.0
    total = rows[i, k, need] * cols[j, k, need]
    for ell in range(need - 1, -1, -1):
        total = total * rho + rows[i, k, ell] * cols[j, k, ell]
    return total


def array_source() -> str:
    """:func:`mehler_points`, verbatim, for a fused module (after :func:`.mehler.source`)."""
    return inspect.getsource(mehler_points)


def scalar_source() -> str:
    """:func:`mehler_rho` and :func:`mehler_series` as numba functions, for a fused module (names
    math, numba, FASTMATH)."""
    return source(mehler_rho, mehler_series, decorators={mehler_rho: LOOP, mehler_series: LOOP})


# --- code generation: the lines of a fused module that evaluate its numerical duals

Group = list[tuple[sp.Symbol, GaussianExpectation]]  # the duals of a layer over the same (q1, q2, c, kinks)


class FusedDuals:
    """The numerical duals of a fused module, layer by layer: each distinct GaussianExpectation of a
    layer's formulas becomes a symbol (``e3_0``), computed in the loop by ``mehler_series`` from the
    per-point stacks (``mehler_points`` before the loop, one call per group of duals that share
    their arguments, e.g. K and K̇), and again by :func:`refill_source`'s NumPy function for the
    entries that the loop flagged. ``vector`` is the module's array printer (its σ functions)."""

    def __init__(self, vector):
        self.vector = vector
        self.series = 0  # the duals so far: the next one's index k in mehler_rows[:, k]
        self.stacks: list[str] = []  # the per-layer stacks, in the order of k
        self.layers: list[tuple[int, list, list[Group]]] = []  # per layer: index, formulas with symbols, groups
        self.last_stacks: list[tuple[str, Group]] = []  # the current layer's stacks and their groups

    def split(self, assignments, prefix: str) -> tuple[list, list[Group]]:
        """The assignments with each distinct dual replaced by a symbol prefix + k, and the duals in
        groups; their arguments are written in earlier layers' symbols (a symbol that the layer itself
        assigns is replaced by its formula)."""
        local = dict(assignments)
        found: dict[GaussianExpectation, tuple[sp.Symbol, GaussianExpectation]] = {}

        def symbol(ge):
            if ge not in found:
                args = ge.args[2:5]
                for _ in range(len(local) + 1):
                    args, before = tuple(a.xreplace(local) for a in args), args
                    if args == before:
                        break
                found[ge] = (sp.Symbol(f"{prefix}{len(found)}", real=True),
                             GaussianExpectation(ge.args[0], ge.args[1], *args, ge.args[5]))
            return found[ge][0]

        replaced = [(s, e.replace(lambda n: isinstance(n, GaussianExpectation), symbol)) for s, e in assignments]
        groups: dict[tuple, Group] = {}
        for sym, ge in found.values():
            groups.setdefault(ge.args[2:], []).append((sym, ge))
        return replaced, list(groups.values())

    def expectation_lines(self, groups: list[Group], indent: str) -> list[str]:
        """NumPy lines computing each group's duals by ``mehler_expectations`` (series or quadrature)."""
        return [f"{indent}{''.join(f'{s}, ' for s, _ in group).rstrip(' ')} = {self.vector.expectations(*(ge for _, ge in group))}"
                for group in groups]

    def variance_lines(self, groups: list[Group], indent: str) -> list[str]:
        """NumPy lines computing the variances' duals E[f(u)·g(u)] (a group's q1 = q2 = c): from the
        diagonal values of the per-point stacks that :meth:`points_lines` computed for the same
        variances, functions and kinks (the same 1-D integrals), else by ``mehler_expectations``."""
        lines, rest = [], []
        for group in groups:
            for sym, ge in group:
                found = [f"{name}[{side}][:, {k}, -1].reshape({'(-1, 1)' if side == 0 else '(1, -1)'})"
                         for name, stacked in self.last_stacks for k, (_, other) in enumerate(stacked)
                         for side in (0, 1) if other.args[:2] == ge.args[:2] and other.args[5] == ge.args[5]
                         and other.args[2 + side] == ge.args[2]]
                if found:
                    lines.append(f"{indent}{sym} = {found[0]}  # E[σ(u)²] at each point: the stack's diagonal value")
                else:
                    rest.append([(sym, ge)])
        return lines + self.expectation_lines(rest, indent)

    def points_lines(self, index: int, groups: list[Group], indent: str) -> list[str]:
        """NumPy lines before the loop: each group's per-point stacks (:func:`mehler_points`)."""
        lines = []
        self.last_stacks = []
        for g, group in enumerate(groups):
            q1, q2, _, kinks = group[0][1].args[2:]
            pairs = "".join(f"({self.vector._elementwise(ge.args[0])}, {self.vector._elementwise(ge.args[1])}), "
                            for _, ge in group)
            marks = ", ".join(repr(float(k)) for k in kinks)
            name = f"mehler_{index}_{g}"
            self.stacks.append(name)
            self.last_stacks.append((name, group))
            lines.append(f"{indent}{name} = mehler_points(({pairs.rstrip(' ')}), {self.vector.doprint(q1)}, "
                         f"{self.vector.doprint(q2)}, x1.shape[0], x2.shape[0], ({marks}{',' if len(kinks) == 1 else ''}), THREADS)")
        self.vector.functions.setdefault("gaussian_expectation", "")  # the module then holds mehler.source()
        return lines

    def loop_lines(self, groups: list[Group], scalar, indent: str) -> list[str]:
        """Loop-body lines: each dual of the layer by ``mehler_series`` at the entry (i, j), after
        ``mehler_rho`` once per group (its duals share q1, q2 and c)."""
        lines = []
        for group in groups:
            rho = f"{group[0][0]}_rho"
            q1, q2, c = (scalar.doprint(a) for a in group[0][1].args[2:5])
            lines.append(f"{indent}{rho}, {rho}_log, {rho}_diagonal = mehler_rho({q1}, {q2}, {c})")
            for sym, _ in group:
                lines.append(f"{indent}{sym} = mehler_series({rho}, {rho}_log, {rho}_diagonal, mehler_rows, mehler_cols, "
                             f"i, j, {self.series}, flags)")
                self.series += 1
        return lines

    def stack_lines(self, indent: str) -> list[str]:
        """The per-point stacks of every layer as the two arrays the loop reads (k: the dual's index)."""
        rows = ", ".join(f"{name}[0]" for name in self.stacks)
        cols = ", ".join(f"{name}[1]" for name in self.stacks)
        return [f"{indent}# numerical duals: per point, Hermite coefficients, tails and diagonal values (mehler_points)",
                f"{indent}mehler_rows = xp.concatenate([{rows}], axis=1)",
                f"{indent}mehler_cols = xp.concatenate([{cols}], axis=1)",
                f"{indent}flags = xp.zeros(nngp_0.shape, dtype=xp.uint8)  # entries that no series degree covers"]


    def refill(self, per_point, parameters: list[str], outputs, d: int, cse_lines: Callable, order: Callable):
        """The source of ``_refill`` (:func:`refill_source`) and the lines of ``kernels()`` that call it
        after the loops on the flagged entries. per_point: the symbols of x1's and x2's per-point
        numbers (those the formulas read become its arguments, in ``order``); parameters: the
        run-time parameters' names."""
        names = sorted({s.name for _, assigned, groups in self.layers
                        for e in [e for _, e in assigned] + [a for group in groups for _, ge in group for a in ge.args[2:5]]
                        for s in e.free_symbols if s in per_point}, key=order)
        call = "".join(f", {name}" for name in names + parameters)
        return refill_source(self, names, parameters, outputs, d, cse_lines), [
            "    at = xp.nonzero(flags)",
            "    if at[0].size:  # the entries some series could not give within its bound: every layer again on NumPy",
            f"        nngp[at], ntk[at] = _refill(at, x1, x2{call})"]


def refill_source(duals: FusedDuals, per_point: list[str], parameters: list[str], outputs, d: int,
                  cse_lines: Callable) -> str:
    """The source of ``_refill(at, x1, x2, ...)``: the kernels at the entries ``at`` (index arrays)
    by every layer's formulas on NumPy (duals by ``mehler_expectations``: series where within
    bound, else the 2-D quadrature), from the per-point arrays and the run-time parameters."""
    printer = duals.vector
    arguments = "".join(f", {name}" for name in per_point + parameters)
    lines = [f"def _refill(at, x1, x2{arguments}):",
             '    """(Σ, Θ) at the entries at = (rows, columns) that the fused loop flagged (some series',
             '    degree short of the bound there): every layer on NumPy, as the NumPy module computes them."""',
             "    shape = (x1.shape[0], x2.shape[0])",
             f"    nngp_0 = xp.einsum(\"ij,ij->i\", x1[at[0]], x2[at[1]]) / {d}"]
    lines += [f"    {name} = xp.broadcast_to({name}, shape)[at]" for name in per_point]
    for index, replaced, groups in duals.layers:
        lines += duals.expectation_lines(groups, "    ")
        lines += cse_lines(replaced, {}, printer, f"r{index}_", "    ")
    lines.append(f"    return {printer.doprint(outputs.nngp)}, {printer.doprint(outputs.ntk)}")
    return "\n".join(lines) + "\n"


__all__ = ["FusedDuals", "array_source", "mehler_points", "mehler_series", "refill_source", "scalar_source"]
