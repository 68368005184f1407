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
    funcs = []
    for f, g in pairs:
        funcs += [h for h in (f, g) if all(h is not k for k in funcs)]
    if q1.shape == q2.shape == c.shape and bool(xp.all((q1 == q2) & (c == q1))):  # variances: E[f(u)g(u)] only
        cross = mehler_coefficients(funcs, pairs, points, kinks, degree=0)[2]
        return [value[inverse[:q1.size]].reshape(shape) for value in cross]
    coef, logtail, cross = mehler_coefficients(funcs, pairs, points, kinks)
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


def _fallback(pairs, q1, q2, c, kinks):
    """The entries whose series bound exceeds the tolerance, by nested quadrature: with slope = ρ·√q2
    and s = √q2·√(1 − ρ²), E[f(u)·g(v)] = E_z1[f(√q1·z1)·E_z2[g(slope·z1 + s·z2)]] (the inner
    integral is g(slope·z1) at ρ = ±1), both composite Gauss–Legendre with edges every 3 units and at
    the preimages of σ's graded marks and kinks (outer: of f(√q1·z1), of g(slope·z1), the limit of
    the inner integral as ρ → ±1, and of k ± s·marks for each kink k, where the inner integral rounds
    the kink off; inner: of g(μ + s·z2)), so ρ near ±1 and extreme variances
    keep every panel smooth. E[f(u)f(v)] is symmetric in (q1, q2): one order (q1 ≤ q2) makes the
    kernel of x with itself exactly symmetric."""
    if all(f is g for f, g in pairs):
        q1, q2 = xp.minimum(q1, q2), xp.maximum(q1, q2)
    r1, r2 = xp.sqrt(q1), xp.sqrt(q2)
    with _Quiet():
        rho = xp.where(r1 * r2 > 0, xp.clip(c / xp.where(r1 * r2 > 0, r1 * r2, 1.0), -1.0, 1.0), 0.0)
    slope, s = r2 * rho, r2 * xp.sqrt(xp.maximum(1.0 - rho * rho, 0.0))
    outs = [xp.empty(q1.shape) for _ in pairs]
    marks = _marks(kinks)
    chunk = 4
    for lo in range(0, q1.size, chunk):
        at = slice(lo, lo + chunk)
        zero = 0 * r1[at]
        cuts = [_preimages(marks, zero, r1[at]), _preimages(marks, zero, slope[at])]
        for k in {0.0, *kinks}:  # the inner integral spreads σ's transition and kinks over |slope·z1 − k| ≲ s
            cuts.append(_preimages(k + s[at, None] * xp.asarray(MEHLER_MARKS[1:]), zero, slope[at]))
        z1, w1 = _nodes(xp.concatenate(cuts, axis=-1), 3.0, 12)
        mu, spread = slope[at, None] * z1, xp.broadcast_to(s[at, None], z1.shape)
        z2, w2 = _nodes(_preimages(marks, mu, spread), 3.0, 10)
        v = mu[..., None] + spread[..., None] * z2
        for out, (f, g) in zip(outs, pairs):
            inner = xp.where(spread > 0, xp.sum(w2 * g(v), axis=-1), g(mu))
            out[at] = xp.sum(w1 * f(r1[at, None] * z1) * inner, axis=-1)
    return outs


def mehler_coefficients(funcs, pairs, q, kinks, degree=MEHLER_DEGREES[-1]):
    """Per point q: a[h][ℓ] = E[h(√q·z)·He_ℓ(z)]/√ℓ! for ℓ ≤ degree (arrays (degree + 1, P)), the
    half-log relative tails ½·log(T_L/E) for every L (same shape), and E[f(√q·z)·g(√q·z)] (P,) for
    each pair (the diagonal ρ = 1). Points go in chunks whose node arrays stay in cache."""
    coef = [xp.empty((degree + 1, q.size)) for _ in funcs]
    energy = [xp.empty(q.size) for _ in funcs]
    cross = [xp.empty(q.size) for _ in pairs]
    chunk = 16
    norm = xp.exp(-0.5 * xp.cumsum(xp.log(xp.maximum(xp.arange(degree + 1.0), 1.0))))[:, None]  # 1/√ℓ!
    for lo in range(0, q.size, chunk):
        sl = slice(lo, lo + chunk)
        r = xp.sqrt(q[sl])
        z, weight = _nodes(_preimages(_marks(kinks), 0 * r, r))
        r = r[:, None]
        values = [h(r * z) for h in funcs]
        weighted = [weight * v for v in values]  # φ(z)·dz·h(√q z)
        for k, (v, wv) in enumerate(zip(values, weighted)):
            terms = xp.abs(wv * v)
            energy[k][sl] = xp.sum(terms, axis=1)
            _decays(terms, z, q[sl])
        for k, (f, g) in enumerate(pairs):
            cross[k][sl] = xp.sum(weighted[funcs.index(f)] * values[funcs.index(g)], axis=1)
        hermite = xp.empty((degree + 1,) + z.shape)  # He_ℓ(z): He_{ℓ+1} = z·He_ℓ − ℓ·He_{ℓ−1}; ÷√ℓ! below
        hermite[0] = 1.0
        if degree:
            hermite[1] = z
        for ell in range(1, degree):
            xp.multiply(z, hermite[ell], out=hermite[ell + 1])
            hermite[ell + 1] -= ell * hermite[ell - 1]
        both = xp.matmul(hermite.transpose(1, 0, 2), xp.stack(weighted, axis=2))  # (chunk, degree + 1, functions)
        for k in range(len(funcs)):
            coef[k][:, sl] = both[:, :, k].T * norm
    logtail = []
    for k, e in enumerate(energy):
        # floor: E and Σa² are each accurate to ~1e-14·E (quadrature and rounding), so is their difference
        tail = xp.maximum(e - xp.cumsum(coef[k] ** 2, axis=0), 1e-13 * e)
        with _Quiet():
            logtail.append(xp.where(e > 0, 0.5 * xp.log(tail / xp.where(e > 0, e, 1.0)), -xp.inf))
    return coef, logtail, cross


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


def _nodes(preimages, step=1.0, nodes=MEHLER_NODES):
    """Composite Gauss–Legendre nodes z and weights φ(z)·dz per row (leading axes of ``preimages``):
    panel edges every ``step`` in z and at the given preimages (last axis), within ±MEHLER_TAIL."""
    x, w = _legendre(nodes)
    fixed = xp.arange(-MEHLER_TAIL, MEHLER_TAIL + step / 2, step)
    shape = preimages.shape[:-1]
    edges = xp.sort(xp.clip(xp.concatenate([xp.broadcast_to(fixed, shape + fixed.shape), preimages], axis=-1),
                            -MEHLER_TAIL, MEHLER_TAIL), axis=-1)
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    z = (a + (b - a) / 2 * (x + 1)).reshape(shape + (-1,))
    return z, ((b - a) / 2 * w).reshape(shape + (-1,)) * xp.exp(-0.5 * z * z) * 0.3989422804014327


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
    names = ("MEHLER_TOLERANCE", "MEHLER_DEGREES", "MEHLER_TAIL", "MEHLER_NODES", "MEHLER_MARKS", "MEHLER_BLOCK")
    constants = [f"{name} = {globals()[name]!r}" for name in names]
    functions = [inspect.getsource(f).rstrip("\n") for f in
                 (mehler_expectations, _fallback, mehler_coefficients, _decays, _marks, _preimages, _legendre, _nodes, _block, _matrix, _broadcast_shapes)]
    return "\n".join(constants) + "\n\n\n" + "\n\n\n".join(functions) + "\n"
