"""Run-time support routines that generated modules need, written once over the array module ``xp``.

:func:`gaussian_expectation` is copied verbatim (``inspect.getsource``) into every generated module
that evaluates a numerical dual, so those modules stay standalone; ntkdsl's own numerical tools call
this same function. Keep it free of names other than ``xp`` and its own.
"""

import numpy as xp

# Panel edges in z (standard-normal units): the Gaussian weight is resolved by these fixed panels,
# σ's non-smooth or fast-changing region by panels at σ-argument values ±1 and 0 and at its kinks.
# 10 Gauss–Legendre nodes a panel; measured in docs/numerical-duals.md.
GAUSS_PANEL_EDGES = (-5.0, -2.0, 2.0, 5.0)
SIGMA_PANEL_EDGES = (-1.0, 0.0, 1.0)
GAUSS_TAIL = 9.0  # φ(9) ≈ 1e-18: beyond it nothing a float64 kernel can see
GAUSS_NODES = 10
TAIL_RATIO = 1e-7  # the integrand at |z| = 9 relative to its largest term (_decayed)


def perp(c, q1, q2):
    """√max(q1·q2 − c², 0) = √(q1q2)·sin θ, safe from overflow and underflow.

    Each variance is rescaled by an exact power of two e = 2^(−⌊log₂(q)/2⌋) (so q·e² ∈ [1, 4)) and
    c by e1·e2; products of powers of two are exact, so the diagonal c = q1 = q2 still gives exactly
    0, while q1·q2 no longer overflows for q ≳ 1e154 or underflows for q ≲ 1e-154. When every
    variance is 0 or within [2^−400, 2^400] (checked on the variances, which are small arrays), the
    rescaling could not change the result (exact scalings, no product near over- or underflow) and
    is skipped: 5 passes over the kernel instead of 9. The updates run in place where c and q1·q2
    have the kernel's shape (no temporaries of its size).
    """
    tiny, huge = 2.0 ** -400, 2.0 ** 400
    if all(bool(xp.all((q == 0) | ((q >= tiny) & (q <= huge)))) for q in (q1, q2)):
        e1 = e2 = None
        d, cs = q1 * q2, c * c
    else:
        e1 = xp.where(q1 > 0, xp.exp2(-xp.floor(xp.log2(xp.where(q1 > 0, q1, 1.0)) / 2)), 1.0)
        e2 = xp.where(q2 > 0, xp.exp2(-xp.floor(xp.log2(xp.where(q2 > 0, q2, 1.0)) / 2)), 1.0)
        cs = (c * e1) * e2
        d, cs = (q1 * e1 * e1) * (q2 * e2 * e2), cs * cs
    if getattr(d, "ndim", 0) and d.shape == getattr(cs, "shape", None):
        d -= cs
        xp.maximum(d, 0.0, out=d)
        xp.sqrt(d, out=d)
    else:
        d = xp.sqrt(xp.maximum(d - cs, 0.0))
    return d if e1 is None else d / e1 / e2


def gaussian_expectation(f, g, q1, q2, c, kinks=()):
    """E[f(u)·g(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]), elementwise over broadcast arrays.

    With ρ = c/√(q1·q2) (clamped to [−1, 1]; 0 where a variance is 0), u = √q1·z1 and
    v = √q2·(ρ·z1 + √(1 − ρ²)·z2) for independent standard normals z1, z2; both integrals use
    composite Gauss–Legendre panels on [−9, 9] whose edges include fixed Gaussian breakpoints and the
    preimages of σ's kinks and transition region, so kinks and jumps fall on panel edges (Davis &
    Rabinowitz, Methods of Numerical Integration, §2.7). Cost: about (9·10)² evaluations of g and
    the same number of products per entry; memory is bounded by evaluating in chunks.

    Args:
        f, g: vectorised elementwise functions.
        q1, q2, c: variances and covariance (broadcastable arrays, q ≥ 0).
        kinks: σ-argument values where f or g is not smooth.

    Returns:
        An array of the broadcast shape.
    """
    return gaussian_expectations(((f, g),), q1, q2, c, kinks)[0]


