"""Run-time routines of fused modules (:mod:`.fused`), copied into each generated module as text.

Two kinds: array helpers over NumPy (the Gram matrix, the power-of-two scales, the mirror of the
upper triangle) and scalar helpers compiled by numba and inlined into the loop body. The scalar
helpers are branch-free (conditional expressions become selects), so that LLVM vectorises the loop:
``math.atan2`` and ``math.asin`` are libm calls that it cannot vectorise.
"""

from __future__ import annotations

import math

from typing import Iterable

from ..arraycode import wedge_support
from .emit import POINTS_AND_DTYPE

# Cephes atan (Moshier, Cephes Math Library, atan.c): atan(u) = u + u·z·P(z)/Q(z), z = u², for
# |u| ≤ tan(π/8) after the reduction atan(t) = π/4 + atan((t − 1)/(t + 1)); relative error ≈ 2e-16.
_ATAN2 = '''
@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=True)
def atan2(y, x):
    """atan2(y, x) ∈ [−π, π] without branches (Cephes' rational atan; relative error ≈ 2e-16), in the
    precision of its arguments (F: float32 for two float32 numbers, else float64)."""
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
'''

_ASIN = '''
@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=True)
def asin(x):
    """arcsin of x clipped to [−1, 1], as atan2(x, √((1 − x)(1 + x))) (vectorisable; in x's precision)."""
    F = type(x)
    x = min(max(x, F(-1.0)), F(1.0))
    return atan2(x, math.sqrt((F(1.0) - x) * (F(1.0) + x)))
'''

_HYPOT = '''
@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=True)
def hypot(a, b):
    """√(a² + b²) without overflow of the squares (vectorisable; in the arguments' precision)."""
    F = type(a + b)
    a = abs(a)
    b = abs(b)
    hi = max(a, b)
    lo = min(a, b)
    r = lo / (hi if hi > F(0.0) else F(1.0))
    return hi * math.sqrt(F(1.0) + r * r)
'''

_PERP = '''
@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=True)
def perp_scaled(c, q1, q2, e1, e2, r1, r2):
    """√max(q1·q2 − c², 0) = √(q1q2)·sin θ, with q1, q2, c rescaled by the exact powers of two e1, e2
    (r1 = 1/e1, r2 = 1/e2; all computed once per point by _pow2_scale): no overflow for q ≳ 1e154,
    and the same rounding as the unscaled formula, so the diagonal gives exactly 0. Computed in float64
    and returned in the arguments' precision F: products of float32 numbers are exact in float64, so
    for float32 arguments q1·q2 − c² is rounded once, where it cancels (ρ near ±1) as well."""
    F = type(c + q1 + q2)
    D = numba.float64
    cs = (D(c) * D(e1)) * D(e2)
    return F(math.sqrt(max((D(q1) * D(e1) * D(e1)) * (D(q2) * D(e2) * D(e2)) - cs * cs, 0.0)) * D(r1) * D(r2))
'''

_POW2_SCALE_SCALAR = '''
@numba.njit(inline="always", fastmath=FASTMATH, error_model="numpy", cache=True)
def pow2_scale(q):
    """2^(−⌊log₂(q)/2⌋) for q > 0, else 1 (a variance that is not one point's own: computed per entry)."""
    return 2.0 ** -math.floor(math.log2(q) / 2) if q > 0.0 else 1.0
'''

_SOURCES = {"atan2": _ATAN2, "asin": _ASIN, "hypot": _HYPOT, "perp_scaled": _PERP, "pow2_scale": _POW2_SCALE_SCALAR,
            "wedge_support": wedge_support.scalar_source()}  # the ELU dual's wedge integrals (not vectorised: loops)
_NEEDS = {"asin": ("atan2",)}


def scalar_helpers(names: Iterable[str]) -> str:
    """The source of the scalar helpers the loop body calls (and those they call), in a fixed order."""
    wanted = set(names)
    for name in list(wanted):
        wanted.update(_NEEDS.get(name, ()))
    return "".join("\n" + _SOURCES[n] for n in _SOURCES if n in wanted)


_GRAM = '''def _gram(x1, x2, dtype):
    """x1·x2ᵀ/{d} in dtype, C order. For x2 None only the upper triangle is filled (BLAS syrk: half a GEMM)."""
    a = xp.ascontiguousarray(x1, dtype=dtype)
    if x2 is None:
        syrk = scipy.linalg.blas.dsyrk if dtype == xp.float64 else scipy.linalg.blas.ssyrk
        return syrk(1.0 / {d}, a.T, trans=1, lower=1).T  # aᵀ is Fortran-ordered (no copy); the lower
        # triangle of the Fortran result is the upper triangle of its C-ordered transpose
    gram = a @ xp.ascontiguousarray(x2, dtype=dtype).T
    gram /= {d}
    return gram
'''

