"""Run-time routines of fused modules (:mod:`.fused`), copied into each generated module as text.

Two kinds: array helpers over NumPy (the Gram matrix, the power-of-two scales, the mirror of the
upper triangle) and scalar helpers compiled by numba and inlined into the loop body. The scalar
helpers are branch-free (conditional expressions become selects), so that LLVM vectorises the loop:
``math.atan2`` and ``math.asin`` are libm calls that it cannot vectorise.
"""

from __future__ import annotations

from typing import Iterable

# Cephes atan (Moshier, Cephes Math Library, atan.c): atan(u) = u + u·z·P(z)/Q(z), z = u², for
# |u| ≤ tan(π/8) after the reduction atan(t) = π/4 + atan((t − 1)/(t + 1)); relative error ≈ 2e-16.
_ATAN2 = '''
@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=True)
def atan2(y, x):
    """atan2(y, x) ∈ [−π, π] without branches (Cephes' rational atan; relative error ≈ 2e-16)."""
    ax = abs(x)
    ay = abs(y)
    hi = max(ax, ay)
    lo = min(ax, ay)
    big = lo > 0.41421356237309503 * hi  # t = lo/hi > tan(π/8): reduce by π/4
    u = (lo - hi if big else lo) / ((lo + hi if big else hi) if hi > 0.0 else 1.0)
    z = u * u
    p = (((-8.750608600031904122785e-1 * z - 1.615753718733365076637e1) * z - 7.500855792314704667340e1) * z
         - 1.228866684490136173410e2) * z - 6.485021904942025371773e1
    q = ((((z + 2.485846490142306297962e1) * z + 1.650270098316988542046e2) * z + 4.328810604912902668951e2) * z
         + 4.853903996359136964868e2) * z + 1.945506571482613964425e2
    a = u + u * z * p / q
    a = (a + 3.061616997868382943e-17) + 0.78539816339744830962 if big else a
    a = (6.123233995736765886e-17 - a) + 1.57079632679489661923 if ay > ax else a
    a = (1.2246467991473532e-16 - a) + 3.14159265358979323846 if x < 0.0 else a
    return -a if y < 0.0 else a
'''

_ASIN = '''
@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=True)
def asin(x):
    """arcsin of x clipped to [−1, 1], as atan2(x, √((1 − x)(1 + x))) (vectorisable)."""
    x = min(max(x, -1.0), 1.0)
    return atan2(x, math.sqrt((1.0 - x) * (1.0 + x)))
'''

_HYPOT = '''
@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=True)
def hypot(a, b):
    """√(a² + b²) without overflow of the squares (vectorisable)."""
    a = abs(a)
    b = abs(b)
    hi = max(a, b)
    lo = min(a, b)
    r = lo / (hi if hi > 0.0 else 1.0)
    return hi * math.sqrt(1.0 + r * r)
'''

_PERP = '''
@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=True)
def perp_scaled(c, q1, q2, e1, e2, r1, r2):
    """√max(q1·q2 − c², 0) = √(q1q2)·sin θ, with q1, q2, c rescaled by the exact powers of two e1, e2
    (r1 = 1/e1, r2 = 1/e2; all computed once per point by _pow2_scale): no overflow for q ≳ 1e154,
    and the same rounding as the unscaled formula, so the diagonal gives exactly 0."""
    cs = (c * e1) * e2
    return math.sqrt(max((q1 * e1 * e1) * (q2 * e2 * e2) - cs * cs, 0.0)) * r1 * r2
'''

_POW2_SCALE_SCALAR = '''
@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=True)
def pow2_scale(q):
    """2^(−⌊log₂(q)/2⌋) for q > 0, else 1 (a variance that is not one point's own: computed per entry)."""
    return 2.0 ** -math.floor(math.log2(q) / 2) if q > 0.0 else 1.0
'''

_SOURCES = {"atan2": _ATAN2, "asin": _ASIN, "hypot": _HYPOT, "perp_scaled": _PERP, "pow2_scale": _POW2_SCALE_SCALAR}
_NEEDS = {"asin": ("atan2",)}