def gaussian_expectations(pairs, q1, q2, c, kinks=()):
    """[E[f(u)·g(v)] for (f, g) in pairs] (see :func:`gaussian_expectation`) on ONE set of quadrature
    nodes: K and K̇ of a numerical dual share the panels, the nodes and the Gaussian weights, the larger
    part of the cost; ``kinks`` must cover the non-smooth points of every f and g."""
    q1, q2, c = xp.broadcast_arrays(xp.asarray(q1, dtype=xp.float64), xp.asarray(q2, dtype=xp.float64),
                                    xp.asarray(c, dtype=xp.float64))
    shape = q1.shape
    if all(f is g for f, g in pairs):  # E[f(u)f(v)] is symmetric in (q1, q2): one order makes K(x, x') == K(x', x)
        q1, q2 = xp.minimum(q1, q2), xp.maximum(q1, q2)
    q1, q2, c = q1.reshape(-1), q2.reshape(-1), c.reshape(-1)
    outs = [xp.empty(q1.shape, dtype=xp.float64) for _ in pairs]
    marks = xp.asarray(sorted(set(SIGMA_PANEL_EDGES) | {float(k) for k in kinks}), dtype=xp.float64)
    kink_marks = xp.asarray(sorted({float(k) for k in kinks}), dtype=xp.float64)
    gauss = xp.asarray(GAUSS_PANEL_EDGES, dtype=xp.float64)
    x, w = xp.polynomial.legendre.leggauss(GAUSS_NODES) if hasattr(getattr(xp, "polynomial", None), "legendre") else _leggauss()
    x, w = xp.asarray(x), xp.asarray(w)
    panels = len(gauss) + len(marks) + len(kink_marks) + 1
    chunk = max(1, 2_000_000 // (panels * GAUSS_NODES) ** 2)
    for lo in range(0, q1.size, chunk):
        sl = slice(lo, lo + chunk)
        for out, value in zip(outs, _expectation(pairs, q1[sl], q2[sl], c[sl], marks, kink_marks, gauss, x, w)):
            out[sl] = value
    return [out.reshape(shape) for out in outs]


def _panels(edges, x, w):
    """Nodes and weights of Gauss–Legendre panels between consecutive sorted edges (last axis)."""
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    half = (b - a) / 2
    nodes = (a + half * (x + 1)).reshape(edges.shape[:-1] + (-1,))
    weights = (half * w).reshape(edges.shape[:-1] + (-1,))
    return nodes, weights


def _edges(preimages, gauss):
    """Sorted panel edges: ±tail, the Gaussian breakpoints and the preimages, clipped to the tail."""
    shape = preimages.shape[:-1]
    tail = xp.full(shape + (1,), GAUSS_TAIL)
    fixed = xp.broadcast_to(gauss, shape + gauss.shape)
    return xp.sort(xp.clip(xp.concatenate([-tail, tail, fixed, preimages], axis=-1), -GAUSS_TAIL, GAUSS_TAIL), axis=-1)


def _expectation(pairs, q1, q2, c, marks, kink_marks, gauss, x, w):
    p = q1 * q2
    safe = xp.where(p > 0, p, 1.0)
    rho = xp.where(p > 0, xp.clip(c / xp.sqrt(safe), -1.0, 1.0), 0.0)
    r1, r2 = xp.sqrt(q1), xp.sqrt(q2)
    s = r2 * xp.sqrt(xp.maximum(1.0 - rho * rho, 0.0))
    with _Quiet():
        pre1 = xp.where(r1[:, None] > 0, marks[None, :] / xp.where(r1 > 0, r1, 1.0)[:, None], GAUSS_TAIL)
        # as ρ → ±1 the inner integral tends to g(μ(z1)): g's kinks become kinks in z1 at k/(√q2·ρ)
        slope = (r2 * rho)[:, None]
        pre1 = xp.concatenate([pre1, xp.where(slope != 0, kink_marks[None, :] / xp.where(slope != 0, slope, 1.0), GAUSS_TAIL)], axis=1)
    z1, w1 = _panels(_edges(pre1, gauss), x, w)  # (n, P·m)
    mu = (r2 * rho)[:, None] * z1
    s3 = s[:, None, None]
    with _Quiet():
        pre2 = xp.where(s3 > 0, (marks[None, None, :] - mu[..., None]) / xp.where(s3 > 0, s3, 1.0), GAUSS_TAIL)
    z2, w2 = _panels(_edges(pre2, gauss), x, w)  # (n, P·m, P·m)
    density = 0.3989422804014327  # 1/√(2π)
    w2 = w2 * xp.exp(-0.5 * z2 * z2)  # Gaussian weights, shared by every pair
    w1 = w1 * xp.exp(-0.5 * z1 * z1)
    v, u = mu[..., None] + s3 * z2, r1[:, None] * z1
    results = []
    for f, g in pairs:
        with _Quiet():  # zero-width panels (coinciding edges) put nodes on a breakpoint, with weight 0
            terms = xp.where((w2 != 0) & (w1 != 0)[..., None], w2 * g(v), 0.0)
            outer = xp.where(w1 != 0, w1 * f(u), 0.0)
        _decayed(outer, terms, q1, q2)
        inner = xp.sum(terms, axis=-1) * density
        results.append(xp.sum(outer * inner, axis=-1) * density)
    return results


def _decayed(outer, terms, q1, q2):
    """Refuse a 2-D integrand (outer[n, i]·terms[n, i, j]) that is not a finite number or has not decayed
    at the edges of the box |z1|, |z2| ≤ 9 (its largest term there above TAIL_RATIO of its largest
    term anywhere): E[f(u)g(v)] is then infinite (σ grows like e^{x²/(4q)} or faster, or is infinite at
    a point the nodes reach) or not resolved by truncating at 9 standard deviations, and any number
    returned would be wrong."""
    with _Quiet():
        a1, a2 = xp.abs(outer), xp.abs(terms)
        rows = xp.max(a2, axis=-1)  # (n, i)
        peak = xp.max(a1 * rows, axis=-1)
        edge2 = xp.max(a1 * xp.maximum(a2[..., 0], a2[..., -1]), axis=-1)
        edge1 = xp.maximum(a1[:, 0] * rows[:, 0], a1[:, -1] * rows[:, -1])
        bad = ~xp.isfinite(peak) | (xp.maximum(edge1, edge2) > TAIL_RATIO * peak)
    if bool(xp.any(bad)):
        i = int(xp.nonzero(bad)[0][0])
        raise FloatingPointError(f"E[σ(u)σ(v)] is infinite or undefined at the variances ({float(q1[i]):.6g}, "
                                 f"{float(q2[i]):.6g}) of this activation's inputs (the integrand is not finite, "
                                 "or does not decay within 9 standard deviations)")


class _Quiet:
    """Ignore the division warnings of masked-out entries: numpy.errstate where the array module has
    one; nothing for those without floating-point error state (CuPy, which never warns)."""

    def __enter__(self):
        self._state = xp.errstate(divide="ignore", invalid="ignore") if hasattr(xp, "errstate") else None
        if self._state is not None:
            self._state.__enter__()
        return self

    def __exit__(self, *exc):
        return bool(self._state is not None and self._state.__exit__(*exc))


def _leggauss():  # array modules without numpy.polynomial.legendre (CuPy): nodes from NumPy
    import numpy

    return numpy.polynomial.legendre.leggauss(GAUSS_NODES)
