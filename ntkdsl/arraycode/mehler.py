"""Numerical duals as Mehler series: per-point Hermite coefficients, a short polynomial in ρ per entry.

For (u, v) ~ N(0, [[q1, c], [c, q2]]) and ρ = c/√(q1·q2), Mehler's formula (Hermite polynomials'
bilinear generating function; O'Donnell, Analysis of Boolean Functions, §11.2) gives

    E[f(u)·g(v)] = Σ_ℓ a_ℓ(f, q1)·a_ℓ(g, q2)·ρ^ℓ,   a_ℓ(h, q) = E[h(√q·z)·He_ℓ(z)]/√ℓ!,  z ~ N(0, 1),

so the coefficients are 1-D integrals per distinct variance (O(N·L) work) and each of the N² entries
is a polynomial of degree L ≤ 64 in ρ (Horner). Truncation error, by Cauchy–Schwarz and Parseval:

    |Σ_{ℓ>L} a_ℓ(f, q1)·a_ℓ(g, q2)·ρ^ℓ| ≤ |ρ|^(L+1)·√(T_L(f, q1)·T_L(g, q2)),
    T_L(h, q) = E[h(√q·z)²] − Σ_{ℓ≤L} a_ℓ(h, q)²,

a bound per entry from per-point numbers. Each entry takes the least degree L of a ladder whose
bound is at most MEHLER_TOLERANCE·√(E[f(u)²]·E[g(v)²]) (the Cauchy–Schwarz scale of the entry);
entries that no degree covers (ρ near ±1 at large variance, kinked σ) are integrated by
:func:`_fallback` (nested 2-D quadrature on graded panels). Entries on the diagonal (q1 = q2 = c)
are the 1-D integral E[f(u)·g(u)], exactly. Measured against 25-digit mpmath in
docs/numerical-duals.md (Cost).

The 1-D integrals (:func:`mehler_coefficients`) and the 2-D fallback run on the composite
Gauss–Legendre panels of :mod:`.mehler_panels`, checked there to resolve σ.

Copied verbatim with :mod:`.mehler_panels` (:func:`source`) into generated modules next to
:mod:`.support`'s routines; keep it free of names other than ``xp``, its own, those of
:mod:`.mehler_panels` and ``_Quiet``.
"""

import inspect

import numpy as xp

from .mehler_panels import (MEHLER_GRADING, MEHLER_MARKS, MEHLER_NODES, MEHLER_RESOLUTION, MEHLER_TAIL, MEHLER_TOLERANCE,
                            _decays, _legendre, _marks, _nodes, _oscillates, _preimages, _resolved, _singular, _sums)
from .support import _Quiet

MEHLER_DEGREES = (4, 8, 16, 24, 32, 48, 64)  # the ladder of series degrees L; the last is the largest
MEHLER_BLOCK = 32768  # entries per block of the series: its arrays stay in cache
MEHLER_REFINE = 7  # panel halvings at most (2^7 panels a unit of z, ~55 000 nodes a point) for oscillating σ
MEHLER_FALLBACK_REFINE = 4  # halvings at most of the 2-D fallback's 3-unit panels (its cost grows 4× each)