_STACK = '''def _stack(vectors, n, dtype):
    """Per-point vectors (columns (n, 1) or rows (1, n)) as the rows of one array (k, n) of dtype (the
    loops' arithmetic: float32 numbers for a float32 request, rounded once from float64)."""
    out = xp.empty((len(vectors), n), dtype=dtype)
    for k, v in enumerate(vectors):
        out[k] = xp.ravel(v)
    return out
'''

_COMMON = '''def _pow2_scale(q):
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
    """The NumPy-side helpers of a fused vector module for inputs of dimension d."""
    return _GRAM.format(d=d) + "\n\n" + _STACK + "\n\n" + _COMMON


PROLOGUE = '''

def kernels(x1, x2=None, dtype=xp.float64, params=None, progress=None):
    """The NNGP and NTK kernels of the network between two sets of inputs.

    Args:
        x1: inputs, shape (N1, {d}).
        x2: inputs, shape (N2, {d}); None means x1 (the kernel is then exactly symmetric).
        dtype: float64 (default) or float32: the Gram matrix, the layers' arithmetic and the results
            (float32 keeps perp and the ELU wedge integrals in float64; ntkdsl/codegen/fused.py).
        params: run-time parameters by name (see PARAMETERS); None: the spec's values.
        progress: None, or a thread-safe callable progress(n) that every worker thread calls
            after each block of n rows (ntkdsl.progress.pair_progress.advance; see progress_steps).

    Returns:
        (nngp, ntk): arrays of shape (N1, N2) and the given dtype: Σ(x1, x2) and Θ(x1, x2).
    """
''' + POINTS_AND_DTYPE + '''    if x1.shape[0] == 0 or x2.shape[0] == 0:  # no pair (BLAS refuses empty matrices)
        return xp.zeros((x1.shape[0], x2.shape[0]), dtype=dtype), xp.zeros((x1.shape[0], x2.shape[0]), dtype=dtype)
    # input: Σ⁰(x, x') = x·x'/d, Θ⁰ = 0 (kernel-math.md §1); cov1 is a column, cov2 a row
    cov1_0 = xp.sum(x1 * x1, axis=1, keepdims=True) / {d}
    cov2_0 = cov1_0.T if same else xp.sum(x2 * x2, axis=1, keepdims=True).T / {d}
    nngp_0 = _gram(x1, None if same else x2, dtype)
    if same:  # exact diagonal: Σ(x, x) is cov1 bit for bit
        _exact_diagonal(nngp_0, cov1_0)
'''


# --- image and signal networks in the diagonal layout (fused_spatial.py): one pair's pixel grid at a time

_SPATIAL_ARRAYS = '''def _input_variances(x, side):
    """{what} of each point, as {layout} (side 0) or with (1, N) last (side 1):
    pixel axes first, points last, the layout of the NumPy path's per-point arrays (same rounding)."""
    n = x.shape[0]
    a = xp.ascontiguousarray(xp.moveaxis(x.reshape(n, {pixels}, {channels}), 1, 0))  # (P, N, C)
    v = {formula}
    return v.reshape({shape} + ((n, 1) if side == 0 else (1, n)))


def _put(stack, k, v):
    """Per-point numbers v into stack[:, k, :P]: points first, then the quantity, then its pixels
    (contiguous for the pair loops). v is a constant, or an array (*pixels, N, 1) or (*pixels, 1, N),
    or (*pixels, 1, 1) where it does not depend on the point (a variance after rbf, say)."""
    v = xp.asarray(v, dtype=xp.float64)
    if v.ndim == 0:
        stack[:, k, :] = v
        return
    pixels = v.reshape(v.shape[:-2] + (-1,))  # (*pixels, N) or (*pixels, 1)
    pixels = pixels.reshape(-1, pixels.shape[-1])  # (P, N) or (P, 1)
    stack[:, k, :pixels.shape[0]] = pixels.T  # a point-independent (1, P) broadcasts to every point


def _other_side(v):
    """x1's per-point array (..., N, 1) as x2's (..., 1, N) (a view; a constant stays itself)."""
    return xp.swapaxes(v, -1, -2) if xp.ndim(v) >= 2 else v
