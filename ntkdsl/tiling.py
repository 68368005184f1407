"""Memory budget and tiling: evaluate a kernel request in blocks of x1 x x2 rows when it would not fit.

The memory of one evaluation is a :class:`MemoryModel`, the larger of two phases: the layers,
a·N1·N2 + b·(N1 + N2) + c bytes (a per pair: the kernel arrays of every pixel pair, the temporaries
of the dual functions; b per point: variances; c fixed: quadrature chunks), and the input stage,
e·(N1 + N2) + f (temporaries of the size of the inputs, such as x·x for the variances: 8·d bytes a
point, which outweigh a small kernel: 300 x 50 points of 784 features). The NumPy evaluator's model
is static (:func:`ntkdsl.codegen.cost.numpy_memory`: the kernel arrays alive at each step of the derived
program and their temporaries, nothing run; measured at 1.2–2x tracemalloc's peak), scaled by
:data:`SAFETY`; image networks in the full layout cost P² array entries per pair.

A request whose estimate exceeds the budget (default: :data:`BUDGET_FRACTION` of the memory the
kernel reports available, ``MemAvailable`` in /proc/meminfo; settable per call or with
:func:`set_memory_budget`) runs in tiles of rows, any N1 and N2 (the last tiles are smaller),
into preallocated (N1, N2) outputs. Self-kernels (x2 = None) compute only the tiles on and above
the block diagonal, each diagonal tile as a self-kernel, and mirror the others: the result is
exactly symmetric with exact diagonals, and it costs half. Tiled and untiled results agree to
round-off (BLAS sums in another order for another tile shape: ~1e-15 relative).
"""

from __future__ import annotations

import math
import tracemalloc
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from .errors import NtkdslError

BUDGET_FRACTION = 0.5  # of MemAvailable, when no budget is given
FALLBACK_BUDGET = 4 * 2**30  # bytes, where /proc/meminfo cannot be read
SAFETY = 1.25  # the models' coefficients are scaled by this before planning

_budget: Optional[int] = None


class MemoryBudgetError(NtkdslError, MemoryError):
    """A kernel request that cannot be evaluated within the memory budget, even in tiles."""


def set_memory_budget(nbytes: Optional[int]) -> None:
    """Set the default budget of every kernel request in bytes (None: back to the automatic one)."""
    global _budget
    if nbytes is not None and (not isinstance(nbytes, (int, np.integer)) or nbytes <= 0):
        raise ValueError(f"the memory budget must be a positive number of bytes, not {nbytes!r}")
    _budget = None if nbytes is None else int(nbytes)


