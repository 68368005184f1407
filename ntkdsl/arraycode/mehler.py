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
entries that no degree covers (ρ
near ±1 at large variance, kinked σ) are integrated by :func:`_fallback` (nested 2-D quadrature on
graded panels). Entries on the diagonal (q1 = q2 = c) are the 1-D integral E[f(u)·g(u)], exactly.
Measured against 25-digit mpmath in docs/numerical-duals.md (Cost).

The 1-D integrals are composite Gauss–Legendre on [−MEHLER_TAIL, MEHLER_TAIL] (the integrand is
≤ |h|·√φ(z)·(2π)^¼ by Cramér's bound on Hermite functions, so the tails beyond 13 are < 1e-18),
with panel edges every unit of z and at the preimages of σ-arguments 0, ±1, ±2, …, ±32 and the kinks
(geometric grading resolves σ's exponential approach to its asymptotes at any variance).

Copied verbatim (:func:`source`) into generated modules next to :mod:`.support`'s routines; keep it
free of names other than ``xp``, its own and ``_Quiet``.
"""

import inspect

import numpy as xp

from .support import _Quiet

MEHLER_TOLERANCE = 1e-10  # truncation bound per entry, relative to √(E[f(u)²]·E[g(v)²])
MEHLER_DEGREES = (4, 8, 16, 24, 32, 48, 64)  # the ladder of series degrees L; the last is the largest
MEHLER_TAIL = 13.0
MEHLER_NODES = 16  # Gauss–Legendre nodes a panel
MEHLER_MARKS = (0.0, 1.0, -1.0, 2.0, -2.0, 4.0, -4.0, 8.0, -8.0, 16.0, -16.0, 32.0, -32.0)
MEHLER_BLOCK = 32768  # entries per block of the series: its arrays stay in cache
MEHLER_REFINE = 7  # panel halvings at most (2^7 panels a unit of z, ~55 000 nodes a point) for oscillating σ
MEHLER_RESOLUTION = 0.1 * MEHLER_TOLERANCE  # two panel widths' check sums agree within this share of their scale
MEHLER_FALLBACK_REFINE = 4  # halvings at most of the 2-D fallback's 3-unit panels (its cost grows 4× each)
MEHLER_GRADING = (0.25, 40)  # panels toward a singular point: widths shrink by 1/4, 40 levels (4^-40 ≈ 8e-25)


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


def _oscillates(funcs):
    """Whether some h of ``funcs`` may oscillate: h(x) on a grid of σ-arguments (|x| from 1e-3 to 1e8,
    log-spaced, and every 0.005 within ±60) rises and falls more than 8 times (steps within 1e-9 of
    |h| are rounding, not counted), or is not finite there. Monotone pieces with a few turns (tanh,
    SiLU, softplus, GELU-like) are what unit panels with σ's graded marks resolve; only the others
    pay for :func:`_resolved`'s second panelling."""
    side = xp.logspace(-3.0, 8.0, 2000)
    x = xp.unique(xp.concatenate([-side, xp.linspace(-60.0, 60.0, 24001), side]))
    for h in funcs:
        with _Quiet():
            v = xp.broadcast_to(xp.asarray(h(x), dtype=xp.float64), x.shape)
            step = xp.diff(v)
            significant = xp.abs(step) > 1e-9 * (xp.abs(v[1:]) + xp.abs(v[:-1])) + 1e-300
        if not bool(xp.all(xp.isfinite(v))):
            return True
        signs = xp.sign(step[significant])
        if int(xp.count_nonzero(signs[1:] != signs[:-1])) > 8:
            return True
    return False


def _sums(funcs, pairs, r, z, weight):
    """At the nodes z (rows: points √q = r) with weights φ(z)·dz: the check sums [E[h²] for h] +
    [E[h] for h] + [E[h·z] for h] + [E[f·g] for pairs] (each (P,)), and the values h(√q·z)."""
    with _Quiet():  # zero-width panels (coinciding edges) may put a node, with weight 0, on a singular point
        values = [xp.where(weight != 0, h(r[:, None] * z), 0.0) for h in funcs]
    weighted = [weight * v for v in values]
    sums = [xp.sum(xp.abs(wv * v), axis=1) for wv, v in zip(weighted, values)]
    sums += [xp.sum(wv, axis=1) for wv in weighted] + [xp.sum(wv * z, axis=1) for wv in weighted]
    sums += [xp.sum(weighted[funcs.index(f)] * values[funcs.index(g)], axis=1) for f, g in pairs]
    return sums, values


def _resolved(sums, finer, n):
    """Points whose check sums (:func:`_sums`) at two panel widths agree within MEHLER_RESOLUTION of
    their Cauchy–Schwarz scales (E[h²] for E[h²]; √E[h²] for E[h] and E[h·z], both |·| ≤ √E[h²]; E[f·g]
    checked through its factors): Gauss–Legendre converges exponentially on panels that resolve σ
    (Trefethen, Approximation Theory and Approximation Practice, ch. 19), so the coarser sums' error
    is about their difference. Not finite anywhere: left to :func:`_decays`."""
    ok = xp.ones(sums[0].shape, dtype=bool)
    with _Quiet():
        for k in range(n):
            scale = xp.maximum(sums[k], finer[k])
            ok &= ~(xp.abs(sums[k] - finer[k]) > MEHLER_RESOLUTION * scale)
            for m in (n + k, 2 * n + k):
                ok &= ~(xp.abs(sums[m] - finer[m]) > MEHLER_RESOLUTION * xp.sqrt(scale))
    return ok


def _decays(terms, z, q):
    """Refuse E[h(√q·z)²] when its integrand (terms at the nodes z: rows of points) is not finite or
    has not decayed by the outermost unit of z (a term there above 1e-7 of the largest): h grows
    like e^{z²/4} or faster, the expectation is infinite or not resolved, any number would be wrong."""
    with _Quiet():
        peak = xp.max(terms, axis=1)
        edge = xp.max(xp.where(xp.abs(z) >= MEHLER_TAIL - 1, terms, 0.0), axis=1)
        bad = ~xp.isfinite(peak) | (edge > 1e-7 * peak)
    if bool(xp.any(bad)):
        raise FloatingPointError(f"E[σ(u)²] is infinite or undefined at the variance {float(q[bad][0]):.6g} of this "
                                 f"activation's inputs (the integrand is not finite, or does not decay within "
                                 f"{MEHLER_TAIL:g} standard deviations)")


def _marks(kinks):
    return xp.asarray(sorted(set(MEHLER_MARKS) | {float(k) for k in kinks}), dtype=xp.float64)


def _preimages(marks, shift, scale):
    """z = (m − shift)/scale for every σ-argument m (last axis); ±MEHLER_TAIL (no edge) where scale is 0."""
    with _Quiet():
        return xp.where(scale[..., None] != 0, (marks - shift[..., None]) / xp.where(scale != 0, scale, 1.0)[..., None],
                        MEHLER_TAIL)


def _legendre(nodes, table={}):  # noqa: B006 (a cache: Gauss–Legendre nodes and weights by count)
    if nodes not in table:
        import numpy

        table[nodes] = tuple(xp.asarray(a) for a in numpy.polynomial.legendre.leggauss(nodes))
    return table[nodes]


def _nodes(preimages, step=1.0, nodes=MEHLER_NODES, singular=None, floor=None, levels=MEHLER_GRADING[1], finest=None):
    """Composite Gauss–Legendre nodes z and weights φ(z)·dz per row (leading axes of ``preimages``):
    panel edges every ``step`` in z and at the given preimages (last axis), within ±MEHLER_TAIL;
    around each ``singular`` preimage z_s (last axis) also at z_s ± step·¼^j, j = 1 … ``levels`` (geometric
    grading: Gauss–Legendre converges exponentially in the nodes per panel for integrands like
    log|z − z_s| and |z − z_s|^p, p > −1, on such panels; Schwab, p- and hp-FEM, §4.2; Gui & Babuška
    1986). Offsets stay above ``floor`` (same shape as ``singular``; default 2⁻⁴⁰·|z_s|: the σ-argument's
    rounding, 2⁻⁵²·max(|k|, |shift|), over its scale, times 2¹²), so that the node nearest z_s (5e-3
    of its panel away) stays ~20 ulps of the σ-argument from the singular point k; and above
    ``finest`` (same shape, optional) where the integrand is known to be smooth at smaller scales."""
    x, w = _legendre(nodes)
    fixed = xp.arange(-MEHLER_TAIL, MEHLER_TAIL + step / 2, step)
    shape = preimages.shape[:-1]
    parts = [xp.broadcast_to(fixed, shape + fixed.shape), preimages]
    if singular is not None and singular.shape[-1]:
        ratio = MEHLER_GRADING[0]
        offsets = step * ratio ** xp.arange(1.0, levels + 1.0)
        floor = 2.0 ** -40 * xp.abs(singular) if floor is None else floor
        offsets = xp.maximum(offsets, floor[..., None] if finest is None else xp.maximum(floor, finest)[..., None])
        graded = xp.concatenate([singular[..., None] - offsets, singular[..., None] + offsets], axis=-1)
        parts.append(xp.broadcast_to(graded, shape + graded.shape[-2:]).reshape(shape + (-1,)))
    edges = xp.concatenate(parts, axis=-1)
    if singular is not None and singular.shape[-1]:
        for j in range(singular.shape[-1]):  # an edge closer to z_s than the finest offset moves onto z_s
            at = singular[..., j, None]
            gap = xp.abs(edges - at)
            edges = xp.where((gap > 0) & (gap < floor[..., j, None]), at, edges)
    edges = xp.sort(xp.clip(edges, -MEHLER_TAIL, MEHLER_TAIL), axis=-1)
    if edges.ndim == 2 and edges.shape[0] == 1:  # one row: coinciding edges (zero-width panels) cost nodes only
        edges = xp.unique(edges)[None, :]
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    z = (a + (b - a) / 2 * (x + 1)).reshape(shape + (-1,))
    return z, ((b - a) / 2 * w).reshape(shape + (-1,)) * xp.exp(-0.5 * z * z) * 0.3989422804014327


def _singular(funcs, kinks):
    """The kinks k where some h of ``funcs`` is unbounded or not smooth on a side (an array of
    σ-arguments), so that panels ending at k do not converge fast: with t = max(1, |k|)·τ on each
    side, h not finite at τ = 1e-12, or |h| larger there than 1.001 times at τ = 1e-6 (log|x|
    doubles, |x|^p for p < 0 grows by 10^(−6p); ntkdsl.activations.finiteness applies the same
    test), or the first difference quotient (τ = 1e-8 against 1e-4) or the second (1e-4 against
    1e-2) grown by half, beyond rounding (x·log|x|, |x|^(3/4), x²·log|x|: 16-node panels would leave
    ~1e-7). Near a kink or jump of a σ smooth on each side these stay within rounding. Only these get
    graded panels (they cost ~1300 nodes each)."""
    found = []
    for k in kinks:
        t = max(1.0, abs(float(k))) * xp.asarray([-1.0, 1.0])

        def at(tau, h, k=k, t=t):
            return xp.broadcast_to(xp.asarray(h(k + tau * t), dtype=xp.float64), t.shape)

        for h in funcs:
            with _Quiet():
                near, far = xp.abs(at(1e-12, h)), xp.abs(at(1e-6, h))
                slopes = [xp.abs((at(2 * tau, h) - at(tau, h)) / tau) for tau in (1e-8, 1e-4)]
                curves = [xp.abs((at(3 * tau, h) - 2 * at(2 * tau, h) + at(tau, h)) / tau**2) for tau in (1e-4, 1e-2)]
                noise = 1e-6 * (xp.abs(at(1e-2, h)) + slopes[1])  # rounding of h and of k + τ·t, ~2e-8 of it
                rough = (near > 1.001 * far) | (slopes[0] > 1.5 * slopes[1] + noise) | (curves[0] > 1.5 * curves[1] + noise)
            if not bool(xp.all(xp.isfinite(near))) or bool(xp.any(rough)):
                found.append(float(k))
                break
    return xp.asarray(found, dtype=xp.float64)


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
    """This module's routines and constants, verbatim, for a generated module (after the quadrature's)."""
    names = ("MEHLER_TOLERANCE", "MEHLER_DEGREES", "MEHLER_TAIL", "MEHLER_NODES", "MEHLER_MARKS", "MEHLER_BLOCK", "MEHLER_GRADING",
             "MEHLER_REFINE", "MEHLER_RESOLUTION", "MEHLER_FALLBACK_REFINE")
    constants = [f"{name} = {globals()[name]!r}" for name in names]
    functions = [inspect.getsource(f).rstrip("\n") for f in
                 (mehler_expectations, _functions, _coarse, _fallback, _inner, mehler_coefficients, _integrals, _oscillates,
                  _sums, _resolved, _decays,
                  _marks, _preimages, _legendre, _nodes, _singular, _block, _matrix, _broadcast_shapes)]
    return "\n".join(constants) + "\n\n\n" + "\n\n\n".join(functions) + "\n"
