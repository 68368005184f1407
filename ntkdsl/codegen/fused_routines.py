"""Run-time routines of fused modules (:mod:`.fused`, :mod:`.fused_spatial`), written as Python.

Each routine is copied verbatim (``inspect.getsource``) into the generated modules that call it, under
the numba decorator :data:`DECORATORS` gives it (added there: this module imports no numba, and its
routines run as plain Python in tests). Two kinds:

* scalar helpers compiled by numba and inlined into the loop body (``atan2``, ``asin``, ``hypot``,
  ``perp_scaled``, ``pow2_scale``). They are branch-free (conditional expressions become selects),
  so that LLVM vectorises the loop: ``math.atan2`` and ``math.asin`` are libm calls that it cannot
  vectorise. ``F = type(...)`` is the arguments' precision (float32 for float32 arguments, else
  float64);
* array helpers over NumPy (the Gram matrix, the per-point stacks, the power-of-two scales) and the
  threads (the mirror of the upper triangle, the work shares).

Keep them free of names other than ``math``, ``os``, ``concurrent.futures``, ``xp`` (NumPy),
``scipy.linalg.blas``, ``FASTMATH`` (the generated module's) and this module's own.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import math
import os

import numpy as xp
import scipy.linalg.blas

def atan2(y, x):
    """atan2(y, x) ∈ [−π, π] without branches (Cephes' rational atan; relative error ≈ 2e-16), in the
    precision of its arguments (F: float32 for two float32 numbers, else float64)."""
    # Cephes atan (Moshier, Cephes Math Library, atan.c): atan(u) = u + u·z·P(z)/Q(z), z = u², for
    # |u| ≤ tan(π/8) after the reduction atan(t) = π/4 + atan((t − 1)/(t + 1)); relative error ≈ 2e-16.
    F = type(y + x)
    ax = abs(x)
    ay = abs(y)
    hi = max(ax, ay)
    lo = min(ax, ay)
    big = lo > F(0.41421356237309503) * hi  # t = lo/hi > tan(π/8): reduce by π/4
    u = (lo - hi if big else lo) / ((lo + hi if big else hi) if hi > F(0.0) else F(1.0))
    z = u * u
    p = (((F(-8.750608600031904122785e-1) * z - F(1.615753718733365076637e1)) * z - F(7.500855792314704667340e1)) * z
         - F(1.228866684490136173410e2)) * z - F(6.485021904942025371773e1)
    q = ((((z + F(2.485846490142306297962e1)) * z + F(1.650270098316988542046e2)) * z + F(4.328810604912902668951e2)) * z
         + F(4.853903996359136964868e2)) * z + F(1.945506571482613964425e2)
    a = u + u * z * p / q
    a = (a + F(3.061616997868382943e-17)) + F(0.78539816339744830962) if big else a
    a = (F(6.123233995736765886e-17) - a) + F(1.57079632679489661923) if ay > ax else a
    a = (F(1.2246467991473532e-16) - a) + F(3.14159265358979323846) if x < F(0.0) else a
    return -a if y < F(0.0) else a


def asin(x):
    """arcsin of x clipped to [−1, 1], as atan2(x, √((1 − x)(1 + x))) (vectorisable; in x's precision)."""
    F = type(x)
    x = min(max(x, F(-1.0)), F(1.0))
    return atan2(x, math.sqrt((F(1.0) - x) * (F(1.0) + x)))


def hypot(a, b):
    """√(a² + b²) without overflow of the squares (vectorisable; in the arguments' precision)."""
    F = type(a + b)
    a = abs(a)
    b = abs(b)
    hi = max(a, b)
    lo = min(a, b)
    r = lo / (hi if hi > F(0.0) else F(1.0))
    return hi * math.sqrt(F(1.0) + r * r)


def perp_scaled(c, q1, q2, e1, e2, r1, r2):
    """√max(q1·q2 − c², 0) = √(q1q2)·sin θ, with q1, q2, c rescaled by the exact powers of two e1, e2
    (r1 = 1/e1, r2 = 1/e2; all computed once per point by _pow2_scale): no overflow for q ≳ 1e154,
    and the same rounding as the unscaled formula, so the diagonal gives exactly 0. Computed in float64
    and returned in the arguments' precision F: products of float32 numbers are exact in float64, so
    for float32 arguments q1·q2 − c² is rounded once, where it cancels (ρ near ±1) as well."""
    F = type(c + q1 + q2)
    D = xp.float64
    cs = (D(c) * D(e1)) * D(e2)
    return F(math.sqrt(max((D(q1) * D(e1) * D(e1)) * (D(q2) * D(e2) * D(e2)) - cs * cs, 0.0)) * D(r1) * D(r2))


def pow2_scale(q):
    """2^(−⌊log₂(q)/2⌋) for q > 0, else 1 (a variance that is not one point's own: computed per entry)."""
    return 2.0 ** -math.floor(math.log2(q) / 2) if q > 0.0 else 1.0


def _gram(x1, x2, dtype):
    """x1·x2ᵀ/d for points of dimension d, in dtype, C order. For x2 None only the upper triangle is
    filled (BLAS syrk: half a GEMM)."""
    d = x1.shape[1]
    a = xp.ascontiguousarray(x1, dtype=dtype)
    if x2 is None:
        syrk = scipy.linalg.blas.dsyrk if dtype == xp.float64 else scipy.linalg.blas.ssyrk
        return syrk(1.0 / d, a.T, trans=1, lower=1).T  # aᵀ is Fortran-ordered (no copy); the lower
        # triangle of the Fortran result is the upper triangle of its C-ordered transpose
    gram = a @ xp.ascontiguousarray(x2, dtype=dtype).T
    gram /= d
    return gram


def _stack(vectors, n, dtype):
    """Per-point vectors (columns (n, 1) or rows (1, n)) as the rows of one array (k, n) of dtype (the
    loops' arithmetic: float32 numbers for a float32 request, rounded once from float64)."""
    out = xp.empty((len(vectors), n), dtype=dtype)
    for k, v in enumerate(vectors):
        out[k] = xp.ravel(v)
    return out


def _pow2_scale(q):
    """2^(−⌊log₂(q)/2⌋) (1 where q ≤ 0): an exact scale with q·scale² ∈ [1, 4), per point."""
    q = xp.asarray(q, dtype=xp.float64)
    return xp.where(q > 0, xp.exp2(-xp.floor(xp.log2(xp.where(q > 0, q, 1.0)) / 2)), 1.0)


def _mirror_upper(first, step, a, b):
    """a[j, i] = a[i, j] and b[j, i] = b[i, j] for j > i, in 64 x 64 tiles (cache-friendly transposes):
    the tile rows first, first + step, ... (one share of the threads' work)."""
    n = a.shape[0]
    tiles = (n + 63) // 64
    for ti in range(first, tiles, step):
        for tj in range(ti, tiles):
            for i in range(ti * 64, min(ti * 64 + 64, n)):
                for j in range(max(tj * 64, i + 1), min(tj * 64 + 64, n)):
                    a[j, i] = a[i, j]
                    b[j, i] = b[i, j]


def cpu_threads():
    """The CPU threads this process may run on (its affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


THREADS = cpu_threads()


def _in_threads(kernel, *args):
    """kernel(first, THREADS, *args) for first = 0, 1, ..., THREADS − 1, one call per thread (numba
    releases the GIL: nogil=True); each call takes every THREADS-th row."""
    if THREADS == 1:
        kernel(0, 1, *args)
        return
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        for done in [pool.submit(kernel, first, THREADS, *args) for first in range(THREADS)]:
            done.result()


# --- the text generated modules carry

INLINE = '@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=True)\n'  # in the loop body
LOOP = '@numba.njit(nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)\n'  # a loop of its own, in threads
INLINE_LOOP = '@numba.njit(inline="always", nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)\n'
DECORATORS = {atan2: INLINE, asin: INLINE, hypot: INLINE, perp_scaled: INLINE, pow2_scale: INLINE,
              _mirror_upper: '@numba.njit(nogil=True, cache=True)\n'}


def source(*functions, decorators=DECORATORS) -> str:
    """The functions, verbatim, each under its numba decorator in ``decorators`` (none: plain
    Python), two blank lines apart."""
    return "\n\n".join(decorators.get(f, "") + inspect.getsource(f) for f in functions)


def common_source() -> str:
    """The routines of every fused module: the per-point scales, the mirror and the threads."""
    return source(_pow2_scale, _mirror_upper, cpu_threads) + "\n\nTHREADS = cpu_threads()\n\n\n" + source(_in_threads)


SCALAR_HELPERS = {f.__name__: f for f in (atan2, asin, hypot, perp_scaled, pow2_scale)}