def available_memory() -> Optional[int]:
    """``MemAvailable`` from /proc/meminfo in bytes, or None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_budget(nbytes: Optional[int] = None) -> int:
    """The budget of a request: ``nbytes``, else the one set, else a fraction of available memory."""
    if nbytes is not None:
        if nbytes <= 0:
            raise ValueError(f"the memory budget must be a positive number of bytes, not {nbytes!r}")
        return int(nbytes)
    if _budget is not None:
        return _budget
    free = available_memory()
    return int(BUDGET_FRACTION * free) if free else FALLBACK_BUDGET


@dataclass(frozen=True)
class MemoryModel:
    """Peak bytes of one evaluation, the larger of the layers' phase, ``per_pair``·N1·N2 +
    ``per_point``·(N1 + N2) + ``fixed``, and the input stage, ``input_per_point``·(N1 + N2) +
    ``input_fixed`` (0 where the layers always dominate)."""

    per_pair: float
    per_point: float
    fixed: float
    input_per_point: float = 0.0
    input_fixed: float = 0.0

    def peak(self, n1: int, n2: int) -> float:
        layers = self.per_pair * n1 * n2 + self.per_point * (n1 + n2) + self.fixed
        return max(layers, self.input_per_point * (n1 + n2) + self.input_fixed)


def _peak(run: Callable[[], object]) -> int:
    """Peak bytes allocated (per tracemalloc) while ``run`` executes, above what was held before
    (the oracle of the memory models' tests)."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        run()
        return max(tracemalloc.get_traced_memory()[1] - held, 0)
    finally:
        if not tracing:
            tracemalloc.stop()


STATIC_ARRAYS = 24  # kernel-sized arrays a static bound allows for: live states and a dual's temporaries
STATIC_FIXED = 256 * 2**20  # bytes: the quadrature routine's chunks and the interpreter's small change


def static_model(entries_per_pair: int, input_size: int = 1) -> MemoryModel:
    """A generous bound without running anything: :data:`STATIC_ARRAYS` float64 arrays of the
    largest kernel's size per pair and per point, plus :data:`STATIC_FIXED`; the input stage at
    four float64 copies of an input point per point (the input, x·x, contiguous copies).
    Networks with numerical duals (whose quadrature works in chunks of its own) use it."""
    per = 8.0 * STATIC_ARRAYS * entries_per_pair
    return MemoryModel(per, per, float(STATIC_FIXED), 32.0 * input_size + per, float(STATIC_FIXED))


PREFERRED_ARRAY = 2**19  # bytes: image kernels run fastest in tiles whose largest kernel array is about this big
PREFERRED_MIN_SIDE = 16  # points: smaller tiles spend more in per-call overhead than the caches save ...
PREFERRED_MIN_SIDE_ARRAY = 2**23  # bytes: ... unless a tile of that side would hold arrays larger than this


def preferred_peak(model: MemoryModel, entries_per_pair: int) -> float:
    """The peak of the preferred tile of an image network: the side at which its largest kernel
    array (float64) holds :data:`PREFERRED_ARRAY` bytes, but at least :data:`PREFERRED_MIN_SIDE`
    points as long as the arrays stay within :data:`PREFERRED_MIN_SIDE_ARRAY` (and at least 1).

    A tile's arrays then stay near the processor's caches while a layer makes its dozen elementwise
    passes over them (1 MiB L2 per core, 32 MiB L3 on the benchmark machine), and a self-kernel in
    finer tiles computes less below the diagonal; below the minimum side the per-call overhead of
    the evaluator wins, except for networks with very many pixel pairs per point pair (the 21-layer
    CNN-GAP on 32 x 32 images: 8 MiB a pair, so one pair a tile). Measured on the 2-conv CNNs of
    benchmarks/workloads.py (fresh processes, default malloc): flatten, 256 images: 0.10 s in tiles
    of 32 points against 0.16 s in 64 and 0.22 s whole; GAP, 64 images: 0.59 s in tiles of 16
    against 0.82 s in 8 and 1.2 s in 2; GAP, 128 images: 2.1 s in 16 against 2.8 s in 8, 3.6 s in 4.
    """
    per_pair = 8.0 * max(entries_per_pair, 1)
    t = int(math.sqrt(PREFERRED_ARRAY / per_pair))
    if t < PREFERRED_MIN_SIDE:
        t = max(1, min(PREFERRED_MIN_SIDE, int(math.sqrt(PREFERRED_MIN_SIDE_ARRAY / per_pair))))
    return model.peak(t, t)


def plan(n1: int, n2: int, model: MemoryModel, budget: int, preferred: Optional[float] = None,
         outputs: float = 16.0) -> Optional[Tuple[int, int]]:
    """The tile (t1, t2) for an N1 x N2 request, or None when it fits whole.

    The outputs (``outputs`` bytes a pair: 16, or 16·P for a network with ``readout = none``,
    :func:`ntkdsl.codegen.spatial_output.output_bytes`) are allocated once; the rest of the budget bounds a tile's peak,
    and so does ``preferred`` when given: the kernel arrays of image networks (P or P² entries per
    pair) run faster in tiles that stay near the processor's caches (:func:`preferred_peak`).
    Tiles are as square as the limits allow.

    Raises:
        MemoryBudgetError: the outputs alone, or a single pair, exceed the budget.
    """
    limit = budget if preferred is None else min(budget, preferred)
    if model.peak(n1, n2) <= limit:
        return None
    left = budget - outputs * n1 * n2
    if left <= 0 or model.peak(1, 1) > left:
        raise MemoryBudgetError(
            f"a kernel of {n1} x {n2} points needs about {format_bytes(model.peak(n1, n2))} and the budget is {format_bytes(budget)}; "
            f"even in tiles it needs {format_bytes(outputs * n1 * n2)} for the two output arrays plus {format_bytes(model.peak(1, 1))} for "
            "one pair: raise the budget (memory_budget=, ntkdsl.set_memory_budget, or --memory-budget on the command line) "
            "or ask for fewer points at a time")
    if preferred is not None:
        left = min(left, preferred)
    a, b, c = model.per_pair, model.per_point, model.fixed
    t = int((-2 * b + math.sqrt(4 * b * b + 4 * a * max(left - c, 0.0))) / (2 * a)) if a > 0 else max(n1, n2)
    e, f = model.input_per_point, model.input_fixed  # the input stage: e·(t1 + t2) + f must fit too
    if e > 0:
        t = min(t, int((left - f) / (2 * e)))
    t1 = max(1, min(n1, t))
    t2 = max(1, min(n2, int((left - c - b * t1) / (a * t1 + b)) if a * t1 + b > 0 else n2))
    if e > 0:
        t2 = max(1, min(t2, int((left - f) / e) - t1))
    return t1, t2


def batch_tile(batch_size) -> Tuple[int, int]:
    """The square tile of an explicit ``batch_size`` (a positive integer; a ValueError otherwise)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
    return int(batch_size), int(batch_size)


def tiles(n1: int, n2: Optional[int], tile: Tuple[int, int]):
    """The tiles of a request, in order, as (row slice, column slice) pairs.

    With ``n2 is None`` (a self-kernel) the tiles are square (the smaller side of ``tile``) and only
    those on and above the block diagonal are listed; the others are their transposes.
    """
    if n2 is None:
        t = min(tile)
        return [(slice(i, min(i + t, n1)), slice(j, min(j + t, n1))) for i in range(0, n1, t) for j in range(i, n1, t)]
    t1, t2 = tile
    return [(slice(i, min(i + t1, n1)), slice(j, min(j + t2, n2))) for i in range(0, n1, t1) for j in range(0, n2, t2)]


def duplicate_groups(x1, x2=None):
    """Groups of identical points, for :func:`exact_duplicates`.

    Returns:
        A list of (rows of x1, columns of x2) index arrays, one per group of identical points that
        has a pair to fix: for a self-kernel (``x2`` None) groups of two or more rows (columns =
        rows); for a cross kernel rows and columns holding the same point. Empty for distinct points.
        A hash of each row's bits, a chunk of about 2^15 numbers at a time (O(N·d) time, O(N)
        memory besides two 256 KiB temporaries), then an exact comparison of the rows that share a
        hash: negligible beside the kernel. Rows with NaN equal nothing.
    """
    x1 = np.asarray(x1)
    n1 = x1.shape[0]
    arrays = (x1,) if x2 is None else (x1, np.asarray(x2))
    size = math.prod(x1.shape[1:])
    if n1 == 0 or (x2 is not None and len(arrays[1]) == 0) or (x2 is None and n1 < 2) or size == 0:
        return []
    weights = np.random.default_rng(0).integers(1, 2**63, size=size, dtype=np.uint64) | np.uint64(1)
    hashes, step = [], max(1, 2**15 // size)
    with np.errstate(over="ignore"):
        for x in arrays:
            for i in range(0, len(x), step):
                chunk = np.asarray(x[i:i + step], dtype=np.float64).reshape(-1, size) + 0.0  # -0.0 is 0.0
                hashes.append((chunk.view(np.uint64) * weights).sum(axis=1, dtype=np.uint64))  # modulo 2^64
    hashes = np.concatenate(hashes)
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    shared = np.flatnonzero(counts[inverse] > 1)
    if not len(shared):
        return []
    shared = shared[np.argsort(inverse[shared], kind="stable")]
    row = lambda k: arrays[0][k] if k < n1 else arrays[1][k - n1]  # noqa: E731
    groups = []
    for same_hash in np.split(shared, np.flatnonzero(np.diff(inverse[shared])) + 1):
        while len(same_hash) > 1:  # split by exact equality (distinct rows may share a hash)
            first = row(same_hash[0])
            equal = np.array([k == same_hash[0] or np.array_equal(first, row(k)) for k in same_hash])
            if equal.sum() > 1:
                groups.append(same_hash[equal])
            same_hash = same_hash[~equal]
    if x2 is None:
        return [(g, g) for g in groups]
    out = [(g[g < n1], g[g >= n1] - n1) for g in groups]
    return [(r, c) for r, c in out if len(r) and len(c)]


def exact_duplicates(nngp, ntk, x1, x2, self_kernel: Callable, by_index: bool = False):
    """Give every pair of identical points the kernel's exact value at (x, x), in place.

    ``by_index``: the kernel depends on whether a pair is one point with itself (the same-point
    indicator of :mod:`ntkdsl.algebra.points`, e.g. dropout), so two identical rows are different
    points whose value is not that at (x, x): nothing is changed.

    At θ = 0 the kernels are ill-conditioned (θ ≈ √(2(1 − ρ)), so one rounding of x·x′ moves an
    arc-cosine NTK by ~1e-8): a duplicate pair would otherwise depend on how the BLAS blocked the
    Gram matrix, i.e. on the tile. Self-kernels copy the group's first diagonal entry to all its
    pairs (exactly symmetric); cross kernels take Σ(x, x) and Θ(x, x) from ``self_kernel`` (a
    self-kernel evaluation of the duplicated points, whose diagonal is exact: θ = 0). Tiled and
    untiled results then agree to round-off even with duplicates.
    """
    groups = [] if by_index else duplicate_groups(x1, x2)
    if not groups:
        return nngp, ntk
    if x2 is None:
        for g, _ in groups:
            r = g[0]
            nngp[np.ix_(g, g)], ntk[np.ix_(g, g)] = nngp[r, r], ntk[r, r]
        return nngp, ntk
    first = np.asarray(x1)[np.array([r[0] for r, _ in groups])]
    diag_nngp, diag_ntk = [], []
    for i in range(0, len(first), 256):  # diagonals of small self-kernels: O(256·M) pairs, not M²
        s, t = self_kernel(first[i:i + 256])
        diag_nngp.append(_pair_diagonal(s))
        diag_ntk.append(_pair_diagonal(t))
    for (r, c), s, t in zip(groups, np.concatenate(diag_nngp), np.concatenate(diag_ntk)):
        nngp[np.ix_(r, c)], ntk[np.ix_(r, c)] = s, t
    return nngp, ntk


def _pair_diagonal(k):
    """K(x_i, x_i) of a self-kernel (N, N, *pixels) as (N, *pixels)."""
    k = np.asarray(k)
    return np.moveaxis(np.diagonal(k, axis1=0, axis2=1), -1, 0)


def transpose_pairs(a, axes: Optional[Tuple[int, ...]]):
    """K(x′, x) from K(x, x′): ``a.T`` for (N1, N2) arrays, else ``a`` transposed by ``axes``
    (:func:`ntkdsl.codegen.spatial_output.pair_axes`)."""
    return a.T if axes is None else np.transpose(a, axes) if isinstance(a, np.ndarray) else a.transpose(axes)


def evaluate(kernels: Callable, x1, x2, tile: Tuple[int, int], progress=None, axes=None):
    """``kernels`` (x1, x2) -> (nngp, ntk) evaluated tile by tile into (N1, N2) float64 outputs
    ((N1, N2, *pixels) for a network with ``readout = none``).

    With ``x2 is None`` the tiles are square (the smaller side of ``tile``), the diagonal ones are
    self-kernels and the ones below the diagonal are the transposes of those above (:func:`tiles`;
    ``axes``: the permutation that transposes a spatial output, :func:`ntkdsl.codegen.spatial_output.pair_axes`).
    ``progress``: see :mod:`ntkdsl.progress` (a bar over the tiles, or a callback).
    """
    from .progress import tile_progress

    x1 = np.asarray(x1)
    n1 = x1.shape[0]
    x2 = None if x2 is None else np.asarray(x2)
    n2 = n1 if x2 is None else x2.shape[0]
    nngp = ntk = None  # allocated at the first tile, whose result says the pixel axes
    blocks = tiles(n1, None if x2 is None else n2, tile)
    bar = tile_progress(progress, len(blocks))
    try:
        for a, b in blocks:
            if x2 is None:
                k = kernels(x1[a]) if a == b else kernels(x1[a], x1[b])
            else:
                k = kernels(x1[a], x2[b])
            if nngp is None:
                nngp, ntk = (np.empty((n1, n2) + np.shape(k[0])[2:]) for _ in range(2))
            if x2 is None and a != b:
                nngp[b, a], ntk[b, a] = transpose_pairs(k[0], axes), transpose_pairs(k[1], axes)
            nngp[a, b], ntk[a, b] = k[0], k[1]
            del k  # free this tile's arrays before the next one is computed (a tiled peak: outputs + one tile)
            bar.update(1)
    finally:
        bar.close()
    if nngp is None:  # no tile: an empty request
        nngp, ntk = np.empty((n1, n2)), np.empty((n1, n2))
    return nngp, ntk


def format_bytes(nbytes: float) -> str:
    """``nbytes`` in bytes, KiB, MiB, GiB or TiB, for messages."""
    if nbytes >= 2**40:
        return f"{nbytes / 2**40:.1f} TiB"
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.1f} GiB"
    if nbytes >= 2**20:
        return f"{nbytes / 2**20:.1f} MiB"
    if nbytes >= 2**10:
        return f"{nbytes / 2**10:.1f} KiB"
    return f"{nbytes:.0f} bytes"