def scalar_helpers(names: Iterable[str]) -> str:
    """The source of the scalar helpers the loop body calls (and those they call), in a fixed order."""
    wanted = set(names)
    for name in list(wanted):
        wanted.update(_NEEDS.get(name, ()))
    return "".join("\n" + _SOURCES[n] for n in _SOURCES if n in wanted)


_ARRAY_HELPERS = '''def _gram(x1, x2, dtype):
    """x1·x2ᵀ/{d} in dtype, C order. For x2 None only the upper triangle is filled (BLAS syrk: half a GEMM)."""
    a = xp.ascontiguousarray(x1, dtype=dtype)
    if x2 is None:
        syrk = scipy.linalg.blas.dsyrk if dtype == xp.float64 else scipy.linalg.blas.ssyrk
        return syrk(1.0 / {d}, a.T, trans=1, lower=1).T  # aᵀ is Fortran-ordered (no copy); the lower
        # triangle of the Fortran result is the upper triangle of its C-ordered transpose
    gram = a @ xp.ascontiguousarray(x2, dtype=dtype).T
    gram /= {d}
    return gram


def _stack(vectors, n):
    """Per-point vectors (columns (n, 1) or rows (1, n)) as the rows of one float64 array (k, n)."""
    out = xp.empty((len(vectors), n))
    for k, v in enumerate(vectors):
        out[k] = xp.ravel(v)
    return out


def _pow2_scale(q):
    """2^(−⌊log₂(q)/2⌋) (1 where q ≤ 0): an exact scale with q·scale² ∈ [1, 4), per point."""
    q = xp.asarray(q, dtype=xp.float64)
    return xp.where(q > 0, xp.exp2(-xp.floor(xp.log2(xp.where(q > 0, q, 1.0)) / 2)), 1.0)


@numba.njit(nogil=True, cache=True)
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


THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _in_threads(kernel, *args):
    """kernel(first, THREADS, *args) for first = 0, 1, ..., THREADS − 1, one call per thread (numba
    releases the GIL: nogil=True); each call takes every THREADS-th row."""
    if THREADS == 1:
        kernel(0, 1, *args)
        return
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        for done in [pool.submit(kernel, first, THREADS, *args) for first in range(THREADS)]:
            done.result()
'''


def array_helpers(d: int) -> str:
    """The NumPy-side helpers for inputs of dimension d."""
    return _ARRAY_HELPERS.format(d=d)


PROLOGUE = '''

def kernels(x1, x2=None, dtype=xp.float64):
    """The NNGP and NTK kernels of the network between two sets of inputs.

    Args:
        x1: inputs, shape (N1, {d}).
        x2: inputs, shape (N2, {d}); None means x1 (the kernel is then exactly symmetric).
        dtype: float64 (default) or float32: the Gram matrix and the results (the layers compute in float64).

    Returns:
        (nngp, ntk): arrays of shape (N1, N2) and the given dtype: Σ(x1, x2) and Θ(x1, x2).
    """
    same = x2 is None
    dtype = xp.dtype(dtype)
    if dtype not in (xp.float64, xp.float32):
        raise ValueError(f"dtype must be float64 or float32, got {{dtype}}")
    x1 = _as_points(x1, "x1")
    x2 = x1 if same else _as_points(x2, "x2")
    # input: Σ⁰(x, x') = x·x'/d, Θ⁰ = 0 (kernel-math.md §1); cov1 is a column, cov2 a row
    cov1_0 = xp.sum(x1 * x1, axis=1, keepdims=True) / {d}
    cov2_0 = cov1_0.T if same else xp.sum(x2 * x2, axis=1, keepdims=True).T / {d}
    nngp_0 = _gram(x1, None if same else x2, dtype)
    if same:  # exact diagonal: Σ(x, x) is cov1 bit for bit
        _exact_diagonal(nngp_0, cov1_0)
'''