'''

_SPATIAL_ROUTINES = '''
@numba.njit(nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _input_pairs(a, block, out, pixels, channels):
    """out[b·P + p] = Σ_c a[p, c]·block[b, p, c]/C: Σ⁰ of the pairs (i, j0 + b) at every pixel
    (kernel-math.md §1); a is x1[i], block is x2[j0:j1], both (…, P, C)."""
    for b in range(block.shape[0]):
        for p in range(pixels):
            acc = 0.0
            for c in range(channels):
                acc += a[p, c] * block[b, p, c]
            out[b * pixels + p] = acc / channels


@numba.njit(inline="always", nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _window_pass(src, dst, outer, n, inner, size, window, stride, pad_lo, circular):
    """dst[a, o, c] = Σ_{t < window} src[a, stride·o + t − pad_lo, c] on flat arrays viewed as
    (outer, n, inner) -> (outer, size, inner): one spatial axis of a separable window sum. Pixels
    outside the input are zeros, or the opposite edge's when circular. The taps add in the order
    t = 0, 1, ... of spatial_support._window_sum, so both paths round alike. The last axis
    (inner = 1) sums each output in a register; the others add whole runs of contiguous pixels
    per tap (one run per (a, tap) at stride 1: a long loop that vectorises)."""
    if inner == 1:
        for a in range(outer):
            for o in range(size):
                acc = 0.0
                for t in range(window):
                    s = stride * o + t - pad_lo
                    if circular:
                        s %= n
                    if 0 <= s < n:
                        acc += src[a * n + s]
                dst[a * size + o] = acc
        return
    block_in = n * inner  # written as a·block + o·inner (not (a·size + o)·inner): LLVM then vectorises
    block_out = size * inner  # the runs (measured 4x faster on 32 x 32 grids)
    for q in range(outer * block_out):
        dst[q] = 0.0
    for a in range(outer):
        for t in range(window):
            if circular:
                for o in range(size):
                    d0 = a * block_out + o * inner
                    s0 = a * block_in + ((stride * o + t - pad_lo) % n) * inner
                    for c in range(inner):
                        dst[d0 + c] += src[s0 + c]
                continue
            first = max(0, -((t - pad_lo) // stride))  # the outputs this tap reaches inside the input
            last = min(size - 1, (n - 1 + pad_lo - t) // stride)
            if last < first:
                continue
            if stride == 1:
                d0 = a * block_out + first * inner
                s0 = a * block_in + (first + t - pad_lo) * inner
                for q in range((last - first + 1) * inner):
                    dst[d0 + q] += src[s0 + q]
            else:
                for o in range(first, last + 1):
                    d0 = a * block_out + o * inner
                    s0 = a * block_in + (stride * o + t - pad_lo) * inner
                    for c in range(inner):
                        dst[d0 + c] += src[s0 + c]


@numba.njit(inline="always", nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _window_pass2(src, dst, outer, n, mid, inner, size, window, stride, pad_lo, circular):
    """dst[a, o, m, o', c] = Σ_{t < window} src[a, s(o, t), m, s(o', t), c], s(o, t) = stride·o + t − pad_lo,
    on flat arrays viewed as (outer, n, mid, n, inner): a convolution's tap t moves both pixels of a
    pair (p, q) (full layout), zeros outside (or the opposite edge when circular); taps in order."""
    block_in = n * mid * n * inner
    block_out = size * mid * size * inner
    row_in = mid * n * inner
    row_out = mid * size * inner
    for q in range(outer * block_out):
        dst[q] = 0.0
    for a in range(outer):
        for t in range(window):
            if circular:
                for o in range(size):
                    s = (stride * o + t - pad_lo) % n
                    for m in range(mid):
                        d0 = a * block_out + o * row_out + m * size * inner
                        s0 = a * block_in + s * row_in + m * n * inner
                        for o2 in range(size):
                            s2 = (stride * o2 + t - pad_lo) % n
                            for c in range(inner):
                                dst[d0 + o2 * inner + c] += src[s0 + s2 * inner + c]
                continue
            first = max(0, -((t - pad_lo) // stride))  # the outputs this tap reaches inside the input
            last = min(size - 1, (n - 1 + pad_lo - t) // stride)
            for o in range(first, last + 1):
                s = stride * o + t - pad_lo
                for m in range(mid):
                    d0 = a * block_out + o * row_out + m * size * inner
                    s0 = a * block_in + s * row_in + m * n * inner
                    if stride == 1:  # one contiguous run of the q axis (and what follows it)
                        dd = d0 + first * inner
                        ss = s0 + (first + t - pad_lo) * inner
                        for q in range((last - first + 1) * inner):
                            dst[dd + q] += src[ss + q]
                    else:
                        for o2 in range(first, last + 1):
                            dd = d0 + o2 * inner
                            ss = s0 + (stride * o2 + t - pad_lo) * inner
                            for c in range(inner):
                                dst[dd + c] += src[ss + c]


@numba.njit(inline="always", nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _divide(buf, pixels, divisor):
    """buf[p] /= divisor: the mean over a filter's taps (spatial_support.conv_taps divides last too)."""
    for p in range(pixels):
        buf[p] = buf[p] / divisor


@numba.njit(nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _pixel_sums(src, dst, nb, entries, divisor):
    """dst[b] = Σ_e src[b·E + e] / divisor, summed in order (as spatial_support.flatten_mean and
    global_pool: the mean over pixels, or over pixel pairs, or their sum for divisor 1)."""
    for b in range(nb):
        acc = 0.0
        for e in range(entries):
            acc += src[b * entries + e]
        dst[b] = acc / divisor


@numba.njit(nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _pixel_traces(src, dst, nb, pixels):
    """dst[b] = mean_p src[b, p, p] of full-layout grids (flatten after pooling)."""
    for b in range(nb):
        acc = 0.0
        for p in range(pixels):
            acc += src[(b * pixels + p) * pixels + p]
        dst[b] = acc / pixels


@numba.njit(nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _diagonals(src, dst, nb, pixels):
    """dst[b, p] = src[b, p, p]: the diagonal layout of full-layout grids."""
    for b in range(nb):
        for p in range(pixels):
            dst[b * pixels + p] = src[(b * pixels + p) * pixels + p]


@numba.njit(nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _input_pairs_full(a, block, out, pixels, channels):
    """out[b, p, q] = Σ_c a[p, c]·block[b, q, c]/C: Σ⁰ of the pairs (i, j0 + b) at every pixel pair."""
    for b in range(block.shape[0]):
        for p in range(pixels):
            for q in range(pixels):
                acc = 0.0
                for c in range(channels):
                    acc += a[p, c] * block[b, q, c]
                out[(b * pixels + p) * pixels + q] = acc / channels


def _pair_blocks(n1, n2, same, size, first, step):
    """The blocks (i, j0, j1, diagonal) of at most ``size`` pairs (i, j0 … j1 − 1), row by row, every
    step-th from the first-th (one thread's share); with ``same`` only j ≥ i, and diagonal = i − j0
    for the block that holds the pair (i, i), else −1."""
    k = 0
    for i in range(n1):
        for j0 in range(i if same else 0, n2, size):
            if k % step == first:
                j1 = min(j0 + size, n2)
                yield i, j0, j1, (i - j0 if same and j0 <= i < j1 else -1)
            k += 1
'''


def spatial_helpers(shape, channels: int, full: bool) -> str:
    """The helpers of a fused image module: per-point arrays (NumPy), the pair routines (numba),
    the scales, the mirror and the threads. ``full``: the input is read in the full layout."""
    shape = tuple(int(n) for n in shape)
    pixels = math.prod(shape)
    if full:
        fields = dict(what="Σ⁰(x, x)(p, q) = x(p)·x(q)/C for every pixel pair", layout="(*S, *S, N, 1)",
                      formula=f"xp.einsum(\"pic,qic->pqi\", a, a) / {channels}", shape=shape + shape)
    else:
        fields = dict(what="The pixel variances |x(p)|²/C", layout="(*S, N, 1)", formula=f"xp.sum(a * a, axis=2) / {channels}",
                      shape=shape)
    arrays = _SPATIAL_ARRAYS.format(pixels=pixels, channels=channels, **fields)
    return arrays + "\n\n" + _COMMON + "\n" + _SPATIAL_ROUTINES


SPATIAL_PROLOGUE = '''

def kernels(x1, x2=None, dtype=xp.float64, params=None, progress=None):
    """The NNGP and NTK kernels of the network between two sets of inputs.

    Args:
        x1: inputs, shape (N1, {shape}) (channels last).
        x2: inputs, shape (N2, {shape}); None means x1 (the kernel is then exactly symmetric).
        dtype: float64 (default) or float32 results (every layer computes in float64).
        params: run-time parameters by name (see PARAMETERS); None: the spec's values.
        progress: None, or a thread-safe callable progress(n) that every worker thread
            calls after each block of n pairs (ntkdsl.progress.pair_progress.advance).

    Returns:
        (nngp, ntk): arrays of shape (N1, N2) and the given dtype: Σ(x1, x2) and Θ(x1, x2).
    """
''' + POINTS_AND_DTYPE + '''    n1, n2 = x1.shape[0], x2.shape[0]
    if n1 == 0 or n2 == 0:  # no pair: nothing to stack or loop over
        return xp.zeros((n1, n2), dtype=dtype), xp.zeros((n1, n2), dtype=dtype)
    # per-point numbers, stacked as rows[i, k, p] (x1) and cols[j, k, p] (x2; the same array when x2 is x1)
    rows = xp.empty((n1, {count}, {width}))
    cols = rows if same else xp.empty((n2, {count}, {width}))
    # input: each point's Σ⁰(x, x)(p, p') = x(p)·x(p')/{channels} (kernel-math.md §1), {layout} layout, pixel axes first
    cov1_0 = _input_variances(x1, 0)
    cov2_0 = _other_side(cov1_0) if same else _input_variances(x2, 1)
'''
