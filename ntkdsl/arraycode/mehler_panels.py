"""The quadrature panels of the Mehler series' integrals (:mod:`.mehler`) and their checks.

The integrals over z ~ N(0, 1) are composite Gauss–Legendre on [−MEHLER_TAIL, MEHLER_TAIL] (the
integrand of a Hermite coefficient is ≤ |h|·√φ(z)·(2π)^¼ by Cramér's bound on Hermite functions,
so the tails beyond 13 are < 1e-18), with panel edges every unit of z (or a given width) and at the
preimages of σ-arguments 0, ±1, ±2, …, ±32 and the kinks (:func:`_marks`, :func:`_preimages`:
geometric grading resolves σ's exponential approach to its asymptotes at any variance), and graded
panels toward the kinks where σ is unbounded or not smooth on a side (:func:`_singular`,
:func:`_nodes`). The checks: whether σ may oscillate (:func:`_oscillates`), whether two panel widths
agree (:func:`_sums`, :func:`_resolved`), and whether E[σ²] is finite and resolved within the tail
(:func:`_decays`).

Copied verbatim (:func:`.mehler.source`) into generated modules; keep it free of names other than
``xp``, its own and ``_Quiet``.
"""

import numpy as xp

from .support import _Quiet

MEHLER_TOLERANCE = 1e-10  # truncation bound per entry, relative to √(E[f(u)²]·E[g(v)²])
MEHLER_TAIL = 13.0
MEHLER_NODES = 16  # Gauss–Legendre nodes a panel
MEHLER_MARKS = (0.0, 1.0, -1.0, 2.0, -2.0, 4.0, -4.0, 8.0, -8.0, 16.0, -16.0, 32.0, -32.0)
MEHLER_RESOLUTION = 0.1 * MEHLER_TOLERANCE  # two panel widths' check sums agree within this share of their scale
MEHLER_GRADING = (0.25, 40)  # panels toward a singular point: widths shrink by 1/4, 40 levels (4^-40 ≈ 8e-25)


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