def mehler_expectations(pairs, q1, q2, c, kinks=()):
    """[E[f(u)·g(v)] for (f, g) in pairs] for (u, v) ~ N(0, [[q1, c], [c, q2]]), elementwise over
    broadcast arrays (q ≥ 0), by Mehler series within MEHLER_TOLERANCE, else by quadrature.

    Same arguments and results as ``support.gaussian_expectations``; ``kinks`` (σ-arguments where
    some f or g is not smooth) become panel edges of every integral. An expectation that is not
    finite at some variance (σ growing like e^{x²/(4q)} or faster) is a FloatingPointError naming it."""
    q1, q2, c = (xp.asarray(a, dtype=xp.float64) for a in (q1, q2, c))
    shape = _broadcast_shapes(q1.shape, q2.shape, c.shape)
    points, inverse = xp.unique(xp.concatenate([q1.reshape(-1), q2.reshape(-1)]), return_inverse=True)
    inverse = inverse.reshape(-1)
    funcs = _functions(pairs)
    if q1.shape == q2.shape == c.shape and bool(xp.all((q1 == q2) & (c == q1))):  # variances: E[f(u)g(u)] only
        cross = mehler_coefficients(funcs, pairs, points, kinks, degree=0)[2]
        return [value[inverse[:q1.size]].reshape(shape) for value in cross]
    coef, logtail, cross, _ = mehler_coefficients(funcs, pairs, points, kinks)
    index = [[next(k for k, h in enumerate(funcs) if h is fn) for fn in pair] for pair in pairs]
    i1 = inverse[:q1.size].reshape(q1.shape)
    i2 = inverse[q1.size:].reshape(q2.shape)
    if len(shape) > 2:
        i1, i2, c = (xp.broadcast_to(a, shape) for a in (i1, i2, c))
    i1, i2, c = _matrix(i1), _matrix(i2), _matrix(c)
    rows, cols = _broadcast_shapes(i1.shape, i2.shape, c.shape)
    outs = [xp.empty((rows, cols), dtype=xp.float64) for _ in pairs]
    block = max(1, MEHLER_BLOCK // max(cols, 1))
    redo = []  # per block: the entries some pair must integrate, and which pairs
    for lo in range(0, rows, block):
        sl = slice(lo, lo + block)
        j1, j2, cc = (a[sl] if a.shape[0] > 1 else a for a in (i1, i2, c))
        bads = []
        for k, (a, b) in enumerate(index):
            outs[k][sl], bad = _block(coef[a], coef[b], logtail[a], logtail[b], cross[k], points, j1, j2, cc)
            bads.append(bad)
        fall = xp.zeros(_broadcast_shapes(j1.shape, j2.shape, cc.shape), dtype=bool)
        for bad in bads:
            fall |= bad
        if fall.any():
            where = xp.nonzero(fall)
            redo.append((lo, where, [bad[where] for bad in bads],
                         *(points[xp.broadcast_to(j, fall.shape)[where]] for j in (j1, j2)), xp.broadcast_to(cc, fall.shape)[where]))
    if redo:  # one quadrature call for all blocks; each pair keeps its series where that was within bound
        values = _fallback(pairs, *(xp.concatenate([r[k] for r in redo]) for k in (3, 4, 5)), kinks)
        start = 0
        for lo, where, bads, *_ in redo:
            n = where[0].size
            for out, value, bad in zip(outs, values, bads):
                out[(where[0][bad] + lo, where[1][bad])] = value[start:start + n][bad]
            start += n
    return [out.reshape(shape) for out in outs]


def _functions(pairs):
    """The distinct functions of ``pairs`` (by identity), in order of first appearance."""
    funcs = []
    for f, g in pairs:
        funcs += [h for h in (f, g) if all(h is not k for k in funcs)]
    return funcs


def _coarse(pairs, kinks, q):
    """The panel width in z for :func:`_fallback` at the variances q: 3 units (10 nodes a panel: the
    inner integral's), halved up to MEHLER_FALLBACK_REFINE times until :func:`_resolved` accepts the
    check sums at that width against half of it (σ oscillating), else a FloatingPointError. With
    singular points (graded panels, whose finest widths differ between two widths) 3 units, and
    refused where the 1-D integrals' unit panels do not resolve σ (their check, as in :func:`_integrals`)."""
    funcs = _functions(pairs)
    q = xp.unique(q)
    singular = _singular(funcs, kinks)
    r = xp.sqrt(q)
    step = 3.0
    marks, graded = _preimages(_marks(kinks), 0 * r, r), _preimages(singular, 0 * r, r)
    for _ in range(MEHLER_FALLBACK_REFINE + 1):
        if singular.size:
            ok = _resolved(*(_sums(funcs, pairs, r, *_nodes(marks, width, singular=graded))[0]
                             for width in (1.0, 0.5)), len(funcs))
        else:
            ok = _resolved(*(_sums(funcs, pairs, r, *_nodes(marks, width, 10))[0]
                             for width in (step, step / 2)), len(funcs))
        if bool(xp.all(ok)):
            return step
        if singular.size:
            break
        step /= 2
    raise FloatingPointError(
        f"the Gaussian integrals of σ do not resolve at the variance {float(q[~ok][0]):.6g} of this activation's "
        f"inputs (oscillation): the Mehler series does not reach its bound at correlations this close to ±1, "
        f"and the 2-D quadrature's panels do not follow σ's oscillation there")


def _fallback(pairs, q1, q2, c, kinks):
    """The entries whose series bound exceeds the tolerance, by nested quadrature: with slope = ρ·√q2
    and s = √q2·√(1 − ρ²), E[f(u)·g(v)] = E_z1[f(√q1·z1)·E_z2[g(slope·z1 + s·z2)]] (the inner
    integral is g(slope·z1) at ρ = ±1), both composite Gauss–Legendre with edges every ``step`` units of z
    (:func:`_coarse`: 3, less for oscillating σ) and at
    the preimages of σ's graded marks and kinks (outer: of f(√q1·z1), of g(slope·z1), the limit of
    the inner integral as ρ → ±1, and of k ± s·marks for each kink k, where the inner integral rounds
    the kink off; inner: of g(μ + s·z2)), so ρ near ±1 and extreme variances
    keep every panel smooth. E[f(u)f(v)] is symmetric in (q1, q2): one order (q1 ≤ q2) makes the
    kernel of x with itself exactly symmetric."""
    step = _coarse(pairs, kinks, xp.concatenate([q1, q2]))
    if all(f is g for f, g in pairs):
        q1, q2 = xp.minimum(q1, q2), xp.maximum(q1, q2)
    r1, r2 = xp.sqrt(q1), xp.sqrt(q2)
    with _Quiet():
        rho = xp.where(r1 * r2 > 0, xp.clip(c / xp.where(r1 * r2 > 0, r1 * r2, 1.0), -1.0, 1.0), 0.0)
    slope, s = r2 * rho, r2 * xp.sqrt(xp.maximum(1.0 - rho * rho, 0.0))
    outs = [xp.empty(q1.shape) for _ in pairs]
    marks = _marks(kinks)
    singular = _singular(_functions(pairs), kinks)
    chunk = 1 if singular.size or step < 3.0 else 4
    for lo in range(0, q1.size, chunk):
        at = slice(lo, lo + chunk)
        zero = 0 * r1[at]
        cuts = [_preimages(marks, zero, r1[at]), _preimages(marks, zero, slope[at])]
        for k in {0.0, *kinks}:  # the inner integral spreads σ's transition and kinks over |slope·z1 − k| ≲ s
            cuts.append(_preimages(k + s[at, None] * xp.asarray(MEHLER_MARKS[1:]), zero, slope[at]))
        graded = xp.concatenate([_preimages(singular, zero, r1[at]), _preimages(singular, zero, slope[at])], axis=-1)
        with _Quiet():  # toward k/slope only down to s/|slope|: the inner integral is smooth below that scale
            finest = xp.concatenate([0 * graded[..., :singular.size], (
                s[at, None] / xp.abs(xp.where(slope[at] != 0, slope[at], 1.0))[:, None] + 0 * graded[..., singular.size:])], axis=-1)
        z1, w1 = _nodes(xp.concatenate(cuts, axis=-1), step, 12, singular=graded, finest=finest,
                        levels=MEHLER_GRADING[1] if bool(xp.any(s[at] == 0)) else MEHLER_GRADING[1] * 5 // 8)
        inners = _inner(pairs, slope[at, None] * z1, xp.broadcast_to(s[at, None], z1.shape), marks, singular, step)
        with _Quiet():  # zero-width panels (coinciding edges) may put a node, with weight 0, on a singular point
            for out, (f, g), inner in zip(outs, pairs, inners):
                out[at] = xp.sum(xp.where(w1 != 0, w1 * f(r1[at, None] * z1) * inner, 0.0), axis=-1)
    return outs


def _inner(pairs, mu, spread, marks, singular, step=3.0):
    """[E_z2[g(μ + s·z2)] for (f, g) in pairs] at every outer node (g(μ) where s = 0): composite
    Gauss–Legendre, 10 nodes a panel, edges every ``step`` units and at the preimages of σ's marks; graded
    panels (25 levels: the inner integrand holds g, not g², so |x|^(−1/4) leaves ~1e-12) only for the
    nodes whose singular points fall within ±MEHLER_TAIL."""
    pre = _preimages(singular, mu, spread)
    near = xp.any(xp.abs(pre) < MEHLER_TAIL, axis=-1) & (spread > 0)
    inners = [xp.empty(mu.shape) for _ in pairs]
    for rows in (near, ~near):
        if not bool(rows.any()):
            continue
        m, s = mu[rows], spread[rows]
        with _Quiet():  # v = μ + s·z2 rounds by 2⁻⁵²·max(|μ|, |k|): the floor of the grading in z2
            floor = 2.0 ** -40 * (xp.abs(m)[:, None] + xp.abs(singular)) / xp.where(s > 0, s, 1.0)[:, None]
        z2, w2 = _nodes(_preimages(marks, m, s), step, 10, singular=pre[rows] if rows is near else None, floor=floor,
                        levels=MEHLER_GRADING[1] * 5 // 8)
        v = m[:, None] + s[:, None] * z2
        with _Quiet():  # zero-width panels (coinciding edges) may put a node, with weight 0, on a singular point
            for inner, (_, g) in zip(inners, pairs):
                inner[rows] = xp.where(s > 0, xp.sum(xp.where(w2 != 0, w2 * g(v), 0.0), axis=-1), g(m))
    return inners


def mehler_coefficients(funcs, pairs, q, kinks, degree=MEHLER_DEGREES[-1]):
    """Per point q: a[h][ℓ] = E[h(√q·z)·He_ℓ(z)]/√ℓ! for ℓ ≤ degree (arrays (degree + 1, P)), the
    half-log relative tails ½·log(T_L/E) for every L (same shape), E[f(√q·z)·g(√q·z)] (P,) for
    each pair (the diagonal ρ = 1), and the panel halvings each point needed (P,) (0: unit panels).

    Each point's integrals are accepted at the first panel width 2^−j (j = 0 … MEHLER_REFINE) whose
    check sums agree with those at width 2^−(j+1) (:func:`_resolved`); a point that none resolves (σ
    oscillates faster than the finest panels follow) is a FloatingPointError naming its variance.
    Points go in chunks whose node arrays stay in cache."""
    coef = [xp.empty((degree + 1, q.size)) for _ in funcs]
    energy = [xp.empty(q.size) for _ in funcs]
    cross = [xp.empty(q.size) for _ in pairs]
    levels = xp.zeros(q.size, dtype=xp.int64)
    singular = _singular(funcs, kinks)
    chunk = 16
    wavy = _oscillates(funcs)
    for lo in range(0, q.size, chunk):
        ok = _integrals(funcs, pairs, q[lo:lo + chunk], kinks, singular, degree, 1.0, coef, energy, cross, lo, wavy)
        for at in lo + xp.nonzero(~ok)[0]:  # one point at a time: the finer node arrays stay small
            for level in range(1, MEHLER_REFINE + 1):
                if _integrals(funcs, pairs, q[at:at + 1], kinks, singular, degree, 0.5 ** level, coef, energy, cross, at, wavy)[0]:
                    levels[at] = level
                    break
            else:
                raise FloatingPointError(
                    f"the Gaussian integrals of σ do not resolve at the variance {float(q[at]):.6g} of this activation's "
                    f"inputs (oscillation): panels of width 2^-{MEHLER_REFINE} in z, {MEHLER_NODES} nodes each, still "
                    f"change E[σ(u)²] or E[σ(u)·u] by more than {MEHLER_RESOLUTION:g} of its scale")
    logtail = []
    for k, e in enumerate(energy):
        # floor: E and Σa² are each accurate to ~1e-14·E (quadrature and rounding), so is their difference
        tail = xp.maximum(e - xp.cumsum(coef[k] ** 2, axis=0), 1e-13 * e)
        with _Quiet():
            logtail.append(xp.where(e > 0, 0.5 * xp.log(tail / xp.where(e > 0, e, 1.0)), -xp.inf))
    return coef, logtail, cross, levels


def _integrals(funcs, pairs, q, kinks, singular, degree, step, coef, energy, cross, lo, wavy=True):
    """mehler_coefficients' integrals of the points q (a chunk) on panels of width ``step`` in z,
    written at columns lo … of coef, energy and cross; returns which points :func:`_resolved` accepts
    (all, unchecked, where not ``wavy``: see :func:`_oscillates`)."""
    r = xp.sqrt(q)
    marks, graded = _preimages(_marks(kinks), 0 * r, r), _preimages(singular, 0 * r, r)
    z, weight = _nodes(marks, step, singular=graded)
    sums, values = _sums(funcs, pairs, r, z, weight)
    ok = xp.ones(q.shape, dtype=bool)
    if wavy:
        finer = _sums(funcs, pairs, r, *_nodes(marks, step / 2, singular=graded))[0]
        ok = _resolved(sums, finer, len(funcs))
    sl = slice(lo, lo + q.size)
    for k in range(len(funcs)):
        energy[k][sl] = sums[k]
        _decays(xp.abs(weight * values[k] * values[k]), z, q)
    for k in range(len(pairs)):
        cross[k][sl] = sums[3 * len(funcs) + k]
    norm = xp.exp(-0.5 * xp.cumsum(xp.log(xp.maximum(xp.arange(degree + 1.0), 1.0))))[:, None]  # 1/√ℓ!
    hermite = xp.empty((degree + 1,) + z.shape)  # He_ℓ(z): He_{ℓ+1} = z·He_ℓ − ℓ·He_{ℓ−1}; ÷√ℓ! below
    hermite[0] = 1.0
    if degree:
        hermite[1] = z
    for ell in range(1, degree):
        xp.multiply(z, hermite[ell], out=hermite[ell + 1])
        hermite[ell + 1] -= ell * hermite[ell - 1]
    both = xp.matmul(hermite.transpose(1, 0, 2), xp.stack([weight * v for v in values], axis=2))  # (points, degree + 1, functions)
    for k in range(len(funcs)):
        coef[k][:, sl] = both[:, :, k].T * norm
    return ok




def _block(ca, cb, la, lb, cross, points, j1, j2, c):
    """One block of entries of one pair: each entry's series at the least degree of the ladder whose
    bound meets the tolerance (so a value never depends on the other entries of its block: tiles,
    backends and self/cross kernels agree to rounding), and the mask of entries that no degree
    covers (to be integrated by quadrature). The index arrays j1, j2 stay unbroadcast ((b, 1) and
    (1, n) for a kernel block): gathers stay small."""
    q1, q2 = points[j1], points[j2]
    r = xp.sqrt(q1) * xp.sqrt(q2)
    with _Quiet():
        rho = xp.where(r > 0, xp.clip(c / xp.where(r > 0, r, 1.0), -1.0, 1.0), 0.0)
        logrho = xp.log(xp.abs(rho))
    diagonal = (q1 == q2) & (c == q1)
    log_tol = xp.log(MEHLER_TOLERANCE)
    need = xp.full(diagonal.shape, -1)  # the least degree within the bound; -1: none
    for degree in reversed(MEHLER_DEGREES):  # the bound decreases with the degree
        need = xp.where(logrho * (degree + 1) + (la[degree][j1] + lb[degree][j2]) <= log_tol, degree, need)
    bad = (need < 0) & ~diagonal
    top = int(need.max())
    total = xp.zeros(need.shape)
    term = xp.empty_like(total)
    for ell in range(top, -1, -1):
        if ell == top or ell in MEHLER_DEGREES:  # the entries whose series reaches ℓ
            reach = (need >= ell).astype(xp.float64)
        total *= rho
        xp.multiply(ca[ell][j1], cb[ell][j2], out=term)
        term *= reach
        total += term
    if diagonal.any():
        total[diagonal] = xp.broadcast_to(cross[j1], diagonal.shape)[diagonal]
    return total, bad


def _matrix(a):
    """a as a 2-D array: leading ones added, or every axis but the last merged."""
    return a.reshape((1,) * (2 - a.ndim) + a.shape) if a.ndim <= 2 else a.reshape(-1, a.shape[-1])


def _broadcast_shapes(*shapes):
    import numpy

    return numpy.broadcast_shapes(*shapes)


def source() -> str:
    """This module's routines and constants and those of :mod:`.mehler_panels`, verbatim, for a generated
    module (after the quadrature's)."""
    names = ("MEHLER_TOLERANCE", "MEHLER_DEGREES", "MEHLER_TAIL", "MEHLER_NODES", "MEHLER_MARKS", "MEHLER_BLOCK", "MEHLER_GRADING",
             "MEHLER_REFINE", "MEHLER_RESOLUTION", "MEHLER_FALLBACK_REFINE")
    constants = [f"{name} = {globals()[name]!r}" for name in names]
    functions = [inspect.getsource(f).rstrip("\n") for f in
                 (mehler_expectations, _functions, _coarse, _fallback, _inner, mehler_coefficients, _integrals, _oscillates,
                  _sums, _resolved, _decays, _marks, _preimages, _legendre, _nodes, _singular, _block, _matrix,
                  _broadcast_shapes)]
    return "\n".join(constants) + "\n\n\n" + "\n\n\n".join(functions) + "\n"
